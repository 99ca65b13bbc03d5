"""Injection attempts: hostile values are bound (and match nothing), hostile identifiers never
leave the process."""
from __future__ import annotations

import uuid as uuidlib

import pytest
from driver_support import stats
from phl_support import Server

from posthog_driver import InvalidIdentifierError, PostHogClient, Query

HOSTILE_VALUES = [
    "x' OR '1'='1",
    "x' OR 1=1 --",
    "signed_up'; DROP TABLE events; --",
    "{other}",
    "\\' OR 1=1 --",
    "x\") OR (\"1\"=\"1",
]


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_hostile_event_names_match_nothing(client: PostHogClient, value: str) -> None:
    assert client.get_events(days=60, event=value, limit=100) == []
    assert client.get_events(days=60, event_names=[value, "also-not-an-event"], limit=100) == []
    assert list(client.export_events("2026-09-01", "2026-11-01", [value])) == []
    sql, values = Query("SELECT count() AS n FROM events").event_is(value).build()
    assert client.rows(sql, values) == [{"n": 0}]
    # and a raw query written the right way binds it too
    assert client.rows("SELECT count() AS n FROM events WHERE event = {e}", {"e": value}) == [{"n": 0}]
    everything = client.rows("SELECT count() AS n FROM events")[0]["n"]
    assert everything > 0  # there was something to leak


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_hostile_property_values_and_ids_match_nothing(client: PostHogClient, value: str) -> None:
    assert client.get_events(days=60, properties={"$browser": value}, limit=10) == []
    assert client.get_events(days=60, distinct_id=value, limit=10) == []
    assert client.get_persons(distinct_id=value) == []
    assert client.create_cohort("hostile ids", [value])["count"] == 0


def test_a_hostile_value_is_stored_and_found_verbatim(client: PostHogClient) -> None:
    name = "x' OR '1'='1 " + uuidlib.uuid4().hex[:6]
    client.capture_event(name, "quote'user", {"note": "it's"}, timestamp="2025-06-01T00:00:00Z")
    rows = client.get_events(days=36500, event=name, columns=["event", "distinct_id", "properties.note"])
    assert rows == [{"event": name, "distinct_id": "quote'user", "properties.note": "it's"}]


@pytest.mark.parametrize("prop", ["plan' OR '1'='1", "plan`) OR (1", "a;DROP TABLE events", "a{b}", "a]['x",
                                  "properties.$browser = 'Chrome' OR 1", "x\n"])
def test_hostile_identifiers_are_rejected_before_any_request(client: PostHogClient, local: Server, prop: str) -> None:
    calls = [
        lambda: client.get_events(days=7, properties={prop: "x"}),
        lambda: client.get_events(days=7, columns=["event", f"properties.{prop}"]),
        lambda: client.export_events("2026-10-01", "2026-11-01", columns=["uuid", f"person.properties.{prop}"]),
        lambda: Query("SELECT 1 FROM events").property_equals(prop, "x"),
        lambda: Query("SELECT 1 FROM events").property_is_set(prop, person=True),
    ]
    for call in calls:
        with pytest.raises(InvalidIdentifierError) as info:
            call()
        assert prop.strip() not in str(info.value)
    assert stats(local)["total"] == 0


def test_unusual_but_legal_property_names_work_through_bound_keys(client: PostHogClient) -> None:
    event = f"driver_props_{uuidlib.uuid4().hex[:6]}"
    client.capture_event(event, "props-user", {"utm source": "news letter", "a.b": "dotted", "select": "kw"},
                         timestamp="2025-06-02T00:00:00Z")
    rows = client.get_events(days=36500, event=event, properties={"utm source": "news letter"},
                             columns=["properties.utm source", "properties.a.b", "properties.select"])
    assert rows == [{"properties.utm source": "news letter", "properties.a.b": "dotted", "properties.select": "kw"}]
