"""feature_impact: use of a feature (an event) per value of a property (Templates/SEMANTICS.md)."""
from posthog_driver import PostHogClient, emit, rows_of

EVENT = {{ event }}
PROPERTY = {{ property }}
DAYS = {{ days }}
values = {"event": EVENT, "property": PROPERTY, "days": DAYS}

with PostHogClient() as client:
    rows = rows_of(client.query(
        "SELECT properties[{property}] AS value, count(DISTINCT distinct_id) AS users, count() AS events FROM events "
        "WHERE event = {event} AND timestamp >= now() - toIntervalDay({days}) AND timestamp < now() "
        "GROUP BY value ORDER BY events DESC, value ASC NULLS LAST LIMIT 10000", values=values))

emit({
    "total_events": sum(int(r["events"]) for r in rows),
    "breakdown": [{"value": r["value"], "users": int(r["users"]), "events": int(r["events"]),
                   "events_per_user": int(r["events"]) / int(r["users"]) if int(r["users"]) else 0.0,
                   "events_per_day": int(r["events"]) / DAYS} for r in rows],
    "parameters": {"event": EVENT, "property": PROPERTY, "days": DAYS},
})
