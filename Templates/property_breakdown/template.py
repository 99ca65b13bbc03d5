"""property_breakdown: one event's count and users per value of a property (Templates/SEMANTICS.md)."""
from posthog_driver import PostHogClient, emit, rows_of

EVENT = {{ event }}
PROPERTY = {{ property }}
DAYS = {{ days }}
LIMIT = {{ limit }}
# The property name travels as a value too: properties[{property}] never pastes it into the query.
WHERE = "event = {event} AND timestamp >= now() - toIntervalDay({days}) AND timestamp < now()"
values = {"event": EVENT, "property": PROPERTY, "days": DAYS, "limit": LIMIT}

with PostHogClient() as client:
    rows = rows_of(client.query(
        "SELECT properties[{property}] AS value, count() AS events, count(DISTINCT distinct_id) AS users FROM events WHERE "
        + WHERE + " GROUP BY value ORDER BY events DESC, value ASC NULLS LAST LIMIT {limit}", values=values))
    total = rows_of(client.query("SELECT count() AS n FROM events WHERE " + WHERE, values=values))

n = int(total[0]["n"]) if total else 0
emit({
    "total_events": n,
    "breakdown": [{"value": r["value"], "events": int(r["events"]), "users": int(r["users"]),
                   "share": int(r["events"]) / n if n else 0.0} for r in rows],
    "parameters": {"event": EVENT, "property": PROPERTY, "days": DAYS, "limit": LIMIT},
})
