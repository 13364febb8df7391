#!/usr/bin/env python3
"""Drive the official Python MCP SDK client (`mcp`, pinned in requirements.txt) against a server.

For the Rust integration tests: they run this script with the real binary and check what the
real Python client saw.

Usage:
    mcp_client.py [OPTIONS] --stdio CMD [ARG...] [OPTIONS]
    mcp_client.py [OPTIONS] --stdio -- CMD [ARG...]        (everything after `--` is the command)
    mcp_client.py [OPTIONS] --http URL [--token TOKEN]

Options:
    --ops FILE.json          JSON array of operations (required; `-` reads stdin):
                               {"op": "list_tools", "cursor": null}
                               {"op": "call_tool", "name": ..., "arguments": {...}}
                               {"op": "list_resources", "cursor": null}
                               {"op": "list_resource_templates", "cursor": null}
                               {"op": "read_resource", "uri": ...}
                               {"op": "list_prompts", "cursor": null}
    --elicit ACTION          accept | decline | cancel | none (default: none). `none` does not
                             declare the elicitation capability; the others declare it (form and
                             url modes) and answer every elicitation with ACTION.
    --elicit-content JSON    content sent with `accept` (default {}); a required boolean field of
                             the requested schema that it lacks is filled with true.
    --protocol P             auto (default: the SDK's own policy, a `server/discover` probe for
                             2026-07-28 with a fall-back to `initialize`), legacy (`initialize`
                             offering the SDK's newest handshake version), a handshake-era version
                             (2024-11-05 | 2025-03-26 | 2025-06-18 | 2025-11-25: `initialize`
                             offering exactly that one) or 2026-07-28 (adopted with no probe).
    --token TOKEN            with --http: sent as `Authorization: Bearer TOKEN`.
    --timeout SECS           bound on the whole session (default 120).
    --verbose                SDK debug logs on stderr.

Prints ONE JSON object on stdout:
    {"protocol_version", "server_info", "capabilities", "instructions"?,
     "results": [one per op: the result as the SDK parsed it (model_dump, by alias, no nulls),
                 or {"error": {"type", "message", "code"?, "data"?}}],
     "elicitations": [{"mode", "message", "requestedSchema"? , "url"?, "action", "content"?}],
     "http_errors"?: [{"method", "status", "body"}]   (HTTP answers >= 400, when there were any)}
Exit 0 when the session worked (a tool error, or a failed op, is a result); otherwise a message
on stderr, exit 1 (the JSON then carries "fatal" and whatever was collected), 2 for bad usage,
3 when even closing the session outlasts the bound by 20 s.
Logs go to stderr only.

Notes: a stdio server inherits this process's whole environment (the SDK alone would pass only
HOME, PATH and a few more). The dumps are the SDK's models, so fields the server did not send
but the model defaults (e.g. `resultType: "complete"`, `ttlMs: 0`, `cacheScope: "private"` on a
2025 session) are there too. `call_tool` runs the SDK's own checks: structured content against
the tool's output schema (listing the tools first if needed); a mismatch is an error result.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import traceback
from contextlib import AsyncExitStack
from typing import Any

import anyio
import mcp_types as types
from mcp.client import Client
from mcp.client import session as session_module
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

log = logging.getLogger("mcp_client")

DRIVER_OPTIONS = {
    "--stdio",
    "--http",
    "--token",
    "--ops",
    "--elicit",
    "--elicit-content",
    "--protocol",
    "--timeout",
    "--verbose",
    "--help",
    "-h",
}
FLAGS = {"--verbose", "--help", "-h"}
ELICIT_ACTIONS = ("accept", "decline", "cancel", "none")
OPS = {"list_tools", "call_tool", "list_resources", "list_resource_templates", "read_resource", "list_prompts"}
# After the --timeout bound fires, the SDK gets this long to close the session (it stops a stdio
# server with stdin-close, SIGTERM, SIGKILL: a few seconds) before the process exits regardless.
HARD_STOP_GRACE = 20.0


class UsageError(Exception):
    pass


def parse_args(argv: list[str]) -> dict[str, Any]:
    """Hand-rolled: `--stdio` takes the rest of a command line, which argparse can't split."""
    opts: dict[str, Any] = {
        "stdio": None,
        "http": None,
        "token": None,
        "ops": None,
        "elicit": "none",
        "elicit_content": None,
        "protocol": "auto",
        "timeout": 120.0,
        "verbose": False,
    }
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--help", "-h"):
            print(__doc__, file=sys.stderr)
            sys.exit(0)
        if arg == "--verbose":
            opts["verbose"] = True
            i += 1
            continue
        if arg == "--stdio":
            if opts["stdio"] is not None:
                raise UsageError("--stdio given twice")
            i += 1
            if i < len(argv) and argv[i] == "--":
                command = argv[i + 1 :]
                i = len(argv)
            else:
                command = []
                while i < len(argv) and argv[i] not in DRIVER_OPTIONS:
                    command.append(argv[i])
                    i += 1
            if not command:
                raise UsageError("--stdio needs a command")
            opts["stdio"] = command
            continue
        if arg not in DRIVER_OPTIONS:
            raise UsageError(f"unknown argument {arg!r}")
        if i + 1 >= len(argv):
            raise UsageError(f"{arg} needs a value")
        value = argv[i + 1]
        key = arg[2:].replace("-", "_")
        if key == "elicit" and value not in ELICIT_ACTIONS:
            raise UsageError(f"--elicit must be one of {', '.join(ELICIT_ACTIONS)}, not {value!r}")
        if key == "timeout":
            try:
                value = float(value)
            except ValueError:
                raise UsageError(f"--timeout: not a number: {value!r}") from None
        opts[key] = value
        i += 2
    if (opts["stdio"] is None) == (opts["http"] is None):
        raise UsageError("give exactly one of --stdio CMD [ARG...] and --http URL")
    if opts["token"] is not None and opts["http"] is None:
        raise UsageError("--token goes with --http")
    if opts["ops"] is None:
        raise UsageError("--ops FILE.json is required")
    protocol = opts["protocol"]
    known = ("auto", "legacy", *HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS)
    if protocol not in known:
        raise UsageError(f"--protocol must be one of {', '.join(known)}, not {protocol!r}")
    if opts["elicit_content"] is not None:
        try:
            content = json.loads(opts["elicit_content"])
        except json.JSONDecodeError as e:
            raise UsageError(f"--elicit-content is not JSON: {e}") from None
        if not isinstance(content, dict):
            raise UsageError("--elicit-content must be a JSON object")
        opts["elicit_content"] = content
    return opts


def load_ops(path: str) -> list[dict[str, Any]]:
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
        ops = json.loads(text)
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"--ops {path}: {e}") from None
    if not isinstance(ops, list) or not all(isinstance(o, dict) and isinstance(o.get("op"), str) for o in ops):
        raise UsageError(f"--ops {path}: expected a JSON array of objects with an \"op\" string")
    unknown = sorted({o["op"] for o in ops} - OPS)
    if unknown:
        raise UsageError(f"--ops {path}: unknown op(s) {', '.join(unknown)}; known: {', '.join(sorted(OPS))}")
    return ops


def dump(model: Any) -> Any:
    if model is None:
        return None
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def leaf_exception(e: BaseException) -> BaseException:
    """The first real exception inside (nested) exception groups."""
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return e


def describe(e: BaseException) -> dict[str, Any]:
    e = leaf_exception(e)
    out: dict[str, Any] = {"type": type(e).__name__, "message": str(e) or repr(e)}
    if isinstance(e, MCPError):
        out["code"] = e.code
        if e.error.data is not None:
            out["data"] = e.error.data
    return out


def elicitation_answer(
    action: str, content: dict[str, Any] | None, params: types.ElicitRequestParams
) -> types.ElicitResult:
    if action != "accept":
        return types.ElicitResult(action=action)
    if isinstance(params, types.ElicitRequestURLParams):
        return types.ElicitResult(action="accept")  # URL mode carries no content
    answer = dict(content or {})
    schema = params.requested_schema or {}
    properties = schema.get("properties") or {}
    for name in schema.get("required") or []:
        if name not in answer and (properties.get(name) or {}).get("type") == "boolean":
            answer[name] = True
    return types.ElicitResult(action="accept", content=answer)


def make_elicitation_callback(action: str, content: dict[str, Any] | None, seen: list[dict[str, Any]]):
    async def callback(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        record: dict[str, Any] = {"mode": params.mode, "message": params.message}
        if isinstance(params, types.ElicitRequestURLParams):
            record["url"] = params.url
            if params.elicitation_id is not None:
                record["elicitationId"] = params.elicitation_id
        else:
            record["requestedSchema"] = params.requested_schema
        answer = elicitation_answer(action, content, params)
        record["action"] = answer.action
        if answer.content is not None:
            record["content"] = answer.content
        seen.append(record)
        log.info("elicitation %r answered %s", params.message, answer.action)
        return answer

    return callback


async def run_op(client: Client, op: dict[str, Any]) -> Any:
    kind = op["op"]
    if kind == "list_tools":
        return await client.list_tools(cursor=op.get("cursor"))
    if kind == "call_tool":
        if not isinstance(op.get("name"), str):
            raise ValueError("call_tool needs a \"name\" string")
        return await client.call_tool(op["name"], op.get("arguments"))
    if kind == "list_resources":
        return await client.list_resources(cursor=op.get("cursor"))
    if kind == "list_resource_templates":
        return await client.list_resource_templates(cursor=op.get("cursor"))
    if kind == "read_resource":
        if not isinstance(op.get("uri"), str):
            raise ValueError("read_resource needs a \"uri\" string")
        return await client.read_resource(op["uri"])
    if kind == "list_prompts":
        return await client.list_prompts(cursor=op.get("cursor"))
    raise ValueError(f"unknown op {kind!r}")


async def session(opts: dict[str, Any], ops: list[dict[str, Any]], out: dict[str, Any]) -> None:
    protocol = opts["protocol"]
    if protocol in HANDSHAKE_PROTOCOL_VERSIONS:
        # `ClientSession.initialize()` offers this module global; the SDK has no parameter for it.
        session_module.LATEST_HANDSHAKE_VERSION = protocol
        mode = "legacy"
    else:
        mode = protocol  # auto | legacy | a modern version
    elicitation_callback = None
    if opts["elicit"] != "none":
        elicitation_callback = make_elicitation_callback(opts["elicit"], opts["elicit_content"], out["elicitations"])

    async with AsyncExitStack() as stack:
        if opts["stdio"] is not None:
            command, *args = opts["stdio"]
            # The whole environment, so what the test sets (RUST_LOG, XDG_*, ...) reaches the
            # server; the SDK alone passes only a safe few variables.
            server: Any = StdioServerParameters(command=command, args=args, env=dict(os.environ))
        else:
            headers = {"Authorization": f"Bearer {opts['token']}"} if opts["token"] is not None else None
            http = await stack.enter_async_context(create_mcp_http_client(headers=headers))

            async def note_http_error(response: Any) -> None:
                # The SDK turns an HTTP error without a JSON-RPC body into a bare -32603;
                # keep the status and body so a failure says what the server answered.
                if response.status_code >= 400:
                    await response.aread()
                    body = response.text[:300].strip()
                    entry = {"method": response.request.method, "status": response.status_code, "body": body}
                    out.setdefault("http_errors", []).append(entry)
                    log.info("HTTP %s %s: %s", response.request.method, response.status_code, body)

            http.event_hooks["response"].append(note_http_error)
            server = streamable_http_client(opts["http"], http_client=http)
        client = await stack.enter_async_context(
            Client(
                server,
                mode=mode,
                elicitation_callback=elicitation_callback,
                read_timeout_seconds=opts["timeout"],
                cache=None,  # every op reaches the server
                client_info=types.Implementation(name="codex-orchestrator-testkit", version="0.1.0"),
            )
        )
        out["protocol_version"] = client.protocol_version
        out["server_info"] = dump(client.server_info)
        out["capabilities"] = dump(client.server_capabilities)
        if client.instructions is not None:
            out["instructions"] = client.instructions
        log.info("connected: protocol %s, server %s", client.protocol_version, out["server_info"])
        for op in ops:
            try:
                out["results"].append(dump(await run_op(client, op)))
            except Exception as e:  # a failed op is a result; the session goes on
                log.info("op %s failed: %s", op.get("op"), e, exc_info=opts["verbose"])
                out["results"].append({"error": describe(e)})


def main(argv: list[str]) -> int:
    try:
        opts = parse_args(argv)
        ops = load_ops(opts["ops"])
    except UsageError as e:
        print(f"mcp_client.py: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if opts["verbose"] else logging.WARNING,
        format="mcp_client.py %(levelname)s %(name)s: %(message)s",
    )
    out: dict[str, Any] = {
        "protocol_version": None,
        "server_info": None,
        "capabilities": None,
        "results": [],
        "elicitations": [],
    }

    async def bounded() -> None:
        with anyio.fail_after(opts["timeout"]):
            await session(opts, ops, out)

    def hard_stop() -> None:
        # Last resort when the SDK's own cleanup hangs past the bound.
        print(f"mcp_client.py: still running {opts['timeout'] + HARD_STOP_GRACE} s after start; exiting", file=sys.stderr)
        sys.stderr.flush()
        os._exit(3)

    watchdog = threading.Timer(opts["timeout"] + HARD_STOP_GRACE, hard_stop)
    watchdog.daemon = True
    watchdog.start()

    code = 0
    try:
        anyio.run(bounded)
    except BaseException as e:  # noqa: BLE001 - report whatever stopped the session
        if isinstance(e, KeyboardInterrupt):
            raise
        leaf = leaf_exception(e)
        if isinstance(leaf, TimeoutError):
            what = f"timed out after {opts['timeout']} s"
        else:
            what = f"{type(leaf).__name__}: {leaf}"
        if out.get("http_errors"):
            last = out["http_errors"][-1]
            what += f" (last HTTP error: {last['method']} {last['status']}: {last['body']})"
        stage = "session" if out["protocol_version"] is not None else "connect"
        print(f"mcp_client.py: {stage} failed: {what}", file=sys.stderr)
        if opts["verbose"]:
            traceback.print_exception(e, file=sys.stderr)
        out["fatal"] = {"stage": stage, **describe(leaf), "message": what}
        code = 1
    print(json.dumps(out))
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
