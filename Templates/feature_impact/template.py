"""feature_impact: use of a feature (an event) per value of a property (Templates/SEMANTICS.md)."""
from posthog_driver import PostHogClient, emit, rows_of

EVENT = {{ event }}
PROPERTY = {{ property }}
DAYS = {{ days }}
MAX_VALUES = 10000  # values listed; total_events covers them all

# One query. The property name travels as a value: properties[{property}] never pastes it into the
# text. `sum(events) OVER ()` is every event of that name in the window, before LIMIT.
QUERY = """
    SELECT value, users, events, sum(events) OVER () AS total_events
    FROM (
        SELECT properties[{property}] AS value, count(DISTINCT distinct_id) AS users, count() AS events
        FROM events
        WHERE event = {event} AND timestamp >= toStartOfDay(now() - toIntervalSecond(1)) - toIntervalDay({back}) AND timestamp < now()
        GROUP BY value
    )
    ORDER BY events DESC, value ASC NULLS LAST
    LIMIT {max_values}
"""

with PostHogClient() as client:
    clock = client.get_time_settings()
    rows = rows_of(client.query(QUERY, values={"event": EVENT, "property": PROPERTY, "back": DAYS - 1,
                                               "max_values": MAX_VALUES}))

breakdown = []
for r in rows:
    users, events = int(r["users"]), int(r["events"])
    breakdown.append({"value": r["value"], "users": users, "events": events,
                      "events_per_user": events / users if users else 0.0, "events_per_day": events / DAYS})
emit({
    "total_events": int(rows[0]["total_events"]) if rows else 0,
    "breakdown": breakdown,
    "timezone": clock["timezone"],
    "week_start": clock["week_start"],
    "parameters": {"event": EVENT, "property": PROPERTY, "days": DAYS},
})
