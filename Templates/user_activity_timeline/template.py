"""user_activity_timeline: one user's recent events (Templates/SEMANTICS.md)."""
from posthog_driver import PostHogClient, emit, rows_of

DISTINCT_ID = {{ distinct_id }}
DAYS = {{ days }}
LIMIT = {{ limit }}
WHERE = "distinct_id = {distinct_id} AND timestamp >= toStartOfDay(now() - toIntervalSecond(1)) - toIntervalDay({back}) AND timestamp < now()"
values = {"distinct_id": DISTINCT_ID, "back": DAYS - 1, "limit": LIMIT}

with PostHogClient() as client:
    clock = client.get_time_settings()
    events = rows_of(client.query("SELECT event, timestamp FROM events WHERE " + WHERE
                                  + " ORDER BY timestamp DESC, event ASC LIMIT {limit}", values=values))
    counts = rows_of(client.query("SELECT event, count() AS n FROM events WHERE " + WHERE
                                  + " GROUP BY event ORDER BY n DESC, event ASC LIMIT 10000", values=values))

emit({
    "distinct_id": DISTINCT_ID,
    "total_events": sum(int(r["n"]) for r in counts),
    "by_event": {r["event"]: int(r["n"]) for r in counts},
    "events": [{"event": r["event"], "timestamp": r["timestamp"]} for r in events],
    "timezone": clock["timezone"],
    "week_start": clock["week_start"],
    "parameters": {"distinct_id": DISTINCT_ID, "days": DAYS, "limit": LIMIT},
})
