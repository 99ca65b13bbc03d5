"""Capture (single, batch, gzip, dedup, errors) and flag evaluation (/flags, /decide)."""

from __future__ import annotations

import gzip
import hashlib
import json
import uuid

import pytest
from phl_support import PROJECT_KEY, Server

AFTER_R = "2026-11-03T10:00:00.000000Z"  # captured test events stay out of the truths' windows


def count_of(server: Server, event: str) -> int:
    return server.rows("SELECT count() FROM events WHERE event = {e}", {"e": event})[0][0]


@pytest.mark.parametrize("path", ["/i/v0/e/", "/e/", "/capture/"])
def test_single_event_is_visible_immediately(server: Server, path: str) -> None:
    name = f"test_single_{path.strip('/').replace('/', '_')}"
    response = server.session.post(server.url + path, timeout=10, json={
        "api_key": PROJECT_KEY, "event": name, "distinct_id": "cap-1", "timestamp": AFTER_R,
        "properties": {"$browser": "Lynx", "n": 3}})
    assert response.status_code == 200 and response.json() == {"status": 1}
    rows = server.rows("SELECT distinct_id, properties.$browser, timestamp FROM events WHERE event = {e}",
                       {"e": name})
    assert rows == [["cap-1", "Lynx", AFTER_R]]


def test_batch_with_token_alias_and_distinct_id_in_properties(server: Server) -> None:
    batch = [{"event": "test_batch", "properties": {"distinct_id": f"cap-b{i}"}, "timestamp": AFTER_R}
             for i in range(5)]
    response = server.session.post(f"{server.url}/batch/", json={"token": PROJECT_KEY, "batch": batch}, timeout=10)
    assert response.status_code == 200
    assert count_of(server, "test_batch") == 5


@pytest.mark.parametrize("with_header", [True, False])
def test_gzip_by_header_or_magic_bytes(server: Server, with_header: bool) -> None:
    name = f"test_gzip_{with_header}"
    body = gzip.compress(json.dumps({"api_key": PROJECT_KEY, "batch": [
        {"event": name, "distinct_id": "cap-gz", "timestamp": AFTER_R}]}).encode())
    headers = {"Content-Type": "application/json"}
    if with_header:
        headers["Content-Encoding"] = "gzip"
    response = server.session.post(f"{server.url}/batch/", data=body, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert count_of(server, name) == 1


def test_uuid_dedup(server: Server) -> None:
    event_id = str(uuid.uuid4())
    event = {"event": "test_dedup", "distinct_id": "cap-d", "uuid": event_id, "timestamp": AFTER_R}
    body = {"api_key": PROJECT_KEY, "batch": [event, event]}
    for _ in range(2):
        assert server.session.post(f"{server.url}/batch/", json=body, timeout=10).status_code == 200
    assert server.session.post(f"{server.url}/i/v0/e/", json={"api_key": PROJECT_KEY, **event},
                               timeout=10).status_code == 200
    assert server.rows("SELECT uuid FROM events WHERE event = 'test_dedup'") == [[event_id]]


def test_historical_migration_and_set_properties(server: Server) -> None:
    response = server.session.post(f"{server.url}/batch/", timeout=10, json={
        "api_key": PROJECT_KEY, "historical_migration": True, "sent_at": "2030-01-01T00:00:00Z",
        "batch": [{"event": "test_hist", "distinct_id": "cap-h", "timestamp": "2026-11-04T00:00:00Z",
                   "properties": {"$set": {"plan": "enterprise"}, "$set_once": {"first": "yes"}}}]})
    assert response.status_code == 200
    rows = server.rows("SELECT timestamp, person.properties.plan, person.properties.first FROM events "
                       "WHERE event = 'test_hist'")
    assert rows == [["2026-11-04T00:00:00.000000Z", "enterprise", "yes"]]


@pytest.mark.parametrize("payload,status", [
    ({"api_key": PROJECT_KEY, "distinct_id": "x"}, 400),
    ({"api_key": PROJECT_KEY, "event": "e"}, 400),
    ({"api_key": PROJECT_KEY, "batch": []}, 400),
    ({"api_key": PROJECT_KEY, "event": "e", "distinct_id": "x", "timestamp": "yesterday"}, 400),
    ({"event": "e", "distinct_id": "x"}, 401),
    ({"api_key": "phc_wrong", "event": "e", "distinct_id": "x"}, 401),
])
def test_capture_errors_are_plain_text(server: Server, payload: dict, status: int) -> None:
    response = server.session.post(f"{server.url}/i/v0/e/", json=payload, timeout=10)
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("text/plain") and response.text


def test_undecodable_body(server: Server) -> None:
    response = server.session.post(f"{server.url}/batch/", data=b"{not json", timeout=10,
                                   headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.headers["Content-Type"].startswith("text/plain")


# --- flags -------------------------------------------------------------------------------------------

def posthog_hash(key: str, distinct_id: str, salt: str = "") -> float:
    return int(hashlib.sha1(f"{key}.{distinct_id}{salt}".encode()).hexdigest()[:15], 16) / 0xFFFFFFFFFFFFFFF


def expected_variant(distinct_id: str, key: str = "new-onboarding") -> str:
    return "control" if posthog_hash(key, distinct_id, "variant") < 0.5 else "test"


def flags_v2(server: Server, distinct_id: str, **extra: object) -> dict:
    response = server.session.post(f"{server.url}/flags?v=2", timeout=10,
                                   json={"api_key": PROJECT_KEY, "distinct_id": distinct_id, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def test_flags_v2_shape_and_deterministic_variants(server: Server) -> None:
    for did in ("user-00001", "user-00002", "someone-new"):
        body = flags_v2(server, did)
        assert body["errorsWhileComputingFlags"] is False and body["requestId"]
        flag = body["flags"]["new-onboarding"]
        assert set(flag) >= {"key", "enabled", "variant", "reason", "metadata"}
        assert flag["enabled"] is True and flag["variant"] == expected_variant(did)
        assert flag["reason"]["code"] == "condition_match"
        assert "legacy-export" not in body["flags"]  # inactive flags are not evaluated
        assert flags_v2(server, did)["flags"] == body["flags"]
        beta = body["flags"]["beta-dashboards"]
        assert beta["enabled"] == (posthog_hash("beta-dashboards", did) < 0.30)


def test_person_properties_targeting(server: Server) -> None:
    enterprise = flags_v2(server, "nobody-1", person_properties={"plan": "enterprise"})["flags"]
    free = flags_v2(server, "nobody-1", person_properties={"plan": "free"})["flags"]
    assert enterprise["enterprise-sso"]["enabled"] and not free["enterprise-sso"]["enabled"]


def test_decide_legacy_shape(server: Server) -> None:
    response = server.session.post(f"{server.url}/decide/?v=3", timeout=10,
                                   json={"api_key": PROJECT_KEY, "distinct_id": "user-00001"})
    body = response.json()
    assert body["featureFlags"]["new-onboarding"] == expected_variant("user-00001")
    assert isinstance(body["featureFlagPayloads"], dict)


def test_flags_errors(server: Server) -> None:
    missing = server.session.post(f"{server.url}/flags?v=2", json={"api_key": PROJECT_KEY}, timeout=10)
    assert missing.status_code == 400
    wrong = server.session.post(f"{server.url}/flags?v=2", json={"api_key": "phc_x", "distinct_id": "a"}, timeout=10)
    assert wrong.status_code == 401


def test_flag_report_truth_matches_server(server: Server) -> None:
    case = server.truths()["templates"]["feature_flag_report"][0]
    for did, expected in case["answer"]["evaluations"].items():
        got = flags_v2(server, did)["flags"]
        assert {k: {"enabled": v["enabled"], "variant": v["variant"]} for k, v in got.items()
                if k in expected} == expected


def test_condition_groups_with_a_variant_override_are_evaluated_first(server: Server) -> None:
    """PostHog (posthog/models/feature_flag/flag_matching.py): a stable sort puts condition groups
    with a variant override before the others; the reason keeps the group's own index; an override
    that is not one of the flag's variants falls back to the hashed variant."""
    key = f"override-order-{uuid.uuid4().hex[:6]}"
    created = server.session.post(f"{server.project}/feature_flags/", headers=server.auth(), timeout=10, json={
        "key": key, "name": "override order", "active": True, "filters": {
            "groups": [{"properties": [], "rollout_percentage": 100},
                       {"properties": [{"key": "plan", "type": "person", "operator": "exact", "value": ["enterprise"]}],
                        "rollout_percentage": 100, "variant": "test"},
                       {"properties": [{"key": "plan", "type": "person", "operator": "exact", "value": ["pro"]}],
                        "rollout_percentage": 100, "variant": "no-such-variant"}],
            "multivariate": {"variants": [{"key": "control", "rollout_percentage": 100},
                                          {"key": "test", "rollout_percentage": 0}]}}})
    assert created.status_code == 201, created.text
    # every hashed assignment is "control" (100 %); only the override gives "test"
    enterprise = flags_v2(server, "override-user-1", person_properties={"plan": "enterprise"})["flags"][key]
    assert enterprise["variant"] == "test" and enterprise["reason"]["condition_index"] == 1
    free = flags_v2(server, "override-user-1", person_properties={"plan": "free"})["flags"][key]
    assert free["variant"] == "control" and free["reason"]["condition_index"] == 0
    pro = flags_v2(server, "override-user-1", person_properties={"plan": "pro"})["flags"][key]
    assert pro["variant"] == "control" and pro["reason"]["condition_index"] == 2
