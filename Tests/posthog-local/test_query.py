"""HogQL over /query/: shapes, caps, placeholders as real parameters, translation vs the truths."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from phl_support import PERSONAL_KEY, PROJECT_KEY, Server

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def test_result_shape(server: Server) -> None:
    body = server.query("SELECT event, count() AS c FROM events GROUP BY event ORDER BY c DESC LIMIT 3").json()
    assert {"results", "columns", "types", "hasMore", "limit", "offset", "hogql", "error"} <= set(body)
    assert body["columns"] == ["event", "c"] and body["error"] is None
    assert body["types"][0] == ["event", "String"]
    assert len(body["results"]) == 3 and body["results"][0][0] == "$pageview"


def test_default_cap_and_explicit_limit_cap(server: Server) -> None:
    body = server.query("SELECT uuid FROM events").json()
    assert len(body["results"]) == 100 and body["hasMore"] is True and body["limit"] == 100
    # An explicit LIMIT is capped at 50,000 silently; hasMore/limit/offset are PostHog's paginator's,
    # filled only for queries without a LIMIT (posthog/hogql_queries/hogql_query_runner.py).
    capped = server.query("SELECT uuid FROM events LIMIT 60000").json()
    assert len(capped["results"]) == 50000 and capped["limit"] is None and capped["hasMore"] is None
    few = server.query("SELECT uuid FROM events ORDER BY timestamp LIMIT {n}", {"n": 5}).json()
    assert len(few["results"]) == 5 and few["limit"] is None


@pytest.mark.parametrize("query", [
    "SELECT uuid FROM events LIMIT 10 OFFSET 10",
    "SELECT uuid FROM events LIMIT 10, 10",
])
def test_offset_is_refused(server: Server, query: str) -> None:
    response = server.query(query)
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "validation_error" and "keyset" in body["detail"]


def test_unknown_placeholder(server: Server) -> None:
    response = server.query("SELECT {a}, {b}", {"a": 1})
    assert response.status_code == 400
    assert response.json()["detail"] == "Unresolved placeholder: {b}"


@pytest.mark.parametrize("query", [
    "SELEC event FROM events",
    "SELECT nosuchcolumn FROM events",
    "SELECT event FROM nosuchtable",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM '/etc/passwd'",
    "SELECT read_text('/etc/passwd')",
    "SELECT 1; SELECT 2",
    "INSERT INTO events VALUES (1)",
])
def test_bad_hogql_is_a_400_with_a_useful_detail(server: Server, query: str) -> None:
    response = server.query(query)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["type"] == "validation_error" and body["detail"]
    assert "Traceback" not in response.text and 'File "' not in response.text


@pytest.mark.parametrize("value", [
    "x' OR '1'='1", "'; DROP TABLE events; --", "$pageview' --", "\\' OR 1=1 --", "{ev}",
])
def test_injection_attempts_stay_values(server: Server, value: str) -> None:
    assert server.rows("SELECT count() FROM events WHERE event = {ev}", {"ev": value}) == [[0]]
    assert server.rows("SELECT {ev}", {"ev": value}) == [[value]]
    assert server.rows("SELECT count() > 0 FROM events") == [[True]]


def test_placeholder_cannot_name_a_table_or_column(server: Server) -> None:
    assert server.query("SELECT count() FROM {t}", {"t": "events"}).status_code == 400
    assert server.query("SELECT {c}.x FROM events", {"c": "events"}).status_code == 400


def test_typed_values_and_lists(server: Server) -> None:
    values = {"i": 41, "f": 1.5, "s": "x", "b": True, "n": None}
    row = server.rows("SELECT {i} + 1, {f} * 2, {s}, {b}, {n} IS NULL", values)[0]
    assert row == [42, 3.0, "x", True, True]
    in_list = server.rows("SELECT count() FROM events WHERE event IN {evs}",
                          {"evs": ["signed_up", "subscription_started"]})[0][0]
    split = server.rows("SELECT countIf(event = 'signed_up') + countIf(event = 'subscription_started') FROM events")
    assert in_list == split[0][0] > 0
    assert server.rows("SELECT count() FROM events WHERE event IN {evs}", {"evs": []}) == [[0]]
    assert server.rows("SELECT count() = (SELECT count() FROM events) FROM events WHERE event NOT IN {evs}",
                       {"evs": []}) == [[True]]


def test_property_access_forms_agree(server: Server) -> None:
    rows = server.rows(
        "SELECT properties.$browser, properties['$browser'], JSONExtractString(properties, '$browser'), "
        "properties[{key}] FROM events WHERE event = '$pageview' ORDER BY timestamp LIMIT 20", {"key": "$browser"})
    assert all(len(set(r)) == 1 for r in rows) and any(r[0] for r in rows)


def test_person_properties_join(server: Server) -> None:
    rows = server.rows("SELECT distinct_id, person.properties.email, person.properties.plan FROM events "
                       "WHERE distinct_id = 'user-00001' LIMIT 1")
    assert rows[0][:2] == ["user-00001", "user00001@example.com"]
    by_alias = server.rows("SELECT e.person.properties.email FROM events e "
                           "WHERE e.distinct_id = 'user-00002' LIMIT 1")
    assert by_alias == [["user00002@example.com"]]
    star = server.query("SELECT * FROM events WHERE person.properties.email = {e} LIMIT 1",
                        {"e": "user00003@example.com"}).json()
    assert star["columns"][:2] == ["uuid", "event"] and not any(c.startswith("__") for c in star["columns"])


def test_timestamps_dates_and_now(server: Server) -> None:
    row = server.rows("SELECT now(), today(), toDate(now() - INTERVAL 1 DAY), max(timestamp), "
                      "toStartOfWeek(now(), 1), toMonday(now()), toStartOfMonth(now()) FROM events "
                      "WHERE timestamp < now()")[0]
    assert row[0] == "2026-11-01T00:00:00.000000Z" and row[1] == "2026-11-01"
    assert row[2] == "2026-10-31" and TS.match(row[3]) and row[3] < row[0]
    assert row[4] == row[5] == "2026-10-26" and row[6] == "2026-11-01"
    # Without a mode PostHog's printer inserts the project's week start (this project: Monday, mode 3)
    week, sunday = server.rows("SELECT toStartOfWeek(toDateTime('2026-10-28 10:00:00')), "
                               "toStartOfWeek(toDateTime('2026-10-28 10:00:00'), 0)")[0]
    assert week == "2026-10-26" and sunday == "2026-10-25"  # mode 0: weeks start on Sunday


def test_clickhouse_functions(server: Server) -> None:
    row = server.rows(
        "SELECT uniq(distinct_id) = count(DISTINCT distinct_id), countIf(event = 'signed_up'), "
        "dateDiff('day', toDateTime('2026-10-01 23:00:00'), toDateTime('2026-10-02 01:00:00')), "
        "if(1 > 2, 'a', 'b'), multiIf(1 > 2, 'a', 2 > 1, 'b', 'c'), toInt(7 / 2), toFloat('2.5'), "
        "toString(42), coalesce(NULL, 'z'), round(2.456, 2), lower('AbC'), "
        "now() - toIntervalDay({n}) = now() - INTERVAL {n} DAY FROM events", {"n": 3})[0]
    assert row == [True, 1050, 1, "b", "b", 3, 2.5, "42", "z", 2.46, "abc", True]
    arrays = server.rows("SELECT groupArray(x), argMin(x, -x), argMax(x, -x) FROM (SELECT arrayJoin([3, 1, 2]) AS x)")
    assert sorted(arrays[0][0]) == [1, 2, 3] and arrays[0][1:] == [3, 1]


def test_captured_timestamp_keyset_pagination(server: Server) -> None:
    page1 = server.rows("SELECT timestamp, uuid FROM events ORDER BY timestamp, uuid LIMIT 5")
    last = page1[-1][0]
    page2 = server.rows("SELECT timestamp, uuid FROM events WHERE timestamp > {last} ORDER BY timestamp, uuid "
                        "LIMIT 5", {"last": last})
    assert page2[0][0] > last


# --- HogQL answers agree with the plain-Python truths -------------------------------------------------

def case(server: Server, name: str, index: int = 0) -> dict:
    return server.truths()["templates"][name][index]["answer"]


def test_top_events_matches_truth(server: Server) -> None:
    truth = case(server, "top_events")
    rows = server.rows("SELECT event, count() AS events, uniq(distinct_id) AS users FROM events "
                       "WHERE timestamp >= now() - INTERVAL {days} DAY AND timestamp < now() "
                       "GROUP BY event ORDER BY events DESC, event ASC LIMIT {limit}", {"days": 7, "limit": 10})
    assert [{"event": r[0], "events": r[1], "users": r[2]} for r in rows] == truth["events"]


def test_churn_count_matches_truth(server: Server) -> None:
    truth = case(server, "identify_churn_risk")
    rows = server.rows(
        "SELECT count() FROM (SELECT distinct_id, "
        "countIf(timestamp >= now() - INTERVAL {lookback} DAY "
        "AND timestamp < now() - INTERVAL {inactive} DAY) AS early, "
        "countIf(timestamp >= now() - INTERVAL {inactive} DAY AND timestamp < now()) AS recent "
        "FROM events GROUP BY distinct_id) WHERE early >= {min_events} AND recent = 0",
        {"lookback": 60, "inactive": 14, "min_events": 5})
    assert rows == [[truth["at_risk_count"]]]


def test_window_funnel_matches_truth(server: Server) -> None:
    truth = case(server, "conversion_funnel")["steps"]
    rows = server.rows(
        "SELECT level, count() FROM (SELECT distinct_id, windowFunnel({window})(toDateTime(timestamp), "
        "event = {s1}, event = {s2}, event = {s3}, event = {s4}) AS level FROM events "
        "WHERE timestamp >= now() - INTERVAL {days} DAY GROUP BY distinct_id) WHERE level > 0 GROUP BY level",
        {"window": 14 * 86400, "days": 60, "s1": "signed_up", "s2": "onboarding_completed",
         "s3": "first_report_created", "s4": "subscription_started"})
    levels = dict((r[0], r[1]) for r in rows)
    reached = [sum(n for lvl, n in levels.items() if lvl >= k) for k in range(1, 5)]
    assert reached == [s["users"] for s in truth]


def test_engagement_series_matches_truth(server: Server) -> None:
    truth = case(server, "engagement_trend", 1)  # weekly
    rows = server.rows("SELECT toStartOfWeek(timestamp, 1) AS w, uniq(distinct_id), count() FROM events "
                       "WHERE timestamp >= now() - INTERVAL 28 DAY AND timestamp < now() GROUP BY w ORDER BY w")
    assert [{"date": r[0], "active_users": r[1], "events": r[2]} for r in rows] == truth["series"]


def test_concurrent_queries_and_captures(server: Server) -> None:
    def work(i: int) -> int:
        with requests.Session() as session:
            if i % 2:
                return session.post(f"{server.url}/i/v0/e/", timeout=30, json={
                    "api_key": PROJECT_KEY, "event": "test_concurrent", "distinct_id": f"c{i}",
                    "timestamp": "2026-11-05T00:00:00Z"}).status_code
            return session.post(f"{server.project}/query/", timeout=30,
                                headers={"Authorization": f"Bearer {PERSONAL_KEY}"},
                                json={"query": {"kind": "HogQLQuery", "query":
                                                "SELECT event, uniq(distinct_id) FROM events "
                                                "GROUP BY event"}}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(work, range(24)))
    assert codes == [200] * 24
    assert server.rows("SELECT count() FROM events WHERE event = 'test_concurrent'") == [[12]]
