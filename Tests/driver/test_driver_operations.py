"""Every operation of the driver against posthog-local, checked against its true answers."""
from __future__ import annotations

import datetime as dt
import json
import uuid as uuidlib
from typing import Any

import pytest
from driver_support import requests_to, stats
from phl_support import PROJECT_ID, Server

from posthog_driver import PostHogClient, QueryError, QueryResult, rows_of


def _truth(server: Server, template: str, index: int = 0) -> dict[str, Any]:
    return server.truths()["templates"][template][index]


# -- the driver contract --------------------------------------------------------------------------

def test_list_objects_names_tables_and_resources(client: PostHogClient) -> None:
    objects = client.list_objects()
    for name in ("events", "persons", "cohorts", "insights", "feature_flags", "experiments"):
        assert name in objects


def test_get_fields_adds_known_properties(client: PostHogClient, local: Server) -> None:
    fields = client.get_fields("events")
    assert fields["timestamp"] == "DateTime" and fields["event"] == "String"
    assert "properties.$browser" in fields and "properties.plan" in fields
    person = client.get_fields("persons")
    assert "properties.email" in person
    before = stats(local)["total"]
    assert "properties.$browser" not in client.get_fields("events", include_properties=False)
    assert client.get_fields("cohorts")["is_static"] == "Boolean"
    assert stats(local)["total"] == before  # static fields need no request


def test_query_answers_columns_results_types_and_rows(client: PostHogClient, local: Server) -> None:
    truth = _truth(local, "top_events")["answer"]
    answer = client.query("SELECT event, count() AS events, count(DISTINCT distinct_id) AS users FROM events "
                          "WHERE timestamp >= now() - toIntervalDay({days}) AND timestamp < now() "
                          "GROUP BY event ORDER BY events DESC, event ASC LIMIT {n}", {"days": 7, "n": 10})
    assert isinstance(answer, QueryResult)
    assert answer["columns"] == ["event", "events", "users"]
    assert [t[0] for t in answer["types"]] == ["event", "events", "users"]
    assert answer["results"][0] == ["$pageview", 9847, 1600]
    assert rows_of(answer) == answer.rows == truth["events"]
    assert client.rows("SELECT count() AS n FROM events WHERE timestamp >= now() - INTERVAL 7 DAY")[0]["n"] == \
        truth["total_events"]


def test_query_values_of_every_kind(client: PostHogClient) -> None:
    rows = client.rows("SELECT count() AS n FROM events WHERE timestamp >= toDateTime({start}) "
                       "AND timestamp < toDateTime({end}) AND event IN {names}",
                       {"start": dt.datetime(2026, 10, 25, tzinfo=dt.timezone.utc), "end": dt.date(2026, 11, 1),
                        "names": ("signed_up", "subscription_started")})
    assert rows == [{"n": 151}]  # the export_events truth with an event filter


# -- reads ----------------------------------------------------------------------------------------

def test_get_events_newest_first_with_filters(client: PostHogClient) -> None:
    events = client.get_events(days=7, event="signed_up", limit=5)
    assert len(events) == 5 and {e["event"] for e in events} == {"signed_up"}
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps, reverse=True)
    one = events[0]["distinct_id"]
    mine = client.get_events(days=60, distinct_id=one, limit=1000, columns=["event", "timestamp", "properties.plan"])
    assert mine and set(mine[0]) == {"event", "timestamp", "properties.plan"}
    chrome = client.get_events(days=7, event_names=["$pageview"], properties={"$browser": "Chrome"}, limit=50,
                               columns=["event", "properties.$browser"])
    assert chrome and all(e["properties.$browser"] == "Chrome" for e in chrome)


def test_get_insights_cohorts_experiments_project(client: PostHogClient) -> None:
    assert {i["name"] for i in client.get_insights()} >= {"Signup funnel", "Weekly active users"}
    assert [i["short_id"] for i in client.get_insights(limit=1)] and len(client.get_insights(limit=1)) == 1
    cohorts = client.get_cohorts()
    assert any(c["name"] == "Enterprise accounts" and c["is_static"] for c in cohorts)
    assert {e["feature_flag_key"] for e in client.get_experiments()} >= {"new-onboarding", "pricing-page-v2"}
    info = client.get_project_info()
    assert info["id"] == PROJECT_ID and info["timezone"] == "UTC"


def test_get_persons_by_distinct_id_search_and_pages(client: PostHogClient, local: Server) -> None:
    person = client.get_persons(distinct_id="user-00001")
    assert len(person) == 1 and person[0]["distinct_ids"] == ["user-00001"]
    assert client.get_persons(search="user00002@example.com")[0]["properties"]["email"] == "user00002@example.com"
    assert client.get_persons(distinct_id="nobody-at-all") == []
    many = client.get_persons(limit=250)  # three pages of 100, following `next`
    assert len(many) == 250 and len({p["id"] for p in many}) == 250
    assert requests_to(local, "GET", f"/api/projects/{PROJECT_ID}/persons/") >= 3


def test_definitions(client: PostHogClient) -> None:
    names = {d["name"] for d in client.get_event_definitions()}
    assert {"$pageview", "signed_up"} <= names
    assert [d["name"] for d in client.get_event_definitions(search="signed")] == ["signed_up"]
    assert "email" in {d["name"] for d in client.get_property_definitions("person")}


# -- flags ----------------------------------------------------------------------------------------

def test_feature_flags_and_evaluation_match_the_truth(client: PostHogClient, local: Server) -> None:
    truth = _truth(local, "feature_flag_report")["answer"]
    flags = client.get_feature_flags()
    assert {f["key"] for f in flags} >= {"new-onboarding", "legacy-export"}
    assert "legacy-export" not in {f["key"] for f in client.get_feature_flags(active=True)}
    for distinct_id, expected in truth["evaluations"].items():
        got = client.evaluate_flags(distinct_id)
        assert {k: {"enabled": v["enabled"], "variant": v["variant"]} for k, v in got.items()} == expected
        for key, want in expected.items():
            flag = client.evaluate_flag(key, distinct_id)
            assert (flag["enabled"], flag["variant"]) == (want["enabled"], want["variant"])
            assert flag["value"] == (want["variant"] or want["enabled"])
    assert client.evaluate_flag("legacy-export", "user-00001")["enabled"] is False  # inactive
    assert client.evaluate_flag("no-such-flag", "user-00001")["reason"]["code"] == "flag_not_found"
    assert requests_to(local, "POST", "/flags") >= 1


def test_person_properties_override_for_flags(client: PostHogClient) -> None:
    sso = client.evaluate_flag("enterprise-sso", "user-00003", person_properties={"plan": "enterprise"})
    assert sso["enabled"] is True
    assert client.evaluate_flag("enterprise-sso", "user-00003", person_properties={"plan": "free"})["enabled"] is False


# -- writes ---------------------------------------------------------------------------------------

def test_capture_event_is_queryable_and_deduplicated(client: PostHogClient) -> None:
    name = f"driver_test_{uuidlib.uuid4().hex[:8]}"
    first = client.capture_event(name, "driver-user-1", {"plan": "pro"}, timestamp="2025-01-02T03:04:05Z")
    uuidlib.UUID(first)  # a real uuid was generated
    again = client.capture_event(name, "driver-user-1", {"plan": "pro"}, timestamp="2025-01-02T03:04:05Z", uuid=first)
    assert again == first
    rows = client.rows("SELECT uuid, timestamp, properties.plan AS plan FROM events WHERE event = {e}", {"e": name})
    assert rows == [{"uuid": first, "timestamp": "2025-01-02T03:04:05.000000Z", "plan": "pro"}]


def test_capture_batch_chunks_gzips_and_keeps_order(client: PostHogClient, local: Server) -> None:
    name = f"driver_batch_{uuidlib.uuid4().hex[:8]}"
    events = [{"event": name, "distinct_id": f"batch-{i % 7}", "properties": {"i": i, "pad": "x" * 200},
               "timestamp": dt.datetime(2025, 2, 1, 0, 0, i % 60)} for i in range(1200)]
    uuids = client.capture_batch(events, batch_size=500)
    assert len(uuids) == len(set(uuids)) == 1200
    assert requests_to(local, "POST", "/batch/") == 3  # 500 + 500 + 200, each ~110 kB: gzipped
    assert client.rows("SELECT count() AS n FROM events WHERE event = {e}", {"e": name}) == [{"n": 1200}]
    # Replaying the same batch (a retry) adds nothing: every event kept its uuid.
    client.capture_batch([dict(e, uuid=u) for e, u in zip(events, uuids)])
    assert client.rows("SELECT count() AS n FROM events WHERE event = {e}", {"e": name}) == [{"n": 1200}]


def test_create_static_cohort_from_distinct_ids(client: PostHogClient, local: Server) -> None:
    ids = [f"user-{n:05d}" for n in range(1, 151)] + ["nobody-1", "nobody-2"]
    cohort = client.create_cohort("Driver test cohort", ids, description="made by the driver tests")
    assert cohort["is_static"] is True and cohort["name"] == "Driver test cohort"
    assert (cohort["persons_added"], cohort["count"], cohort["unresolved"]) == (150, 150, 2)
    assert client.get_cohort(cohort["id"])["count"] == 150
    members = client.get_persons(cohort_id=cohort["id"], limit=None)
    assert sorted(d for p in members for d in p["distinct_ids"]) == ids[:150]
    path = f"/api/projects/{PROJECT_ID}/cohorts/"
    assert requests_to(local, "POST", path) == 1
    empty = client.create_cohort("Driver empty cohort", [])
    assert empty["count"] == 0


# -- export ---------------------------------------------------------------------------------------

def test_export_matches_the_truth_and_orders_by_timestamp_uuid(client: PostHogClient, local: Server) -> None:
    for case in local.truths()["templates"]["export_events"]:
        params, answer = case["params"], case["answer"]
        by_event: dict[str, int] = {}
        previous = None
        for row in client.export_events(params["start"], params["end"], params["event_names"], page_size=3000):
            key = (row["timestamp"], row["uuid"])
            assert previous is None or key > previous
            previous = key
            by_event[row["event"]] = by_event.get(row["event"], 0) + 1
        assert by_event == answer["by_event"]
        assert sum(by_event.values()) == answer["rows"]
    queries = requests_to(local, "POST", f"/api/projects/{PROJECT_ID}/query/")
    assert 7 + 1 <= queries <= 2 * (7 + 1) + 2  # ceil(20822/3000) pages + one of 151 rows, plus slice ends


def test_export_pages_through_ties_on_the_same_timestamp(client: PostHogClient) -> None:
    name = f"driver_ties_{uuidlib.uuid4().hex[:8]}"
    when = "2025-03-01T12:00:00Z"
    uuids = client.capture_batch([{"event": name, "distinct_id": f"tie-{i}", "timestamp": when} for i in range(25)])
    rows = list(client.export_events("2025-03-01", "2025-03-02", [name], page_size=7,
                                     columns=["uuid", "distinct_id", "properties"], parse_properties=True))
    assert sorted(r["uuid"] for r in rows) == sorted(uuids)
    assert [r["uuid"] for r in rows] == sorted(uuids)  # ties ordered by uuid
    assert all(isinstance(r["properties"], dict) for r in rows)


def test_export_arguments_are_checked_before_any_request(client: PostHogClient, local: Server) -> None:
    from posthog_driver import InvalidIdentifierError, ValidationError

    with pytest.raises(ValidationError):
        client.export_events("2026-10-01", "2026-11-01", page_size=50_001)
    with pytest.raises(ValidationError):
        client.export_events("last week", "2026-11-01")
    with pytest.raises(InvalidIdentifierError):
        client.export_events("2026-10-01", "2026-11-01", columns=["uuid", "properties.a'b"])
    assert stats(local)["total"] == 0
    assert list(client.export_events("2026-11-01", "2026-10-01")) == []  # an empty window


def test_export_is_lazy_and_can_stop_early(client: PostHogClient, local: Server) -> None:
    pages = client.export_events("2026-10-01", "2026-11-01", page_size=100)
    assert stats(local)["total"] == 0
    first = [next(pages) for _ in range(150)]
    assert len(first) == 150
    pages.close()
    assert requests_to(local, "POST", f"/api/projects/{PROJECT_ID}/query/") == 2


# -- health ---------------------------------------------------------------------------------------

def test_health_check_reports_each_part(client: PostHogClient, local: Server) -> None:
    health = client.health_check()
    assert health["ok"] is True and health["error"] is None
    assert set(health["checks"]) == {"api", "query", "ingest"} and all(c["ok"] for c in health["checks"].values())
    assert health["project"] == "posthog-local demo" and health["project_id"] == PROJECT_ID
    bad = PostHogClient(api_url=local.url, personal_api_key="phx_wrong_key_0123456789abcdef", project_id=PROJECT_ID)
    report = bad.health_check()
    assert report["ok"] is False and "personal API key" in report["error"]
    assert "phx_wrong_key" not in json.dumps(report)
    assert "ingest" not in report["checks"]  # no project key configured: not checked
    bad.close()


def test_export_across_sparse_and_dense_stretches(client: PostHogClient, local: Server) -> None:
    """Years of nothing, a few captured events, then the dense 60 days: slices widen and narrow."""
    start, end = "2024-01-01", "2026-11-01"
    expected = client.rows("SELECT count() AS n FROM events WHERE timestamp >= toDateTime({a}) "
                           "AND timestamp < toDateTime({b})", {"a": start + "T00:00:00Z", "b": end + "T00:00:00Z"})[0]["n"]
    previous, rows = None, 0
    for row in client.export_events(start, end, page_size=5000, columns=["uuid", "timestamp"]):
        key = (row["timestamp"], row["uuid"])
        assert previous is None or key > previous
        previous, rows = key, rows + 1
    assert rows == expected > 180_000
    queries = requests_to(local, "POST", f"/api/projects/{PROJECT_ID}/query/") - 1
    assert queries <= 3 * (expected // 5000 + 1) + 20


def test_an_asynchronous_query_answer_is_awaited(client: PostHogClient, local: Server) -> None:
    """refresh=force_async: PostHog answers 202 with `query_status` (posthog/api/query.py create) and
    the driver polls GET query/{id}/ (202 while running, 200 with query_status.results when done)."""
    answer = client.query("SELECT count() AS n FROM events WHERE event = {e}", {"e": "signed_up"}, refresh="force_async")
    assert answer.rows == [{"n": answer.rows[0]["n"]}] and answer.rows[0]["n"] > 0
    requests = stats(local)["requests"]
    assert requests.get(f"POST /api/projects/{PROJECT_ID}/query/") == 1
    assert sum(n for k, n in requests.items() if k.startswith(f"GET /api/projects/{PROJECT_ID}/query/")) >= 1


def test_an_asynchronous_query_error_is_a_query_error(client: PostHogClient) -> None:
    with pytest.raises(QueryError) as caught:
        client.query("SELECT nope_not_a_function(1)", refresh="force_async")
    assert "Unsupported function call 'nope_not_a_function(...)'" in str(caught.value)

