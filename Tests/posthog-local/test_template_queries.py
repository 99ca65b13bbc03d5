"""Every template's HogQL, exactly as it is sent, parses with PostHog's own parser (`hogql-parser`)
and calls only functions of HogQL's registry (hogql_functions.json, generated from PostHog's
source by tools/posthog-local/gen_hogql_functions.py).

Each template is rendered with its manifest's example (variables become Python literals, as the
runner writes them) and run by python3 with the real driver against posthog-local; the server
records the queries it received (GET /_local/queries), and each is checked here on its own.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from phl_support import PERSONAL_KEY, PROJECT_ID, PROJECT_KEY, ROOT, Server

sys.path.insert(0, str(ROOT / "tools" / "posthog-local"))
from posthog_local import hogql_check  # noqa: E402

TEMPLATES = sorted(p.parent.name for p in (ROOT / "Templates").glob("*/template.py"))


def render(name: str) -> str:
    manifest = json.loads((ROOT / "Templates" / name / "manifest.json").read_text())
    values = {v["name"]: v.get("default") for v in manifest["variables"]}
    values.update(manifest.get("example") or {})
    source = (ROOT / "Templates" / name / "template.py").read_text()
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: repr(values[m.group(1)]), source)


def calls(node: Any) -> list[str]:
    found = []
    if isinstance(node, dict):
        if node.get("node") == "Call":
            found.append(str(node["name"]))
        for key, value in node.items():
            if key not in ("start", "end"):
                found.extend(calls(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(calls(item))
    return found


def test_there_are_fourteen_templates() -> None:
    assert len(TEMPLATES) == 14


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_queries_parse_with_posthogs_parser_and_use_registry_functions(
        name: str, local: Server, tmp_path: Path) -> None:
    local.session.delete(f"{local.url}/_local/queries", timeout=5)
    (tmp_path / "template.py").write_text(render(name))
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTHOG_")}
    env.update({"POSTHOG_API_URL": local.url, "POSTHOG_INGEST_URL": local.url, "POSTHOG_PERSONAL_API_KEY": PERSONAL_KEY,
                "POSTHOG_PROJECT_API_KEY": PROJECT_KEY, "POSTHOG_PROJECT_ID": str(PROJECT_ID),
                "PYTHONPATH": str(ROOT / "sandbox")})
    result = subprocess.run(["/usr/bin/python3", "template.py"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    received = local.session.get(f"{local.url}/_local/queries", timeout=5).json()["queries"]
    hogql = [q for q in received if "FROM" in q["query"].upper() or "SELECT" in q["query"].upper()]
    if name not in ("feature_flag_report",):  # the one template that reads flags, not HogQL
        assert hogql, f"{name} sent no query"
    registry = hogql_check.registry()
    for sent in hogql:
        ast = hogql_check.parse(sent["query"])  # raises on a syntax error PostHog's parser reports
        for function in calls(ast):
            assert hogql_check.find_function(function) is not None, \
                f"{name} calls {function}(), which is not in HogQL's registry"
        hogql_check.check(sent["query"], sent.get("values") or {})
        assert sent["refresh"] == "force_blocking", "the driver asks for fresh answers by default"
    assert registry["functions"] and registry["aggregations"]
