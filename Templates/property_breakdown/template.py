"""property_breakdown: one event's count and users per value of a property (Templates/SEMANTICS.md)."""
from posthog_driver import PostHogClient, emit, rows_of

EVENT = {{ event }}
PROPERTY = {{ property }}
DAYS = {{ days }}
LIMIT = {{ limit }}

# One query. The property name travels as a value too: properties[{property}] never pastes it into
# the text. `sum(events) OVER ()` is every event of that name in the window, before LIMIT.
QUERY = """
    SELECT value, events, users, sum(events) OVER () AS total_events
    FROM (
        SELECT properties[{property}] AS value, count() AS events, count(DISTINCT distinct_id) AS users
        FROM events
        WHERE event = {event} AND timestamp >= toStartOfDay(now() - toIntervalSecond(1)) - toIntervalDay({back}) AND timestamp < now()
        GROUP BY value
    )
    ORDER BY events DESC, value ASC NULLS LAST
    LIMIT {limit}
"""

with PostHogClient() as client:
    clock = client.get_time_settings()
    rows = rows_of(client.query(QUERY, values={"event": EVENT, "property": PROPERTY, "back": DAYS - 1, "limit": LIMIT}))

total = int(rows[0]["total_events"]) if rows else 0
emit({
    "total_events": total,
    "breakdown": [{"value": r["value"], "events": int(r["events"]), "users": int(r["users"]),
                   "share": int(r["events"]) / total if total else 0.0} for r in rows],
    "timezone": clock["timezone"],
    "week_start": clock["week_start"],
    "parameters": {"event": EVENT, "property": PROPERTY, "days": DAYS, "limit": LIMIT},
})
