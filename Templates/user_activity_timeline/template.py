"""user_activity_timeline: one user's recent events (Templates/SEMANTICS.md)."""
from posthog_driver import PostHogClient, emit, rows_of

DISTINCT_ID = {{ distinct_id }}
DAYS = {{ days }}
LIMIT = {{ limit }}
WHERE = "distinct_id = {distinct_id} AND timestamp >= now() - toIntervalDay({days}) AND timestamp < now()"
values = {"distinct_id": DISTINCT_ID, "days": DAYS, "limit": LIMIT}

with PostHogClient() as client:
    events = rows_of(client.query("SELECT event, timestamp FROM events WHERE " + WHERE
                                  + " ORDER BY timestamp DESC, event ASC LIMIT {limit}", values=values))
    counts = rows_of(client.query("SELECT event, count() AS n FROM events WHERE " + WHERE
                                  + " GROUP BY event ORDER BY n DESC, event ASC LIMIT 10000", values=values))

emit({
    "distinct_id": DISTINCT_ID,
    "total_events": sum(int(r["n"]) for r in counts),
    "by_event": {r["event"]: int(r["n"]) for r in counts},
    "events": [{"event": r["event"], "timestamp": r["timestamp"]} for r in events],
    "parameters": {"distinct_id": DISTINCT_ID, "days": DAYS, "limit": LIMIT},
})
