#!/usr/bin/env python3
"""Evaluates a ValidatingAdmissionPolicy's CEL the way the API server does, with the PyPI
package cel-python: every variable (in order, each seeing the earlier ones as `variables.*`),
then every validation, for each sample object. Reads {"policy": <VAP>, "cases": [{"object":
…, "oldObject": … or null}]} on stdin (`request.operation` is CREATE without an oldObject, else
UPDATE); prints [[<message of each failed validation>], …]: an
empty list means admitted. A CEL expression that does not compile, or does not evaluate to the
right type, fails the script. Used by crates/kube/tests/suite/chart.rs."""
import json
import sys

import celpy
from celpy import celtypes

doc = json.load(sys.stdin)
spec = doc["policy"]["spec"]
env = celpy.Environment()


def program(expr):
    try:
        return env.program(env.compile(expr))
    except celpy.CELParseError as e:
        sys.exit(f"CEL does not compile: {expr!r}: {e}")


variables = [(v["name"], program(v["expression"])) for v in spec.get("variables", [])]
validations = [
    (
        program(v["expression"]),
        program(v["messageExpression"]) if "messageExpression" in v else None,
        v.get("message", ""),
    )
    for v in spec["validations"]
]


def run(prog, act, want, expr_kind):
    out = prog.evaluate(act)
    if not isinstance(out, want):
        sys.exit(f"{expr_kind} evaluated to {out!r} ({type(out).__name__}), not {want}")
    return out


results = []
for case in doc["cases"]:
    old = case.get("oldObject")
    act = {
        "object": celpy.json_to_cel(case["object"]),
        "oldObject": celpy.json_to_cel(old),
        "request": celpy.json_to_cel({"operation": "CREATE" if old is None else "UPDATE"}),
    }
    bound = celtypes.MapType({})
    for name, prog in variables:
        act["variables"] = bound
        value = prog.evaluate(act)
        if isinstance(value, celpy.CELEvalError):
            sys.exit(f"variable {name} failed: {value}")
        bound = celtypes.MapType({**bound, celtypes.StringType(name): value})
    act["variables"] = bound
    failed = []
    for prog, msg_prog, msg in validations:
        if not run(prog, act, (celtypes.BoolType, bool), "a validation"):
            failed.append(str(run(msg_prog, act, str, "a messageExpression")) if msg_prog else msg)
    results.append(failed)
json.dump(results, sys.stdout)
