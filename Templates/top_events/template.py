"""top_events: the most frequent events of a window and their users (Templates/SEMANTICS.md)."""
from posthog_driver import PostHogClient, emit, rows_of

DAYS = {{ days }}
LIMIT = {{ limit }}

# One query: per event name, events and distinct users; `sum(events) OVER ()` is every event of the
# window, taken before LIMIT cuts the ranking.
QUERY = """
    SELECT event, events, users, sum(events) OVER () AS total_events
    FROM (
        SELECT event, count() AS events, count(DISTINCT distinct_id) AS users
        FROM events
        WHERE timestamp >= now() - toIntervalDay({days}) AND timestamp < now()
        GROUP BY event
    )
    ORDER BY events DESC, event ASC
    LIMIT {limit}
"""

with PostHogClient() as client:
    rows = rows_of(client.query(QUERY, values={"days": DAYS, "limit": LIMIT}))

emit({
    "total_events": int(rows[0]["total_events"]) if rows else 0,
    "events": [{"event": r["event"], "events": int(r["events"]), "users": int(r["users"])} for r in rows],
    "parameters": {"days": DAYS, "limit": LIMIT},
})
