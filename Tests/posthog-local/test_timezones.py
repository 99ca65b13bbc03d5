"""Project settings: the second demo project (America/New_York, weeks from Sunday) buckets time as
PostHog does for such a project, and the first (UTC, weeks from Monday) is unchanged.

PostHog: time columns and now() are converted to the project's time zone unless the query's
modifiers say convertToProjectTimezone: false (posthog/hogql/modifiers.py, printer.py
visit_field/now64(tz)); toDate/toStartOfDay/… then work on local time; toStartOfWeek(x) without a
mode uses the project's week_start_day (printer.py: WeekStartDay.clickhouse_mode, Sunday 0, Monday 3).

The expected values below are worked out by hand from the UTC instants (US daylight saving time
began on 2025-03-09 at 07:00 UTC: 02:00 EST became 03:00 EDT; 2026-11-01 00:00 UTC is
2026-10-31 20:00 EDT, a Saturday).
"""
from __future__ import annotations

import uuid
from typing import Any

import pytest
from phl_support import NY_PROJECT_ID, NY_PROJECT_KEY, PROJECT_ID, Server

USER = f"tz-user-{uuid.uuid4().hex[:8]}"
INSTANTS = ["2025-03-08T04:30:00Z",  # Fri 2025-03-07 23:30 EST
            "2025-03-09T04:30:00Z",  # Sat 2025-03-08 23:30 EST
            "2025-03-09T05:30:00Z",  # Sun 2025-03-09 00:30 EST
            "2025-03-09T08:00:00Z"]  # Sun 2025-03-09 04:00 EDT (after the jump)


@pytest.fixture(scope="module")
def captured(server: Server) -> str:
    batch = [{"event": "tz_probe", "distinct_id": USER, "timestamp": t, "uuid": str(uuid.uuid4()),
              "properties": {"n": i}} for i, t in enumerate(INSTANTS)]
    response = server.session.post(f"{server.url}/batch/", json={"api_key": NY_PROJECT_KEY, "batch": batch}, timeout=10)
    assert response.status_code == 200, response.text
    return USER


def rows(server: Server, project: int, hogql: str, values: dict[str, Any], modifiers: dict[str, Any] | None = None) -> list[list[Any]]:
    query: dict[str, Any] = {"kind": "HogQLQuery", "query": hogql, "values": values}
    if modifiers is not None:
        query["modifiers"] = modifiers
    response = server.session.post(f"{server.url}/api/projects/{project}/query/", json={"query": query},
                                   headers=server.auth(), timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["results"]


PROBE = ("SELECT toDate(timestamp), toStartOfWeek(timestamp), toHour(timestamp), timestamp "
         "FROM events WHERE distinct_id = {u} ORDER BY timestamp")


def test_project_api_returns_time_zone_and_week_start(server: Server) -> None:
    ny = server.session.get(f"{server.url}/api/projects/{NY_PROJECT_ID}/", headers=server.auth(), timeout=10).json()
    assert ny["timezone"] == "America/New_York" and ny["week_start_day"] == 0 and ny["id"] == NY_PROJECT_ID
    utc = server.session.get(f"{server.url}/api/projects/{PROJECT_ID}/", headers=server.auth(), timeout=10).json()
    assert utc["timezone"] == "UTC" and utc["week_start_day"] == 1


def test_new_york_buckets_days_and_sunday_weeks(server: Server, captured: str) -> None:
    got = rows(server, NY_PROJECT_ID, PROBE, {"u": captured})
    assert [r[0] for r in got] == ["2025-03-07", "2025-03-08", "2025-03-09", "2025-03-09"]
    assert [r[1] for r in got] == ["2025-03-02", "2025-03-02", "2025-03-09", "2025-03-09"]
    assert [r[2] for r in got] == [23, 23, 0, 4]
    assert [r[3] for r in got] == ["2025-03-07T23:30:00.000000-05:00", "2025-03-08T23:30:00.000000-05:00",
                                   "2025-03-09T00:30:00.000000-05:00", "2025-03-09T04:00:00.000000-04:00"]


def test_utc_project_buckets_the_same_events_in_utc_with_monday_weeks(server: Server, captured: str) -> None:
    got = rows(server, PROJECT_ID, PROBE, {"u": captured})
    assert [r[0] for r in got] == ["2025-03-08", "2025-03-09", "2025-03-09", "2025-03-09"]
    assert [r[1] for r in got] == ["2025-03-03", "2025-03-03", "2025-03-03", "2025-03-03"]
    assert [r[3] for r in got] == ["2025-03-08T04:30:00.000000Z", "2025-03-09T04:30:00.000000Z",
                                   "2025-03-09T05:30:00.000000Z", "2025-03-09T08:00:00.000000Z"]


def test_convert_to_project_timezone_false_answers_in_utc(server: Server, captured: str) -> None:
    got = rows(server, NY_PROJECT_ID, PROBE, {"u": captured}, {"convertToProjectTimezone": False})
    assert [r[0] for r in got] == ["2025-03-08", "2025-03-09", "2025-03-09", "2025-03-09"]
    assert got[3][3] == "2025-03-09T08:00:00.000000Z"


def test_now_today_and_day_starts_are_local(server: Server) -> None:
    ny = rows(server, NY_PROJECT_ID, "SELECT now(), today(), toStartOfDay(now()), toStartOfMonth(now()), "
                                     "toStartOfWeek(now())", {})[0]
    assert ny == ["2026-10-31T20:00:00.000000-04:00", "2026-10-31", "2026-10-31T00:00:00.000000-04:00",
                  "2026-10-01", "2026-10-25"]
    utc = rows(server, PROJECT_ID, "SELECT now(), today(), toStartOfMonth(now()), toStartOfWeek(now())", {})[0]
    assert utc == ["2026-11-01T00:00:00.000000Z", "2026-11-01", "2026-11-01", "2026-10-26"]


def test_text_without_an_offset_is_read_in_the_project_time_zone(server: Server) -> None:
    got = rows(server, NY_PROJECT_ID, "SELECT toDateTime('2025-03-09 12:00:00'), toDateTime('2025-03-09T12:00:00Z')", {})[0]
    assert got == ["2025-03-09T12:00:00.000000-04:00", "2025-03-09T08:00:00.000000-04:00"]


def test_window_of_days_counts_local_days(server: Server, captured: str) -> None:
    got = rows(server, NY_PROJECT_ID, "SELECT toDate(timestamp) AS d, count() FROM events WHERE distinct_id = {u} "
                                      "GROUP BY d ORDER BY d", {"u": captured})
    assert got == [["2025-03-07", 1], ["2025-03-08", 1], ["2025-03-09", 2]]
