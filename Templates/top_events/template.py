"""top_events: the most frequent events of a window and their users (Templates/SEMANTICS.md)."""
from posthog_driver import PostHogClient, emit, rows_of

DAYS = {{ days }}
LIMIT = {{ limit }}

# One query: per event name, events and distinct users; `sum(events) OVER ()` is every event of the
# window, taken before LIMIT cuts the ranking. The window is the last DAYS local days: from 00:00 of
# day T-DAYS+1, T being the local date of the last second before now (SEMANTICS.md, Conventions).
QUERY = """
    SELECT event, events, users, sum(events) OVER () AS total_events
    FROM (
        SELECT event, count() AS events, count(DISTINCT distinct_id) AS users
        FROM events
        WHERE timestamp >= toStartOfDay(now() - toIntervalSecond(1)) - toIntervalDay({back}) AND timestamp < now()
        GROUP BY event
    )
    ORDER BY events DESC, event ASC
    LIMIT {limit}
"""

with PostHogClient() as client:
    clock = client.get_time_settings()
    rows = rows_of(client.query(QUERY, values={"back": DAYS - 1, "limit": LIMIT}))

emit({
    "total_events": int(rows[0]["total_events"]) if rows else 0,
    "events": [{"event": r["event"], "events": int(r["events"]), "users": int(r["users"])} for r in rows],
    "timezone": clock["timezone"],
    "week_start": clock["week_start"],
    "parameters": {"days": DAYS, "limit": LIMIT},
})
