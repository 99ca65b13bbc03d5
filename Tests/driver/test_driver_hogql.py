"""The HogQL builder: values only ever as generated placeholders, identifiers checked."""
from __future__ import annotations

import datetime as dt
import re

import pytest

from posthog_driver import InvalidIdentifierError, Query, ValidationError, check_identifier, iso_utc

HOSTILE = "x' OR '1'='1"


def _placeholders(sql: str) -> set[str]:
    return set(re.findall(r"\{([A-Za-z0-9_]+)\}", sql))


def test_values_travel_as_placeholders_only() -> None:
    sql, values = (Query("SELECT event, count() AS n FROM events")
                   .last_days(7).event_in([HOSTILE, "signed_up"]).property_equals("$browser", HOSTILE)
                   .distinct_id_is("u'1").group_by("event").order_by("n DESC").limit(10).build())
    assert HOSTILE not in sql and "u'1" not in sql and "'" not in sql
    assert _placeholders(sql) == set(values)
    assert values["p1"] == [HOSTILE, "signed_up"]
    assert sql.endswith("GROUP BY event ORDER BY n DESC LIMIT 10")
    assert "properties.$browser = {p2}" in sql


def test_plain_property_names_are_paths_and_others_are_bound() -> None:
    q = Query("SELECT 1 FROM events")
    assert q.property("$browser") == "properties.$browser"
    assert q.property("plan", person=True) == "person.properties.plan"
    spaced = q.property("utm source")
    assert spaced.startswith("properties[{") and q.values[_placeholders(spaced).pop()] == "utm source"
    keyword = q.property("select")  # a HogQL keyword is never written as a path
    assert keyword.startswith("properties[{")
    dotted = q.property("a.b")  # one key with a dot, not a nested path
    assert dotted.startswith("properties[{")


@pytest.mark.parametrize("name", [
    "plan' OR 1=1 --", 'plan"', "plan`", "a;DROP TABLE events", "a{b}", "a[0]", "a(b)", "a\\b", "a\nb", "a\tb",
    " leading", "trailing ", "double  space", "", "x" * 201, "a,b", "a=b", "a*", "a#b", "a%b", "a|b", None, 3,
])
def test_hostile_identifiers_are_rejected(name: object) -> None:
    with pytest.raises(InvalidIdentifierError) as info:
        check_identifier(name)
    if isinstance(name, str) and name:
        assert name not in str(info.value)  # never echoed


@pytest.mark.parametrize("name", ["$browser", "plan", "utm source", "$feature/new-onboarding", "a.b:c@d+e",
                                  "präferenz", "Button Text"])
def test_reasonable_property_names_are_accepted(name: str) -> None:
    assert check_identifier(name) == name


@pytest.mark.parametrize("field", ["properties.a'b", "person.properties.x;y", "elements_chain; --", "count()",
                                   "uuid, event", "properties.`x`", "person.id"])
def test_unknown_or_hostile_fields_are_rejected(field: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        Query.select(["event", field])


def test_select_builds_from_checked_fields() -> None:
    sql, values = Query.select(["event", "properties.$browser", "person.properties.email", "properties.utm source"]) \
        .build()
    assert sql == "SELECT event, properties.$browser, person.properties.email, properties[{p0}] FROM events"
    assert values == {"p0": "utm source"}


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-10-01", "2026-10-01T00:00:00.000000Z"),
    ("2026-10-01T12:30:00Z", "2026-10-01T12:30:00.000000Z"),
    ("2026-10-01T12:30:00.5+02:00", "2026-10-01T10:30:00.500000Z"),
    (dt.datetime(2026, 10, 1, 1, 2, 3, 4), "2026-10-01T01:02:03.000004Z"),
    (dt.datetime(2026, 10, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-5))), "2026-10-01T06:00:00.000000Z"),
    (dt.date(2026, 10, 1), "2026-10-01T00:00:00.000000Z"),
])
def test_times_are_normalised_to_utc(value: object, expected: str) -> None:
    assert iso_utc(value) == expected


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01", "2026-10-01' OR '1'='1", 1700000000, None])
def test_bad_times_are_refused(value: object) -> None:
    with pytest.raises(ValidationError):
        iso_utc(value)


def test_between_uses_toDateTime_and_bound_values() -> None:
    sql, values = Query("SELECT count() FROM events").between("2026-10-01", dt.date(2026, 10, 8)).build()
    assert sql == ("SELECT count() FROM events WHERE (timestamp >= toDateTime({p0}) AND timestamp < toDateTime({p1}))")
    assert values == {"p0": "2026-10-01T00:00:00.000000Z", "p1": "2026-10-08T00:00:00.000000Z"}


@pytest.mark.parametrize("call", [
    lambda q: q.limit(0), lambda q: q.limit(50_001), lambda q: q.limit("10"), lambda q: q.limit(True),
    lambda q: q.last_days(0), lambda q: q.last_days("7 DAY; DROP"),
    lambda q: q.order_by("n; DROP"), lambda q: q.order_by("n DESC, m"), lambda q: q.group_by("a b"),
    lambda q: q.where("x = {p0}", p0=1), lambda q: q.where("x = {a-b}", **{"a-b": 1}),
    lambda q: q.event_in("signed_up"), lambda q: q.event_is(""), lambda q: q.property_equals("plan", {"a": 1}),
])
def test_bad_arguments_are_refused_before_any_request(call: object) -> None:
    with pytest.raises(ValidationError):
        call(Query("SELECT 1 FROM events"))  # type: ignore[operator]


def test_where_binds_caller_placeholders_and_empty_lists_match_nothing() -> None:
    sql, values = (Query("SELECT count() FROM events").where("toFloat(properties.amount) > {min_amount}", min_amount=5)
                   .distinct_id_in([]).event_in([]).build())
    assert values == {"min_amount": 5}
    assert sql.endswith("WHERE (toFloat(properties.amount) > {min_amount}) AND (false)")


def test_property_values_compare_as_text() -> None:
    _, values = Query("SELECT 1 FROM events").property_equals("n", 5).property_equals("ok", True) \
        .property_in("x", [1, 2.5]).build()
    assert values == {"p0": "5", "p1": "true", "p2": ["1", "2.5"]}
    sql, _ = Query("SELECT 1 FROM events").property_equals("gone", None).build()
    assert sql.endswith("WHERE (isNull(properties.gone))")
