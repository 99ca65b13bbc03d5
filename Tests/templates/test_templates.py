"""Every template end to end — `sandbox-runner run NAME --demo` (the real jail, the real driver,
posthog-local over loopback) — compared with the dataset's true answers, computed in plain Python
from the generated events (tools/posthog-local/posthog_local/truths.py). Each printed document is
also checked against the manifest's `output` schema, and its `parameters` against the variables
the run reports.

Checks that need to look at the server after a run (how many API calls a template made, the members
of the cohort it created) run the same CLI against a posthog-local of our own (the `server`
fixture): `--demo` servers are gone when the run ends. The export's file, which stays in the
sandbox's workspace, is checked by running the rendered template directly.
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import BINARY, ROOT, Server

from posthog_local import truths
from posthog_local.timeutil import iso_ms, parse_iso, to_ms

TEMPLATES = sorted(truths.TEMPLATES)
TEMPLATES_DIR = ROOT / "Templates"
# Rates are ratios of the same integer counts, the p-value the same closed form on them: only float
# rounding may differ.
REL_TOL = 1e-9

CASES: list[tuple[str, dict[str, Any]]] = [
    ("identify_churn_risk", {}),
    ("identify_churn_risk", {"inactive_days": 7, "lookback_days": 30, "min_events": 3, "limit": 500}),
    ("find_power_users", {}),
    ("find_power_users", {"days": 7, "min_events": 10, "limit": 5}),
    ("engagement_trend", {}),
    ("engagement_trend", {"days": 56, "interval": "week"}),
    ("retention_cohorts", {}),
    ("retention_cohorts", {"start_event": "signed_up", "return_event": "report_created", "weeks": 3}),
    ("retention_cohorts", {"weeks": 12}),
    ("conversion_funnel", {}),
    ("conversion_funnel", {"steps": ["signed_up", "first_report_created"], "window_days": 3, "days": 30}),
    ("new_user_activation", {}),
    ("new_user_activation", {"within_days": 2, "days": 45}),
    ("feature_impact", {}),
    ("feature_impact", {"event": "$pageview", "property": "$os", "days": 7}),
    ("analyze_experiment", {"flag_key": "new-onboarding"}),
    ("analyze_experiment", {"flag_key": "pricing-page-v2"}),
    ("analyze_experiment", {"flag_key": "legacy-export"}),  # no exposures: nothing to compare
    ("top_events", {}),
    ("top_events", {"days": 30, "limit": 3}),
    ("property_breakdown", {}),
    ("property_breakdown", {"event": "report_exported", "property": "plan", "days": 14, "limit": 2}),
    ("user_activity_timeline", {"distinct_id": "user-00004"}),
    ("user_activity_timeline", {"distinct_id": "user-00010", "days": 7, "limit": 5}),
    ("user_activity_timeline", {"distinct_id": "nobody-at-all"}),
    ("create_churn_cohort", {"cohort_name": "Churn risk (test)"}),
    ("create_churn_cohort", {"cohort_name": "Quiet for a week", "inactive_days": 7, "lookback_days": 30, "min_events": 3}),
    ("feature_flag_report", {"distinct_ids": ["user-00001", "user-00002", "user-00003"]}),
    ("feature_flag_report", {"flag_key": "new-onboarding", "distinct_ids": ["user-00042", "user-00043"]}),
    ("export_events", {"start": "2026-10-25T00:00:00Z", "end": "2026-10-27T00:00:00Z"}),
    ("export_events", {"start": "2026-10-01T00:00:00Z", "end": "2026-10-08T00:00:00Z",
                       "event_names": ["signed_up", "$pageview"], "format": "csv"}),
]

# PostHog API requests each template's example makes (counted by posthog-local). The analysis
# templates aggregate in HogQL: at most 2 queries each.
EXPECTED_CALLS = {
    "identify_churn_risk": 1,
    "find_power_users": 1,
    "engagement_trend": 2,  # the series, then the summary (DAU/WAU/MAU)
    "retention_cohorts": 1,
    "conversion_funnel": 1,
    "new_user_activation": 1,
    "feature_impact": 1,
    "analyze_experiment": 1,
    "top_events": 1,
    "property_breakdown": 1,
    "user_activity_timeline": 2,  # the newest events, then the counts over the whole window
    "create_churn_cohort": 4,  # at-risk query, persons of those ids, create the cohort, add the persons
    "feature_flag_report": 4,  # the flag list, then one /flags call per distinct id (3)
    "export_events": 1,  # one keyset page (2 days < 10 000 events)
}
WRITERS = {"create_churn_cohort", "feature_flag_report", "export_events"}


def manifest(name: str) -> dict[str, Any]:
    return json.loads((TEMPLATES_DIR / name / "manifest.json").read_text())


def run(name: str, variables: dict[str, Any], server: Server | None = None) -> dict[str, Any]:
    """The result document of `sandbox-runner run NAME` (--demo, or against `server`), checked for
    success; its `data` is checked against the manifest's output schema."""
    args = [BINARY, "run", name, "--json", "--vars-json", json.dumps(variables)]
    if server is None:
        out = subprocess.run(args + ["--demo"], capture_output=True, text=True, timeout=300)
    else:
        out = subprocess.run(args, capture_output=True, text=True, timeout=300, env=server.env, cwd="/")
    doc = json.loads(out.stdout)
    assert doc["success"], f"{name} failed: {doc['error']}\n{doc['stderr'][-2000:]}"
    assert out.returncode == 0
    assert doc["template"] == name and doc["isolation"] == "bubblewrap"
    conforms(doc["data"], manifest(name)["output"], name)
    assert doc["data"]["parameters"] == doc["variables"], "parameters should echo the variables used"
    return doc


# --- comparing ------------------------------------------------------------------------------------

def same(actual: Any, expected: Any, path: str = "") -> None:
    """Equal, with floats compared to REL_TOL."""
    if isinstance(expected, float) or (isinstance(actual, float) and isinstance(expected, int)):
        assert actual == pytest.approx(expected, rel=REL_TOL, abs=1e-12), path
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), f"{path}: keys {set(actual) ^ set(expected)}"
        for k in expected:
            same(actual[k], expected[k], f"{path}.{k}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{path}: {len(actual)} != {len(expected)} items"
        for i, (a, e) in enumerate(zip(actual, expected)):
            same(a, e, f"{path}[{i}]")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


_JSON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
_FORMATS = {"date": r"^\d{4}-\d{2}-\d{2}$",
            "date-time": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"}


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _JSON_TYPES[kind])


def conforms(value: Any, schema: dict[str, Any], path: str) -> None:
    """`value` against the JSON Schema subset the manifests use (type, required, properties,
    additionalProperties, items, enum, format, pattern). MCP clients validate structuredContent
    against it, so it must hold exactly."""
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        assert any(_is(value, k) for k in kinds), f"{path}: {value!r} is not {kinds}"
    if "enum" in schema:
        assert value in schema["enum"], f"{path}: {value!r} not in {schema['enum']}"
    if isinstance(value, str):
        if "format" in schema:
            assert re.match(_FORMATS[schema["format"]], value), f"{path}: {value!r} is not a {schema['format']}"
        if "pattern" in schema:
            assert re.search(schema["pattern"], value), f"{path}: {value!r} does not match {schema['pattern']}"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            assert key in value, f"{path}: missing {key!r}"
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                conforms(item, props[key], f"{path}.{key}")
            elif extra is False:
                raise AssertionError(f"{path}: unexpected key {key!r}")
            elif isinstance(extra, dict):
                conforms(item, extra, f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            conforms(item, schema["items"], f"{path}[{i}]")


# --- the true answers -----------------------------------------------------------------------------

def test_every_template_has_cases():
    assert {name for name, _ in CASES} == set(TEMPLATES)
    assert set(EXPECTED_CALLS) == set(TEMPLATES)


@pytest.mark.parametrize("name,variables", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_template_matches_truth(dataset, name, variables):
    data = dict(run(name, variables)["data"])
    truth = truths.answer(dataset, name, variables)
    data.pop("parameters")
    if name == "create_churn_cohort":
        # The server assigns the id (the --demo server is fresh: its one cohort is 1, ours is next).
        assert data.pop("cohort_id") == 2 and truth.pop("cohort_id") is None
        at_risk = truths.identify_churn_risk(dataset, **{k: v for k, v in variables.items() if k != "cohort_name"},
                                             limit=1_000_000)
        ids = sorted(u["distinct_id"] for u in at_risk["users"])
        assert data.pop("persons_added") == len(ids) and data.pop("unresolved") == 0
        assert data.pop("distinct_ids_sample") == ids[:20]
    if name == "export_events":
        assert data.pop("file") == "events." + variables.get("format", "jsonl")
        assert data.pop("bytes") > 0 and re.fullmatch(r"[0-9a-f]{64}", data.pop("sha256"))
    same(data, truth, name)


def test_experiment_verdicts():
    planted = run("analyze_experiment", manifest("analyze_experiment")["example"])["data"]
    assert planted["flag_key"] == "new-onboarding"
    assert planted["significant"] is True and planted["lift"] > 0.3 and planted["p_value"] < 0.05
    null = run("analyze_experiment", {"flag_key": "pricing-page-v2"})["data"]
    assert null["significant"] is False and null["p_value"] > 0.05


# --- against our own server: API calls, the cohort it writes, refusals ---------------------------

def test_examples_and_their_api_calls(server, dataset):
    """Every manifest's example succeeds (what `smoke` runs) and makes the expected requests: the
    analysis templates aggregate in HogQL, at most two queries."""
    calls = {}
    for name in TEMPLATES:
        example = manifest(name)["example"]
        server.reset_stats()
        data = dict(run(name, example, server)["data"])
        stats = server.stats()
        calls[name] = stats["total"]
        if name not in WRITERS:
            assert set(stats["by_path"]) == {"/api/projects/1/query/"}, f"{name}: {stats['by_path']}"
            assert stats["total"] <= 2, f"{name} made {stats['total']} queries"
        assert all(status.startswith("2") for status in stats["by_status"]), f"{name}: {stats['by_status']}"
        if name not in WRITERS:
            data.pop("parameters")
            same(data, truths.answer(dataset, name, example), name)
    assert calls == EXPECTED_CALLS


def test_created_cohort_holds_exactly_the_users_at_risk(server, dataset):
    variables = {"cohort_name": "Churn risk (members check)", "inactive_days": 10, "lookback_days": 45, "min_events": 4}
    data = run("create_churn_cohort", variables, server)["data"]
    at_risk = truths.identify_churn_risk(dataset, 10, 45, 4, limit=1_000_000)
    expected = {u["distinct_id"] for u in at_risk["users"]}
    assert data["count"] == at_risk["at_risk_count"] == len(expected) > 0

    cohort = server.request("GET", f"/api/projects/1/cohorts/{data['cohort_id']}/")
    assert cohort["name"] == variables["cohort_name"] and cohort["is_static"] is True
    members = server.list_all(f"/api/projects/1/cohorts/{data['cohort_id']}/persons/")
    member_ids = [d for person in members for d in person["distinct_ids"]]
    assert len(member_ids) == len(set(member_ids))
    assert set(member_ids) == expected


def test_refusals_are_one_clear_sentence(server):
    """Inconsistent variables stop the run before anything is written, with the reason."""
    before = len(server.list_all("/api/projects/1/cohorts/"))
    out = subprocess.run([BINARY, "run", "create_churn_cohort", "--json", "--vars-json",
                          json.dumps({"inactive_days": 30, "lookback_days": 20})],
                         capture_output=True, text=True, env=server.env, cwd="/", timeout=120)
    doc = json.loads(out.stdout)
    assert out.returncode == 1 and doc["success"] is False
    assert doc["error"] == "lookback_days must be greater than inactive_days."
    assert len(server.list_all("/api/projects/1/cohorts/")) == before
    out = subprocess.run([BINARY, "run", "export_events", "--json", "--vars-json",
                          json.dumps({"start": "2026-10-02", "end": "2026-10-01"})],
                         capture_output=True, text=True, env=server.env, cwd="/", timeout=120)
    doc = json.loads(out.stdout)
    assert out.returncode == 1 and doc["error"] == "start must be before end."


def test_injection_through_a_variable_is_refused():
    out = subprocess.run([BINARY, "run", "property_breakdown", "--demo", "--json", "--var", "property=x' OR '1'='1"],
                         capture_output=True, text=True)
    assert out.returncode == 64
    assert "'property'" in json.loads(out.stdout)["error"]


# --- the export's file ----------------------------------------------------------------------------

def render(name: str, variables: dict[str, Any]) -> str:
    """The template with its markers replaced by Python literals (as the renderer does, for the
    plain values used here)."""
    spec = {v["name"]: v for v in manifest(name)["variables"]}
    values = {k: v.get("default") for k, v in spec.items()} | variables
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: repr(values[m.group(1)]), (TEMPLATES_DIR / name / "template.py").read_text())


@pytest.mark.parametrize("fmt,names", [("jsonl", []), ("csv", ["report_exported", "signed_up"])])
def test_export_file_holds_the_window_in_order(server, dataset, tmp_path, fmt, names):
    start, end = "2026-10-18T06:00:00Z", "2026-10-23T18:30:00Z"
    (tmp_path / "template.py").write_text(render("export_events", {"start": start, "end": end, "event_names": names,
                                                                  "format": fmt}))
    out = subprocess.run([sys.executable, "template.py"], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env=server.env | {"PYTHONPATH": str(ROOT / "sandbox")})
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    path = tmp_path / data["file"]
    raw = path.read_bytes()
    assert data["bytes"] == len(raw) and data["sha256"] == hashlib.sha256(raw).hexdigest()

    lo, hi = to_ms(parse_iso(start)), to_ms(parse_iso(end))
    expected = [e for e in dataset.events if lo <= e.ts < hi and (not names or e.event in names)]
    assert len(expected) > 10_000 or names  # more than one keyset page when unfiltered
    if fmt == "jsonl":
        rows = [json.loads(line) for line in raw.decode("utf-8").splitlines()]
        props = [r["properties"] for r in rows]  # objects, not JSON text
    else:
        with open(path, newline="", encoding="utf-8") as f:
            table = list(csv.reader(f))
        assert table[0] == ["uuid", "event", "distinct_id", "timestamp", "properties"]
        rows = [dict(zip(table[0], r)) for r in table[1:]]
        props = [json.loads(r["properties"]) for r in rows]
    assert data["rows"] == len(rows) == len(expected)
    assert [(r["uuid"], r["event"], r["distinct_id"], r["timestamp"]) for r in rows] == \
        [(e.uuid, e.event, e.distinct_id, iso_ms(e.ts)) for e in expected]
    assert props == [dataset.props(e) for e in expected]
    same(data["by_event"], truths.export_events(dataset, start, end, names, fmt)["by_event"])


# --- the catalog ----------------------------------------------------------------------------------

def test_list_shows_the_fourteen():
    out = subprocess.run([BINARY, "list", "--json"], capture_output=True, text=True, check=True)
    doc = json.loads(out.stdout)
    assert sorted(t["name"] for t in doc["templates"]) == TEMPLATES
    assert doc["problems"] == []
    writes = [t["name"] for t in doc["templates"] if not t["readOnly"]]
    assert writes == ["create_churn_cohort"]


@pytest.mark.parametrize("name", TEMPLATES)
def test_show_gives_a_schema_an_agent_can_use(name):
    out = subprocess.run([BINARY, "show", name, "--json"], capture_output=True, text=True, check=True)
    doc = json.loads(out.stdout)
    own = manifest(name)
    assert doc["name"] == name and doc["example"] == own["example"] and doc["output"] == own["output"]
    assert len(doc["description"]) > 80
    schema = doc["inputSchema"]
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert all(p.get("description") for p in schema["properties"].values())
    assert set(own["example"]) <= set(schema["properties"])
    _described(doc["output"], name)


def _described(schema: dict[str, Any], path: str) -> None:
    """Every object in an output schema lists its keys (required) and says what each holds."""
    if schema.get("type") == "object" and "properties" in schema:
        assert set(schema.get("required", [])) == set(schema["properties"]), f"{path}: required keys"
        assert schema.get("additionalProperties") is False, f"{path}: closed object"
        for key, sub in schema["properties"].items():
            _described(sub, f"{path}.{key}")
    if isinstance(schema.get("items"), dict):
        _described(schema["items"], f"{path}[]")


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_source_follows_the_rules(name):
    """Values reach HogQL only as placeholders; markers are the only double braces; one document."""
    source = (TEMPLATES_DIR / name / "template.py").read_text()
    variables = {v["name"] for v in manifest(name)["variables"]}
    markers = re.findall(r"\{\{\s*(\w+)\s*\}\}", source)
    assert set(markers) == variables and len(markers) == len(variables)
    assert "{{" not in re.sub(r"\{\{\s*\w+\s*\}\}", "", source) and "}}" not in re.sub(r"\{\{\s*\w+\s*\}\}", "", source)
    assert source.count("emit(") == 1
    assert "print(" not in source
