"""Every template end to end — `sandbox-runner run NAME --demo` (the real jail, the real driver,
posthog-local over loopback) — compared with the dataset's true answers, computed in plain Python
from the generated events (tools/posthog-local/posthog_local/truths.py)."""
from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from conftest import BINARY

from posthog_local import truths

TEMPLATES = sorted(truths.TEMPLATES)
REL_TOL = 1e-9  # rates are ratios of the same integer counts: only float rounding may differ

CASES: list[tuple[str, dict[str, Any]]] = [
    ("identify_churn_risk", {}),
    ("identify_churn_risk", {"inactive_days": 7, "lookback_days": 30, "min_events": 3, "limit": 500}),
    ("find_power_users", {}),
    ("find_power_users", {"days": 7, "min_events": 10, "limit": 5}),
    ("engagement_trend", {}),
    ("engagement_trend", {"days": 56, "interval": "week"}),
    ("retention_cohorts", {}),
    ("retention_cohorts", {"start_event": "signed_up", "return_event": "report_created", "weeks": 3}),
    ("conversion_funnel", {}),
    ("conversion_funnel", {"steps": ["signed_up", "first_report_created"], "window_days": 3, "days": 30}),
    ("new_user_activation", {}),
    ("new_user_activation", {"within_days": 2, "days": 45}),
    ("feature_impact", {}),
    ("feature_impact", {"event": "$pageview", "property": "$os", "days": 7}),
    ("analyze_experiment", {"flag_key": "new-onboarding"}),
    ("analyze_experiment", {"flag_key": "pricing-page-v2"}),
    ("top_events", {}),
    ("top_events", {"days": 30, "limit": 3}),
    ("property_breakdown", {}),
    ("property_breakdown", {"event": "report_exported", "property": "plan", "days": 14, "limit": 2}),
    ("user_activity_timeline", {"distinct_id": "user-00004"}),
    ("user_activity_timeline", {"distinct_id": "user-00010", "days": 7, "limit": 5}),
    ("create_churn_cohort", {"cohort_name": "Churn risk (test)"}),
    ("feature_flag_report", {"distinct_ids": ["user-00001", "user-00002", "user-00003"]}),
    ("feature_flag_report", {"flag_key": "new-onboarding", "distinct_ids": ["user-00042"]}),
    ("export_events", {"start": "2026-10-25T00:00:00Z", "end": "2026-10-27T00:00:00Z"}),
    ("export_events", {"start": "2026-10-01T00:00:00Z", "end": "2026-10-08T00:00:00Z",
                       "event_names": ["signed_up", "$pageview"], "format": "csv"}),
]


def run(name: str, variables: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run([BINARY, "run", name, "--demo", "--json", "--vars-json", json.dumps(variables)],
                         capture_output=True, text=True, timeout=300)
    doc = json.loads(out.stdout)
    assert doc["success"], f"{name} failed: {doc['error']}\n{doc['stderr'][-2000:]}"
    assert out.returncode == 0
    assert doc["template"] == name and doc["isolation"] == "bubblewrap"
    return doc["data"]


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


def test_every_template_has_cases():
    assert {name for name, _ in CASES} == set(TEMPLATES)


@pytest.mark.parametrize("name,variables", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_template_matches_truth(dataset, name, variables):
    data = run(name, variables)
    truth = truths.answer(dataset, name, variables)
    data.pop("parameters", None)
    if name == "create_churn_cohort":
        # The server assigns the id; the truth is the size (the same users identify_churn_risk finds).
        assert isinstance(data.pop("cohort_id"), int) and truth.pop("cohort_id") is None
        assert data.pop("persons_added") == truth["count"]
        expected = truths.identify_churn_risk(dataset, limit=100000)
        assert data.pop("distinct_ids_sample") == sorted(u["distinct_id"] for u in expected["users"])[:20]
    if name == "export_events":
        for key in ("file", "bytes", "sha256"):
            assert data.pop(key)
    same(data, truth, name)


def test_experiment_verdicts(dataset):
    planted = run("analyze_experiment", {"flag_key": "new-onboarding"})
    assert planted["significant"] is True and planted["lift"] > 0.3 and planted["p_value"] < 0.05
    null = run("analyze_experiment", {"flag_key": "pricing-page-v2"})
    assert null["significant"] is False and null["p_value"] > 0.05


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
    schema = doc["inputSchema"]
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert all(p.get("description") for p in schema["properties"].values())
    assert doc["output"]["type"] == "object" and doc["output"].get("properties")
    assert len(doc["description"]) > 40


def test_injection_through_a_variable_is_refused():
    out = subprocess.run([BINARY, "run", "property_breakdown", "--demo", "--json", "--var", "property=x' OR '1'='1"],
                         capture_output=True, text=True)
    assert out.returncode == 64
    assert "'property'" in json.loads(out.stdout)["error"]
