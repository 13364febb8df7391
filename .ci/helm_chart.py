#!/usr/bin/env python3
"""Lints (strict) and renders a Helm chart with the PyPI package helm-python-sdk (which embeds
Helm; no helm binary), once per values file. Prints one JSON object to stdout:
{"<values file>": {"lint": <lint report>, "manifests": {<template>: <yaml>}, "crds": [...]}}, or
{"<values file>": {"error": "<message>"}} when the chart refuses the values.
Used by tests/suite/chart.rs; release name `co`, namespace `tools`."""
import json
import pathlib
import sys

import helm_python as helm

chart_dir = sys.argv[1]
out = {}
chart = helm.Chart.load(chart_dir)
for path in sys.argv[2:]:
    values = helm.values_from_yaml(pathlib.Path(path).read_text()) or {}
    try:
        manifests = chart.render(values, name="co", namespace="tools", is_install=True)
    except Exception as e:  # a `fail` in a template: reported, not fatal
        out[path] = {"error": str(e)}
        continue
    report = helm.lint(chart_dir, values, strict=True, namespace="tools")
    out[path] = {"lint": report, "manifests": manifests, "crds": chart.crds}
json.dump(out, sys.stdout)
