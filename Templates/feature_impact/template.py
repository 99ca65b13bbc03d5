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
        WHERE event = {event} AND timestamp >= now() - toIntervalDay({days}) AND timestamp < now()
        GROUP BY value
    )
    ORDER BY events DESC, value ASC NULLS LAST
    LIMIT {max_values}
"""

with PostHogClient() as client:
    rows = rows_of(client.query(QUERY, values={"event": EVENT, "property": PROPERTY, "days": DAYS,
                                               "max_values": MAX_VALUES}))

breakdown = []
for r in rows:
    users, events = int(r["users"]), int(r["events"])
    breakdown.append({"value": r["value"], "users": users, "events": events,
                      "events_per_user": events / users if users else 0.0, "events_per_day": events / DAYS})
emit({
    "total_events": int(rows[0]["total_events"]) if rows else 0,
    "breakdown": breakdown,
    "parameters": {"event": EVENT, "property": PROPERTY, "days": DAYS},
})
