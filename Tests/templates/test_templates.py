"""Every template end to end — `sandbox-runner run NAME --demo` (the real jail, the real driver,
posthog-local over loopback) — compared with the dataset's true answers, computed in plain Python
from the generated events (tools/posthog-local/posthog_local/truths.py, written from
Templates/SEMANTICS.md, statistics from mpmath). Each printed document is also checked against the
manifest's `output` schema, and its `parameters` against the variables the run reports.

The same templates run against the New York demo project (America/New_York, weeks from Sunday) of a
posthog-local of our own, and are compared with the truths for that time zone and week start. The
hard cases of issue 11 have tests of their own: a funnel worked out by hand (restarts, one timestamp,
the window's edge to the microsecond), the experiment's exposures (two variants, answers that are no
variant, a variant without conversions), PostHog's retention period 0, DAU/MAU per day, matured
activation, bounced signups, flag groups with a variant override, day windows in New York, and
datetime variables with fractions of a second.

Checks that need to look at the server after a run (how many API calls a template made, the members
of the cohort it created) run the same CLI against our own posthog-local: `--demo` servers are gone
when the run ends. The export's file is checked as the operator gets it back: the run's artifact,
in --out-dir, with the size and sha256 the answer names.
"""
from __future__ import annotations

import csv
import datetime
import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import uuid
from typing import Any

import pytest
from templates_support import BINARY, PROJECTS, ROOT, Server, _serve, demo_data_dir

from posthog_local import truths
from posthog_local.dataset import load_dataset
from posthog_local.flags import flag_hash
from posthog_local.timeutil import iso_ms, parse_iso, to_ms

TEMPLATES = sorted(truths.TEMPLATES)
TEMPLATES_DIR = ROOT / "Templates"
# Rates are ratios of the same integer counts; statistics are closed forms (the truths use mpmath):
# only float rounding may differ.
REL_TOL = 1e-9

CASES: list[tuple[str, dict[str, Any]]] = [
    ("identify_churn_risk", {}),
    ("identify_churn_risk", {"inactive_days": 7, "lookback_days": 30, "min_active_days": 2, "limit": 500}),
    ("find_power_users", {}),
    ("find_power_users", {"days": 7, "min_events": 10, "limit": 5}),
    ("engagement_trend", {}),
    ("engagement_trend", {"days": 56, "interval": "week"}),
    ("engagement_trend", {"days": 365}),
    ("retention_cohorts", {}),
    ("retention_cohorts", {"start_event": "signed_up", "return_event": "report_created", "weeks": 3}),
    ("retention_cohorts", {"weeks": 12, "recurring": True}),
    ("conversion_funnel", {}),
    ("conversion_funnel", {"steps": ["signed_up", "first_report_created"], "window_days": 3, "days": 30}),
    ("conversion_funnel", {"steps": ["$pageview", "$pageview", "dashboard_viewed"], "window_days": 1, "days": 14}),
    ("new_user_activation", {}),
    ("new_user_activation", {"within_days": 2, "days": 45}),
    ("feature_impact", {}),
    ("feature_impact", {"event": "$pageview", "property": "$os", "days": 7}),
    ("analyze_experiment", {"flag_key": "new-onboarding"}),
    ("analyze_experiment", {"flag_key": "pricing-page-v2"}),
    ("analyze_experiment", {"flag_key": "onboarding-tips", "conversion_event": "checklist_completed"}),
    ("analyze_experiment", {"flag_key": "new-onboarding", "conversion_window_days": 3,
                            "start_date": "2026-10-01T12:00:00.250Z"}),
    # three arms compared: probability_best by numerical integration, against the truths' mpmath.quad
    ("analyze_experiment", {"flag_key": "onboarding-tips", "conversion_event": "report_exported",
                            "conversion_window_days": 2}),
    ("top_events", {}),
    ("top_events", {"days": 30, "limit": 3}),
    ("property_breakdown", {}),
    ("property_breakdown", {"event": "report_exported", "property": "plan", "days": 14, "limit": 2}),
    ("user_activity_timeline", {"distinct_id": "user-00004"}),
    ("user_activity_timeline", {"distinct_id": "user-00010", "days": 7, "limit": 5}),
    ("user_activity_timeline", {"distinct_id": "nobody-at-all"}),
    ("create_churn_cohort", {"cohort_name": "Churn risk (test)"}),
    ("create_churn_cohort", {"cohort_name": "Quiet for a week", "inactive_days": 7, "lookback_days": 30,
                             "min_active_days": 2}),
    ("feature_flag_report", {"distinct_ids": ["user-00001", "user-00002", "user-00003"]}),
    ("feature_flag_report", {"flag_key": "checkout-redesign", "distinct_ids": ["user-00042", "user-00043"], "days": 7}),
    ("export_events", {"start": "2026-10-25T00:00:00Z", "end": "2026-10-27T00:00:00Z"}),
    ("export_events", {"start": "2026-10-01T00:00:00Z", "end": "2026-10-08T00:00:00Z",
                       "event_names": ["signed_up", "$pageview"], "format": "csv"}),
    ("export_events", {"start": "2026-10-25T00:00:00Z", "end": "2026-10-27T00:00:00Z", "gzip": True}),
]
# The New York project: every template again, in America/New_York with Sunday weeks.
NEW_YORK_CASES: list[tuple[str, dict[str, Any]]] = [
    ("identify_churn_risk", {}),
    ("find_power_users", {"days": 7, "min_events": 10, "limit": 50}),
    ("engagement_trend", {}),
    ("engagement_trend", {"days": 56, "interval": "week"}),
    ("retention_cohorts", {}),
    ("retention_cohorts", {"weeks": 8, "recurring": True}),
    ("conversion_funnel", {}),
    ("new_user_activation", {}),
    ("feature_impact", {"event": "$pageview", "property": "$os", "days": 7}),
    ("analyze_experiment", {"flag_key": "onboarding-tips", "conversion_event": "checklist_completed"}),
    ("top_events", {"days": 1}),
    ("property_breakdown", {"days": 7}),
    ("user_activity_timeline", {"distinct_id": "user-00004", "days": 7}),
    ("create_churn_cohort", {"cohort_name": "Churn risk (New York)"}),
    ("feature_flag_report", {"distinct_ids": ["user-00001"], "days": 7}),
    ("export_events", {"start": "2026-10-24T00:00:00Z", "end": "2026-10-26T00:00:00Z"}),
]

# PostHog API requests each template's example makes (counted by posthog-local): the project's
# settings, then the analysis in HogQL (a few queries at most).
EXPECTED_CALLS = {
    "identify_churn_risk": 2,  # project settings, one query
    "find_power_users": 2,
    "engagement_trend": 4,  # project settings, the series, the daily DAU/WAU/MAU, the stickiness
    "retention_cohorts": 2,
    "conversion_funnel": 2,  # project settings, one page of users' funnel events
    "new_user_activation": 2,
    "feature_impact": 2,
    "analyze_experiment": 3,  # project settings, the experiments, one query
    "top_events": 2,
    "property_breakdown": 2,
    "user_activity_timeline": 3,  # project settings, the newest events, the counts over the window
    "create_churn_cohort": 6,  # settings, counts, lapsed ids, persons of those ids, create, add the persons
    "feature_flag_report": 6,  # settings, the flag list, the covered users, one /flags call per distinct id (3)
    "export_events": 2,  # project settings, one keyset page (2 days < 10 000 events)
}
WRITERS = {"create_churn_cohort", "feature_flag_report", "export_events"}


def manifest(name: str) -> dict[str, Any]:
    return json.loads((TEMPLATES_DIR / name / "manifest.json").read_text())


def planted() -> dict[str, Any]:
    return json.loads((demo_data_dir() / "truths.json").read_text())["planted"]["hard_cases"]


def run(name: str, variables: dict[str, Any], server: Server | None = None, project: str = "utc",
        ok: bool = True) -> dict[str, Any]:
    """The result document of `sandbox-runner run NAME` (--demo, or against `server`'s project), checked
    for success; its `data` is checked against the manifest's output schema."""
    out_dir = tempfile.mkdtemp(prefix="sandbox-runner-template-test-")
    args = [BINARY, "run", name, "--json", "--vars-json", json.dumps(variables), "--out-dir", out_dir]
    try:
        if server is None:
            out = subprocess.run(args + ["--demo"], capture_output=True, text=True, timeout=300)
        else:
            out = subprocess.run(args, capture_output=True, text=True, timeout=300, env=server.env(project), cwd="/")
        doc = json.loads(out.stdout)
        if ok and doc["success"] and name == "export_events":
            # The answer points at the file the operator got back: same name, size and sha256.
            data = doc["data"]
            [artifact] = doc["artifacts"]
            assert (artifact["name"], artifact["bytes"], artifact["sha256"]) == (data["artifact"], data["bytes"], data["sha256"])
            raw = open(artifact["path"], "rb").read()
            assert hashlib.sha256(raw).hexdigest() == data["sha256"] and artifact["path"] == f"{out_dir}/{data['artifact']}"
        elif ok and doc["success"]:
            assert doc["artifacts"] == [], f"{name} left files in out/"
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    if not ok:
        return doc
    assert doc["success"], f"{name} failed: {doc['error']}\n{doc['stderr'][-2000:]}"
    assert out.returncode == 0
    assert doc["template"] == name and doc["isolation"] == "bubblewrap"
    conforms(doc["data"], manifest(name)["output"], name)
    assert doc["data"]["parameters"] == doc["variables"], "parameters should echo the variables used"
    assert (doc["data"]["timezone"], doc["data"]["week_start"]) == \
        (PROJECTS[project]["timezone"], ["sunday", "monday"][PROJECTS[project]["week_start_day"]])
    return doc


def truth(dataset, name: str, variables: dict[str, Any], project: str = "utc") -> dict[str, Any]:
    return truths.answer(dataset, name, variables, PROJECTS[project]["timezone"], PROJECTS[project]["week_start_day"])


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


def compare_with_truth(dataset, name: str, variables: dict[str, Any], data: dict[str, Any],
                       project: str = "utc") -> None:
    data = dict(data)
    expected = truth(dataset, name, variables, project)
    data.pop("parameters")
    if name == "create_churn_cohort":
        # The server assigns the id; the persons added are the lapsed users, all resolvable.
        assert isinstance(data.pop("cohort_id"), int) and expected.pop("cohort_id") is None
    if name == "export_events":
        name_ = "events." + variables.get("format", "jsonl") + (".gz" if variables.get("gzip") else "")
        assert data.pop("artifact") == name_ and data.pop("file") == "out/" + name_
        assert data.pop("gzip") is bool(variables.get("gzip"))
        assert data.pop("bytes") > 0 and re.fullmatch(r"[0-9a-f]{64}", data.pop("sha256"))
    same(data, expected, name)


# --- the true answers -----------------------------------------------------------------------------

def test_every_template_has_cases():
    assert {name for name, _ in CASES} == set(TEMPLATES) == {name for name, _ in NEW_YORK_CASES}
    assert set(EXPECTED_CALLS) == set(TEMPLATES)


@pytest.mark.parametrize("name,variables", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_template_matches_truth(dataset, name, variables):
    data = run(name, variables)["data"]
    if name == "create_churn_cohort":
        assert data["cohort_id"] == 2  # the --demo server is fresh: its one cohort is 1, ours is next
    compare_with_truth(dataset, name, variables, data)


@pytest.mark.parametrize("name,variables", NEW_YORK_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(NEW_YORK_CASES)])
def test_template_matches_truth_in_new_york(server, dataset, name, variables):
    """The same templates on the New York project: days, weeks and windows in America/New_York, weeks
    from Sunday, timestamps with New York's offset; the truths work in that zone from the same rows."""
    compare_with_truth(dataset, name, variables, run(name, variables, server, "new_york")["data"], "new_york")


# --- the hard cases, one finding of issue 11 at a time ----------------------------------------------

FUNNEL_T0 = "2026-10-05T10:00:00"


def _at(base: str, seconds: float) -> str:
    moment = parse_iso(base + "Z") + datetime.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_funnel_worked_by_hand_restarts_one_timestamp_and_the_windows_edge(scenario):
    """PostHog's ordered funnel (funnel-udf/src/steps.rs) on seven users, worked out by hand
    (window 14 days = 1,209,600 s):
    u1 visit, signup +1 h, pay +3 h                          -> 3 (3600 s, 7200 s)
    u2 visit; visit again 20 days later, signup +2 h, pay +5 h -> 3: the later attempt counts (7200, 10800)
    u3 visit and signup at one timestamp                     -> 2 (0 s: left out of the times)
    u4 visit, signup +1 s, pay exactly 14 days after visit    -> 3 (1 s, 1,209,599 s): the edge is inside
    u5 visit, signup +1 s, pay 14 days and 1 µs after visit   -> 2 (1 s): one microsecond too late
    u6 signup, then visit an hour later                      -> 1: order matters
    u7 visit, signup 15 days later                           -> 1: outside the window
    Main's template (windowFunnel over whole seconds) counted u5 at the last step and had no times."""
    tag = uuid.uuid4().hex[:6]
    day = 86400
    plan = {
        "u1": [("visit", 0), ("signup", 3600), ("pay", 3 * 3600)],
        "u2": [("visit", 0), ("visit", 20 * day), ("signup", 20 * day + 7200), ("pay", 20 * day + 5 * 3600)],
        "u3": [("visit", day), ("signup", day)],
        "u4": [("visit", 2 * day), ("signup", 2 * day + 1), ("pay", 16 * day)],
        "u5": [("visit", 3 * day), ("signup", 3 * day + 1), ("pay", 17 * day + 0.000001)],
        "u6": [("signup", 0), ("visit", 3600)],
        "u7": [("visit", 0), ("signup", 15 * day)],
    }
    scenario.capture([{"event": f"fx_{tag}_{name}", "distinct_id": f"fx-{tag}-{user}", "uuid": str(uuid.uuid4()),
                       "timestamp": _at(FUNNEL_T0, offset), "properties": {}}
                      for user, events in plan.items() for name, offset in events])
    variables = {"steps": [f"fx_{tag}_visit", f"fx_{tag}_signup", f"fx_{tag}_pay"], "window_days": 14, "days": 60}
    for project in ("utc", "new_york"):
        steps = run("conversion_funnel", variables, scenario, project)["data"]["steps"]
        assert [s["users"] for s in steps] == [7, 5, 3], project
        same([s["conversion_from_start"] for s in steps], [1.0, 5 / 7, 3 / 7])
        same([s["conversion_from_previous"] for s in steps], [1.0, 5 / 7, 3 / 5])
        assert steps[0]["average_conversion_time_seconds"] is None and steps[0]["median_conversion_time_seconds"] is None
        same(steps[1]["average_conversion_time_seconds"], (3600 + 7200 + 1 + 1) / 4)
        same(steps[1]["median_conversion_time_seconds"], (1 + 3600) / 2)
        same(steps[2]["average_conversion_time_seconds"], (7200 + 10800 + 1_209_599) / 3)
        same(steps[2]["median_conversion_time_seconds"], 10800.0)


def test_experiment_counts_exposures_since_the_start_and_leaves_out_two_variant_users(dataset):
    """new-onboarding: users seen in both variants are excluded and counted (25 planted), responses
    that are no variant (false, missing) are ignored and counted (25 users' stray events and 10
    users who only ever answered false), QA exposures before the experiment's start do not count."""
    hard = planted()["experiment"]
    data = run("analyze_experiment", {"flag_key": "new-onboarding"})["data"]
    assert data["excluded_multiple_variant_users"] == len(hard["two_variants"]) == 25
    assert data["non_variant_exposures"] == 25 + 10
    assert data["start"] == "2026-09-02T00:00:00.000000Z" and data["experiment_id"] == 1
    expected = truth(dataset, "analyze_experiment", {"flag_key": "new-onboarding"})
    same(data["variants"], expected["variants"])
    test = data["comparisons"][0]
    assert test["variant"] == "test" and test["frequentist"]["significant"] and test["bayesian"]["significant"]
    assert test["frequentist"]["method"].startswith("Welch") and test["bayesian"]["method"].startswith("Gaussian")
    same(data["probability_best"]["test"], test["bayesian"]["chance_to_win"])  # two arms: the same number


def test_experiment_compares_every_variant_and_applies_the_minimum_sample_rule():
    """onboarding-tips has three variants; tips-b never converts: PostHog's minimum-sample rule
    leaves it without statistics (not-enough-metric-data) while tips-a is still compared."""
    data = run("analyze_experiment", {"flag_key": "onboarding-tips", "conversion_event": "checklist_completed"})["data"]
    assert [v["variant"] for v in data["variants"]] == ["control", "tips-a", "tips-b"]
    tips_b = data["variants"][2]
    assert tips_b["users"] >= 50 and tips_b["conversions"] == 0
    assert tips_b["validation_failures"] == ["not-enough-metric-data"]
    by_variant = {c["variant"]: c for c in data["comparisons"]}
    assert set(by_variant) == {"tips-a", "tips-b"}
    assert by_variant["tips-b"]["frequentist"] is None and by_variant["tips-b"]["bayesian"] is None
    assert by_variant["tips-a"]["frequentist"]["p_value"] > 0 and 0 < by_variant["tips-a"]["bayesian"]["chance_to_win"] < 1
    assert set(data["probability_best"]) == {"control", "tips-a"}
    assert sum(data["probability_best"].values()) == pytest.approx(1.0, abs=1e-9)
    three = run("analyze_experiment", {"flag_key": "onboarding-tips", "conversion_event": "dashboard_viewed",
                                       "conversion_window_days": 2})["data"]
    assert all(v["validation_failures"] == [] for v in three["variants"])
    assert set(three["probability_best"]) == {"control", "tips-a", "tips-b"}
    assert sum(three["probability_best"].values()) == pytest.approx(1.0, abs=1e-9)


def test_experiment_without_an_experiment_needs_a_start(server):
    """A flag no experiment uses: refused with a sentence saying what to pass; with start_date, every
    variant of the flag is listed (no exposures: none is compared)."""
    doc = run("analyze_experiment", {"flag_key": "checkout-redesign"}, server, ok=False)
    assert doc["success"] is False and doc["exitCode"] == 1
    assert doc["error"] == ("No experiment uses the flag checkout-redesign and no start_date was given: pass "
                            "start_date, when the experiment started.")
    data = run("analyze_experiment", {"flag_key": "checkout-redesign", "start_date": "2026-10-01"}, server)["data"]
    assert [v["variant"] for v in data["variants"]] == ["control", "redesign-a", "redesign-b"]
    assert data["experiment_id"] is None and data["probability_best"] is None
    assert all(c["frequentist"] is None for c in data["comparisons"])


def test_an_ended_experiment_counts_up_to_its_end(dataset, tmp_path):
    """An experiment with an end_date: exposures and conversions after it do not count (PostHog's
    experiment date range). A copy of the demo data whose experiment 1 ended on 2026-10-10 12:00."""
    copy = tmp_path / "ended"
    shutil.copytree(demo_data_dir(), copy)
    resources = json.loads((copy / "resources.json").read_text())
    resources["experiments"][0]["end_date"] = "2026-10-10T12:00:00.000000Z"
    (copy / "resources.json").write_text(json.dumps(resources))
    ended = load_dataset(copy)
    for server in _serve(ended, copy):
        data = run("analyze_experiment", {"flag_key": "new-onboarding"}, server)["data"]
    assert data["end"] == "2026-10-10T12:00:00.000000Z"
    expected = truths.answer(ended, "analyze_experiment", {"flag_key": "new-onboarding"})
    whole = truths.answer(dataset, "analyze_experiment", {"flag_key": "new-onboarding"})
    assert sum(v["users"] for v in expected["variants"]) < sum(v["users"] for v in whole["variants"])
    data.pop("parameters")
    same(data, expected)


def test_retention_period_zero_is_the_cohort_and_weeks_counts_the_cohorts():
    """PostHog's retention: period 0 is the cohort itself (100 %), even for users whose return event
    came before their start event that week; `weeks` cohorts, the oldest with `weeks` periods."""
    data = run("retention_cohorts", {"weeks": 5})["data"]
    cohorts = data["cohorts"]
    assert len(cohorts) == 5
    assert [c["cohort_week"] for c in cohorts] == ["2026-09-28", "2026-10-05", "2026-10-12", "2026-10-19", "2026-10-26"]
    assert [len(c["retained"]) for c in cohorts] == [5, 4, 3, 2, 1]
    assert all(c["retained"][0] == c["size"] > 0 for c in cohorts)


def test_dau_mau_is_per_day_and_wau_mau_follow_days(dataset):
    """DAU/MAU is each day's DAU over that day's trailing 30-day MAU, averaged; WAU and MAU are the
    means over the window (so they move with `days`). Main divided an average DAU by one fixed MAU."""
    for days in (7, 365):
        data = run("engagement_trend", {"days": days})["data"]
        expected = truth(dataset, "engagement_trend", {"days": days})
        for key in ("dau", "wau", "mau", "dau_mau"):
            same(data[key], expected[key], f"{days}.{key}")
        assert len(data["stickiness"]) == days and sum(s["users"] for s in data["stickiness"]) > 0
    short = truth(dataset, "engagement_trend", {"days": 7})
    long = truth(dataset, "engagement_trend", {"days": 365})
    assert short["mau"] != long["mau"] and short["wau"] != long["wau"]


def test_activation_rate_counts_only_matured_signups(dataset):
    data = run("new_user_activation", {})["data"]
    assert data["immature_users"] > 0 and data["matured_users"] + data["immature_users"] == data["new_users"]
    assert data["activation_rate"] == pytest.approx(data["activated"] / data["matured_users"])
    same(data, {**truth(dataset, "new_user_activation", {}), "parameters": data["parameters"]})


def test_churn_separates_lapsed_users_from_bounced_signups(dataset):
    data = run("identify_churn_risk", {"limit": 10000})["data"]
    assert data["bounced_count"] > 0 and data["at_risk_count"] == len(data["users"])
    assert all(u["active_days"] >= 3 for u in data["users"])
    expected = truth(dataset, "identify_churn_risk", {"limit": 10000})
    assert (data["at_risk_count"], data["bounced_count"]) == (expected["at_risk_count"], expected["bounced_count"])


def test_flag_groups_evaluate_variant_overrides_first(server, dataset):
    """checkout-redesign lists a 30 % group first and an enterprise group with a variant override
    second: PostHog tries the override first, so an enterprise user inside the 30 % still gets
    redesign-b (posthog/models/feature_flag/flag_matching.py)."""
    enterprise = sorted(p["distinct_id"] for p in dataset.persons if p["properties"].get("plan") == "enterprise"
                        and flag_hash("checkout-redesign", p["distinct_id"]) < 0.30)
    assert enterprise, "the dataset should hold an enterprise user inside the 30 % group"
    data = run("feature_flag_report", {"flag_key": "checkout-redesign", "distinct_ids": enterprise[:3]}, server)["data"]
    (flag,) = data["flags"]
    assert len(flag["groups"]) == 3 and flag["groups"][1]["variant"] == "redesign-b"
    assert flag["evaluation_order"] == [1, 0, 2]
    assert all(data["evaluations"][d]["checkout-redesign"] == {"enabled": True, "variant": "redesign-b"}
               for d in enterprise[:3])
    reach = flag["reach"]
    assert reach["by_group"][1] > 0 and sum(reach["by_group"]) == reach["enabled"] == sum(reach["by_variant"].values())


@pytest.mark.parametrize("project,zone", [("utc", "UTC"), ("new_york", "America/New_York")])
def test_day_windows_start_at_the_projects_midnight(server, project, zone):
    """The last N days start at 00:00 local time on day T-N+1, to the millisecond: of two events
    planted 1 ms apart at that instant, the later is in and the earlier out, in each project's zone.
    (Main took [now - N days, now) in UTC: in New York it kept the earlier event.)"""
    edges = {e["label"]: e for e in planted()["time_edges"]}
    for days in (7, 28):
        for label, expected in ((f"{zone} {days}d 0ms", True), (f"{zone} {days}d -1ms", False)):
            edge = edges[label]
            data = run("user_activity_timeline", {"distinct_id": edge["distinct_id"], "days": days, "limit": 10000},
                       server, project)["data"]
            stamps = {to_ms(parse_iso(e["timestamp"])) for e in data["events"]}
            assert (to_ms(parse_iso(edge["timestamp"])) in stamps) is expected, f"{project}: {label}"


def test_datetime_variables_keep_fractions_of_a_second(dataset):
    """Through the runner's renderer: a 1 ms export window holds exactly the event planted at its start,
    and the window ending there holds the event 1 ms before. Main cut both ends to whole seconds: the
    window became empty and was refused."""
    boundary = next(e for e in planted()["time_edges"] if e["label"] == "America/New_York 7d 0ms")["timestamp"]
    start = to_ms(parse_iso(boundary))
    after = run("export_events", {"start": iso_ms(start), "end": iso_ms(start + 1)})["data"]
    before = run("export_events", {"start": iso_ms(start - 1), "end": iso_ms(start)})["data"]
    assert after["rows"] == 1 and before["rows"] == 1 and after["by_event"] == before["by_event"] == {"$pageview": 1}
    assert after["parameters"]["start"] == iso_ms(start) and after["parameters"]["end"] == iso_ms(start + 1)


# --- against our own server: API calls, the cohort it writes, refusals ---------------------------

def test_examples_and_their_api_calls(server, dataset):
    """Every manifest's example succeeds (what `smoke` runs) and makes the expected requests: the
    analysis templates read the project's settings and aggregate in HogQL, in a few queries."""
    calls = {}
    for name in TEMPLATES:
        example = manifest(name)["example"]
        server.reset_stats()
        data = dict(run(name, example, server)["data"])
        stats = server.stats()
        calls[name] = stats["total"]
        if name not in WRITERS:
            assert set(stats["by_path"]) <= {"/api/projects/1/", "/api/projects/1/query/",
                                             "/api/projects/1/experiments/"}, f"{name}: {stats['by_path']}"
            assert stats["by_path"]["/api/projects/1/"] == 1, f"{name} should read the project's settings once"
            assert stats["by_path"]["/api/projects/1/query/"] <= 3, f"{name} made {stats['total']} queries"
        assert all(status.startswith("2") for status in stats["by_status"]), f"{name}: {stats['by_status']}"
        if name not in WRITERS:
            data.pop("parameters")
            same(data, truth(dataset, name, example), name)
    assert calls == EXPECTED_CALLS


def test_created_cohort_holds_exactly_the_lapsed_users(server, dataset):
    """create_churn_cohort and identify_churn_risk share one definition: the cohort's members are
    exactly the lapsed users of the report with the same variables."""
    variables = {"cohort_name": "Churn risk (members check)", "inactive_days": 10, "lookback_days": 45,
                 "min_active_days": 4}
    data = run("create_churn_cohort", variables, server)["data"]
    report = run("identify_churn_risk", {k: v for k, v in variables.items() if k != "cohort_name"} | {"limit": 10000},
                 server)["data"]
    expected = {u["distinct_id"] for u in report["users"]}
    assert data["count"] == report["at_risk_count"] == len(expected) > 0
    assert data["bounced_count"] == report["bounced_count"]

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
                         capture_output=True, text=True, env=server.env(), cwd="/", timeout=120)
    doc = json.loads(out.stdout)
    assert out.returncode == 1 and doc["success"] is False
    assert doc["error"] == "lookback_days must be greater than inactive_days."
    assert len(server.list_all("/api/projects/1/cohorts/")) == before
    out = subprocess.run([BINARY, "run", "export_events", "--json", "--vars-json",
                          json.dumps({"start": "2026-10-02", "end": "2026-10-01"})],
                         capture_output=True, text=True, env=server.env(), cwd="/", timeout=120)
    doc = json.loads(out.stdout)
    assert out.returncode == 1 and doc["error"] == "start must be before end."
    out = subprocess.run([BINARY, "run", "export_events", "--json", "--vars-json",
                          json.dumps({"start": "2026-10-02T00:00:00.5Z", "end": "2026-10-02T00:00:00.25Z"})],
                         capture_output=True, text=True, env=server.env(), cwd="/", timeout=120)
    assert out.returncode == 1 and json.loads(out.stdout)["error"] == "start must be before end."


def test_injection_through_a_variable_is_refused():
    out = subprocess.run([BINARY, "run", "property_breakdown", "--demo", "--json", "--var", "property=x' OR '1'='1"],
                         capture_output=True, text=True)
    assert out.returncode == 64
    assert "'property'" in json.loads(out.stdout)["error"]


# --- the export's file ----------------------------------------------------------------------------

@pytest.mark.parametrize("fmt,names,gz", [("jsonl", [], False), ("csv", ["report_exported", "signed_up"], False),
                                          ("jsonl", [], True)])
def test_export_file_holds_the_window_in_order(server, dataset, tmp_path, fmt, names, gz):
    """The file as the operator gets it back (the run's artifact, in --out-dir)."""
    start, end = "2026-10-18T06:00:00Z", "2026-10-23T18:30:00Z"
    out = subprocess.run([BINARY, "run", "export_events", "--json", "--out-dir", str(tmp_path / "got"), "--vars-json",
                          json.dumps({"start": start, "end": end, "event_names": names, "format": fmt, "gzip": gz})],
                         capture_output=True, text=True, timeout=300, env=server.env(), cwd="/")
    doc = json.loads(out.stdout)
    assert out.returncode == 0 and doc["success"], doc["error"]
    data = doc["data"]
    [artifact] = doc["artifacts"]
    path = tmp_path / "got" / data["artifact"]
    assert artifact["path"] == str(path)
    raw = path.read_bytes()
    assert data["bytes"] == artifact["bytes"] == len(raw)
    assert data["sha256"] == artifact["sha256"] == hashlib.sha256(raw).hexdigest()
    if gz:
        import gzip

        assert raw[:2] == b"\x1f\x8b" and artifact["mediaType"] == "application/gzip"
        path = tmp_path / "plain"
        path.write_bytes(gzip.decompress(raw))
        raw = path.read_bytes()

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
    assert {"timezone", "week_start"} <= set(doc["output"]["required"]), "every answer says how it told time"


def _described(schema: dict[str, Any], path: str) -> None:
    """Every object in an output schema lists its keys (required) and says what each holds."""
    if "object" in (schema.get("type") if isinstance(schema.get("type"), list) else [schema.get("type")]) \
            and "properties" in schema:
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


def test_semantics_manifests_and_readme_name_the_same_variables():
    """SEMANTICS.md's heading of each template lists exactly the manifest's variables (with their
    defaults), and the README's table has one line per template."""
    semantics = (TEMPLATES_DIR / "SEMANTICS.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for name in TEMPLATES:
        heading = re.search(rf"^### {name} \((.*)\)$", semantics, re.M)
        assert heading, f"SEMANTICS.md has no section for {name}"
        named = {part.split("=")[0].strip() for part in heading.group(1).split(", ")}
        assert named == {v["name"] for v in manifest(name)["variables"]}, name
        assert len(re.findall(rf"^\| `{name}` \| .+ \|$", readme, re.M)) == 1, f"README's table: {name}"
