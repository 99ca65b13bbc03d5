"""posthog-local's flag evaluation checked against an independent implementation (issue 18: the
flag truths and the server's /flags answers used to come from the same function, so a bug in it
would have passed both).

The expectation below is written from PostHog's own source, not from posthog-local's:
- posthog/models/feature_flag/flag_matching.py (FeatureFlagMatcher):
  get_hash = int(sha1(f"{key}.{distinct_id}{salt}")[:15], 16) / float(0xFFFFFFFFFFFFFFF);
  conditions stably sorted with variant-override groups first, each keeping its own index;
  a condition with properties and no rollout matches; out of rollout when hash > rollout / 100;
  the variant from `get_hash(salt="variant")` against cumulative [min, max) ranges, unless the
  matching group names a variant of the flag; no groups at all → no condition matches; when nothing
  matches, the reason is the highest-priority one seen (out_of_rollout_bound > no_condition_match)
  with that condition's index (0 when none).
- posthog/queries/base.py (match_property): `exact` compares case-insensitively against a value or
  any of a list; `icontains` is a case-insensitive substring test; a missing property never matches.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import pytest
from phl_support import PROJECT_ID, PROJECT_KEY, Server

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "posthog-local"))
from posthog_local.dataset import load_dataset  # noqa: E402  (the dataset's rows, not its evaluation code)

SCALE = float(0xFFFFFFFFFFFFFFF)


def get_hash(key: str, distinct_id: str, salt: str = "") -> float:
    return int(hashlib.sha1(f"{key}.{distinct_id}{salt}".encode("utf-8")).hexdigest()[:15], 16) / SCALE


def match_property(prop: dict[str, Any], values: dict[str, Any]) -> bool:
    key, operator, value = prop["key"], prop.get("operator") or "exact", prop.get("value")
    if key not in values:
        return False
    override = values[key]
    if operator in ("exact", "is_not"):
        hit = (str(override).lower() in [str(v).lower() for v in value]) if isinstance(value, list) \
            else str(value).lower() == str(override).lower()
        return hit if operator == "exact" else not hit
    if operator == "icontains":
        return str(value).lower() in str(override).lower()
    if operator == "not_icontains":
        return str(value).lower() not in str(override).lower()
    if operator == "is_set":
        return True
    raise AssertionError(f"operator {operator} is not modelled by this test: extend it from PostHog's match_property")


def expected(flag: dict[str, Any], distinct_id: str, props: dict[str, Any]) -> tuple[bool, str | None, str, int]:
    key = flag["key"]
    filters = flag.get("filters") or {}
    variants = (filters.get("multivariate") or {}).get("variants") or []
    conditions = sorted(enumerate(filters.get("groups") or []), key=lambda c: 0 if c[1].get("variant") else 1)
    best_reason, best_index, score = "no_condition_match", 0, {"no_condition_match": 0, "out_of_rollout_bound": 1}
    for index, condition in conditions:
        rollout = condition.get("rollout_percentage")
        reason = "condition_match"
        if condition.get("properties"):
            if not all(match_property(p, props) for p in condition["properties"]):
                reason = "no_condition_match"
        if reason == "condition_match" and rollout is not None and get_hash(key, distinct_id) > rollout / 100:
            reason = "out_of_rollout_bound"
        if reason == "condition_match":
            override = condition.get("variant")
            if override in [v["key"] for v in variants]:
                return True, override, reason, index
            h, low, variant = get_hash(key, distinct_id, "variant"), 0.0, None
            for v in variants:
                high = low + v["rollout_percentage"] / 100
                if low <= h < high:
                    variant = v["key"]
                    break
                low = high
            return True, variant, reason, index
        if score[reason] > score[best_reason]:
            best_reason, best_index = reason, index
    return False, None, best_reason, best_index


def flags(server: Server, distinct_id: str, **extra: Any) -> dict[str, Any]:
    r = server.session.post(f"{server.url}/flags?v=2", json={"api_key": PROJECT_KEY, "distinct_id": distinct_id, **extra},
                            timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["flags"]


@pytest.fixture(scope="module")
def dataset(data_dir: Path):
    return load_dataset(data_dir)


def _check(flag_defs: list[dict[str, Any]], got: dict[str, Any], did: str, props: dict[str, Any]) -> None:
    for flag in flag_defs:
        enabled, variant, reason, index = expected(flag, did, props)
        answer = got[flag["key"]]
        assert (answer["enabled"], answer["variant"], answer["reason"]["code"], answer["reason"]["condition_index"]) \
            == (enabled, variant, reason, index), f"{flag['key']} for {did}"


def test_every_active_flag_for_stored_persons(server: Server, dataset) -> None:
    active = [f for f in dataset.flags if f.get("active") and not f.get("deleted")]
    assert any(len((f.get("filters") or {}).get("groups") or []) > 1 for f in active), "the dataset lost its multi-group flag"
    for person in dataset.persons[::7]:  # ~430 persons: the server reads their stored properties itself
        _check(active, flags(server, person["distinct_id"]), person["distinct_id"], person["properties"])


def test_request_properties_override_stored_ones(server: Server, dataset) -> None:
    active = [f for f in dataset.flags if f.get("active") and not f.get("deleted")]
    person = dataset.persons[3]
    for override in ({"plan": "enterprise"}, {"plan": "ENTERPRISE"}, {"plan": "free"}, {"email": "USER01@example.com"}):
        props = {**person["properties"], **override}
        _check(active, flags(server, person["distinct_id"], person_properties=override), person["distinct_id"], props)


def test_a_flag_without_condition_groups_matches_nobody(server: Server) -> None:
    # flag_matching.py iterates feature_flag.conditions: with none there is no match at all.
    created = server.session.post(f"{server.url}/api/projects/{PROJECT_ID}/feature_flags/", timeout=10,
                                  headers=server.auth(),
                                  json={"key": "no-groups-flag", "name": "no groups", "active": True, "filters": {"groups": []}})
    assert created.status_code == 201, created.text
    try:
        answer = flags(server, "user-00001")["no-groups-flag"]
        assert (answer["enabled"], answer["reason"]["code"]) == (False, "no_condition_match")
    finally:
        server.session.patch(f"{server.url}/api/projects/{PROJECT_ID}/feature_flags/{created.json()['id']}/", timeout=10,
                             headers=server.auth(), json={"deleted": True})
