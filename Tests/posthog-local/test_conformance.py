"""HogQL edge cases with the answer PostHog (and ClickHouse under it) gives, each with its source, so
that posthog-local cannot drift into accepting what PostHog refuses or answering differently.

Sources (PostHog/posthog unless said otherwise):
  P1 posthog/hogql/printer.py visit_call: unknown function -> QueryError "Unsupported function call
     'x(...)'" (+ ". Perhaps you meant 'y(...)'?" from difflib over the exposed names)
  P2 posthog/hogql/functions/core.py validate_function_args: arity messages; printer.py visit_call
     checks parameters only of aggregations that require them ("requires parameters in addition
     to arguments"), as posthog/hogql/test/test_printer.py asserts
  P3 posthog/hogql/functions/mapping.py _find_function: exact name, else lower-case name only for
     entries with case_sensitive=False
  P4 posthog/hogql/errors.py: SyntaxError code_name hogql_syntax_error, QueryError hogql_query_error;
     posthog/api/query.py: ValidationError(str(e), e.code_name) -> 400 {"type": "validation_error", ...}
  P5 printer.py visit_placeholder: "Unresolved placeholder: {x}"
  P6 hogql-parser grammar (HogQLParser.g4): a placeholder stands for an expression only, not after a
     dot, as an alias or in SETTINGS
  P7 posthog/hogql/constants.py: DEFAULT_RETURNED_ROWS 100, MAX_SELECT_RETURNED_ROWS 50000
  P8 printer.py visit_call: toStartOfWeek(x) without a mode gets the project's week start
     (WeekStartDay.clickhouse_mode: Sunday 0, Monday 3)
  C1 ClickHouse docs, aggregate function combinators, -If: "If the condition was not triggered even
     once, it returns a default value (usually zeros or empty strings)"; sum over no rows is 0
  C2 ClickHouse AggregateFunctionWindowFunnel.cpp: first argument must be Unsigned Number, Date or
     DateTime (ILLEGAL_TYPE_OF_ARGUMENT), so PostHog's funnels pass toDateTime(timestamp)
  C3 ClickHouse docs, toStartOfWeek(t[, mode]): mode 0 Sunday-first (the default), 1 Monday-first;
     the week-mode table of toWeek: odd modes start on Monday
  C4 ClickHouse docs, dateDiff: "the count of the specified unit boundaries crossed"; weeks are
     counted by toRelativeWeekNum (weeks start on Monday)
  C5 ClickHouse docs, arithmetic: divide (/) always returns Float64; intDiv the integer quotient
  C6 ClickHouse docs, ORDER BY: "By default or with the NULLS LAST modifier: first the values, then
     NaN, then NULL" (ascending and descending alike)
"""
from __future__ import annotations

from typing import Any

import pytest
from phl_support import Server


def refused(server: Server, hogql: str, values: dict[str, Any] | None = None) -> dict[str, Any]:
    response = server.query(hogql, values)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["type"] == "validation_error" and body["attr"] is None, body
    return body


# --- functions outside HogQL's registry (P1, P4) --------------------------------------------------

@pytest.mark.parametrize("call,name", [
    ("quantileExact(0.5)(toFloat(properties.x))", "quantileExact"),
    ("quantileTDigest(0.5)(toFloat(properties.x))", "quantileTDigest"),
    ("uniqCombined(distinct_id)", "uniqCombined"),
    ("toUInt64(1)", "toUInt64"),
    ("toIntOrNull('1')", "toIntOrNull"),
    ("toFloat64OrNull('1')", "toFloat64OrNull"),
    ("toDateOrNull('2026-01-01')", "toDateOrNull"),
    ("toDate32('2026-01-01')", "toDate32"),
    ("toStartOfISOWeek(timestamp)", "toStartOfISOWeek"),
    ("parseDateTimeBestEffortOrNull('2026-01-01')", "parseDateTimeBestEffortOrNull"),
])
def test_functions_outside_hogql_are_refused_like_posthog(server: Server, call: str, name: str) -> None:
    body = refused(server, f"SELECT {call} FROM events LIMIT 1")
    assert body["code"] == "hogql_query_error"
    assert body["detail"].startswith(f"Unsupported function call '{name}(...)'")


def test_a_close_name_is_suggested(server: Server) -> None:  # P1
    assert refused(server, "SELECT toUInt64(1)")["detail"] == \
        "Unsupported function call 'toUInt64(...)'. Perhaps you meant 'toInt(...)'?"


@pytest.mark.parametrize("hogql,ok", [
    ("SELECT COUNT() FROM events", True),      # count: case_sensitive=False
    ("SELECT IF(1 > 0, 1, 2)", True),           # if: case_sensitive=False
    ("SELECT COUNTIF(event = 'x') FROM events", False),  # countIf is case-sensitive
    ("SELECT touint64(1)", False),
    ("SELECT _toUInt64(1)", True),              # HogQL's own name for ClickHouse's toUInt64
])
def test_function_names_resolve_with_posthogs_case_rules(server: Server, hogql: str, ok: bool) -> None:  # P3
    response = server.query(hogql)
    assert (response.status_code == 200) is ok, response.text


@pytest.mark.parametrize("hogql,detail", [
    ("SELECT if(1)", "Function 'if' expects 3 arguments, found 1"),
    ("SELECT count(1, 2) FROM events", "Aggregation 'count' expects at most 1 argument, found 2"),
    ("SELECT toDate() ", "Function 'toDate' expects 1 argument, found 0"),
    ("SELECT quantile(toFloat(properties.x)) FROM events",
     "Aggregation 'quantile' requires parameters in addition to arguments"),
    ("SELECT quantile(0.5, 0.9)(toFloat(properties.x)) FROM events", "Aggregation 'quantile' expects 1 parameter, found 2"),
    ("SELECT dateDiff('day', now())", "Function 'dateDiff' expects 3 arguments, found 2"),
])
def test_wrong_arities_are_refused_with_posthogs_messages(server: Server, hogql: str, detail: str) -> None:  # P2
    body = refused(server, hogql)
    assert body["code"] == "hogql_query_error" and body["detail"] == detail


# --- syntax and placeholders (P4, P5, P6) ----------------------------------------------------------

@pytest.mark.parametrize("hogql", [
    "SELECT properties.{p} FROM events",
    "SELECT event AS {name} FROM events",
    "SELECT event FROM events SETTINGS max_threads = {n}",
    "SELEC event FROM events",
    "SELECT 1; SELECT 2",
])
def test_syntax_errors_are_posthogs(server: Server, hogql: str) -> None:
    body = refused(server, hogql, {"p": "x", "name": "y", "n": 1})
    assert body["code"] == "hogql_syntax_error"


def test_an_unresolved_placeholder_is_refused(server: Server) -> None:
    body = refused(server, "SELECT event FROM events WHERE event = {missing}", {"other": 1})
    assert body["code"] == "hogql_query_error" and body["detail"] == "Unresolved placeholder: {missing}"


def test_a_placeholder_cannot_name_a_table(server: Server) -> None:
    body = refused(server, "SELECT count() FROM {table}", {"table": "events"})
    assert body["code"] == "hogql_query_error" and "{table}" in body["detail"]


# --- ClickHouse semantics PostHog inherits ---------------------------------------------------------

def test_count_if_and_sum_if_over_no_match_are_zero(server: Server) -> None:  # C1
    row = server.rows("SELECT countIf(event = 'no-such-event'), sumIf(1, event = 'no-such-event'), "
                      "count(), sum(1) FROM events WHERE event = 'no-such-event'")[0]
    assert row == [0, 0, 0, 0]
    grouped = server.rows("SELECT event, countIf(distinct_id = 'nobody') FROM events "
                          "WHERE event = 'signed_up' GROUP BY event")
    assert grouped == [["signed_up", 0]]


def test_window_funnel_refuses_datetime64_and_takes_datetime(server: Server) -> None:  # C2
    body = refused(server, "SELECT windowFunnel(3600)(timestamp, event = 'a', event = 'b') FROM events")
    assert body["code"] == "illegal_type_of_argument"
    assert body["detail"].startswith("Illegal type DateTime64(6, 'UTC') of first argument of aggregate "
                                     "function windowFunnel, must be Unsigned Number, Date, DateTime")
    for first in ("toDateTime(timestamp)", "toUnixTimestamp(timestamp)", "toDate(timestamp)"):
        assert server.query(f"SELECT windowFunnel(3600)({first}, event = 'a') FROM events").status_code == 200


@pytest.mark.parametrize("mode,expected", [(0, "2026-10-25"), (1, "2026-10-26"), (2, "2026-10-25"),
                                           (3, "2026-10-26"), (9, "2026-10-26")])
def test_to_start_of_week_modes(server: Server, mode: int, expected: str) -> None:  # C3
    # 2026-10-28 is a Wednesday
    assert server.rows(f"SELECT toStartOfWeek(toDate('2026-10-28'), {mode})")[0][0] == expected


def test_to_start_of_week_without_a_mode_follows_the_project(server: Server) -> None:  # P8
    # this project starts weeks on Monday (week_start_day 1): PostHog prints mode 3
    assert server.rows("SELECT toStartOfWeek(toDate('2026-10-25'))")[0][0] == "2026-10-19"


@pytest.mark.parametrize("unit,start,end,expected", [
    ("week", "2024-01-07", "2024-01-08", 1),   # Sunday -> Monday crosses a week boundary
    ("week", "2024-01-08", "2024-01-14", 0),   # Monday -> Sunday of the same week
    ("week", "2024-01-01", "2024-01-29", 4),
    ("day", "2024-01-01 23:00:00", "2024-01-02 01:00:00", 1),
    ("month", "2024-01-31", "2024-02-01", 1),
    ("year", "2024-12-31", "2025-01-01", 1),
    ("hour", "2024-01-01 10:59:59", "2024-01-01 11:00:00", 1),
])
def test_date_diff_counts_unit_boundaries(server: Server, unit: str, start: str, end: str, expected: int) -> None:  # C4
    assert server.rows("SELECT dateDiff({u}, toDateTime({a}), toDateTime({b}))",
                       {"u": unit, "a": start, "b": end})[0][0] == expected


def test_division(server: Server) -> None:  # C5
    assert server.rows("SELECT 7 / 2, intDiv(7, 2), 6 / 3")[0] == [3.5, 3, 2.0]


@pytest.mark.parametrize("direction,expected", [("ASC", [1, 2, None]), ("DESC", [2, 1, None])])
def test_nulls_sort_last_both_ways(server: Server, direction: str, expected: list[Any]) -> None:  # C6
    rows = server.rows("SELECT x FROM (SELECT 1 AS x UNION ALL SELECT NULL AS x UNION ALL SELECT 2 AS x) "
                       f"ORDER BY x {direction}")
    assert [r[0] for r in rows] == expected


# --- answer shape (P7) -----------------------------------------------------------------------------

def test_has_more_limit_and_offset_only_without_a_limit(server: Server) -> None:
    default = server.query("SELECT uuid FROM events").json()
    assert len(default["results"]) == 100 and default["hasMore"] is True
    assert default["limit"] == 100 and default["offset"] == 0
    explicit = server.query("SELECT uuid FROM events LIMIT 150").json()
    assert len(explicit["results"]) == 150
    assert explicit["hasMore"] is None and explicit["limit"] is None and explicit["offset"] is None
