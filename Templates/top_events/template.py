"""top_events: the most frequent events of a window and their users (Templates/SEMANTICS.md)."""
from posthog_driver import PostHogClient, emit, rows_of

DAYS = {{ days }}
LIMIT = {{ limit }}
WINDOW = "timestamp >= now() - toIntervalDay({days}) AND timestamp < now()"
values = {"days": DAYS, "limit": LIMIT}

with PostHogClient() as client:
    ranked = rows_of(client.query(
        "SELECT event, count() AS events, count(DISTINCT distinct_id) AS users FROM events WHERE " + WINDOW
        + " GROUP BY event ORDER BY events DESC, event ASC LIMIT {limit}", values=values))
    total = rows_of(client.query("SELECT count() AS n FROM events WHERE " + WINDOW, values=values))

emit({
    "total_events": int(total[0]["n"]) if total else 0,
    "events": [{"event": r["event"], "events": int(r["events"]), "users": int(r["users"])} for r in ranked],
    "parameters": {"days": DAYS, "limit": LIMIT},
})
