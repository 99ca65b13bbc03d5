"""find_power_users: the heaviest users of a window (Templates/SEMANTICS.md)."""
from posthog_driver import PostHogClient, emit, rows_of

DAYS = {{ days }}
MIN_EVENTS = {{ min_events }}
LIMIT = {{ limit }}

# One query: events and distinct active dates per user; `count() OVER ()` counts every power user
# before LIMIT cuts the list.
QUERY = """
    SELECT distinct_id, events, active_days, count() OVER () AS power_user_count
    FROM (
        SELECT distinct_id, count() AS events, count(DISTINCT toDate(timestamp)) AS active_days
        FROM events
        WHERE timestamp >= toStartOfDay(now() - toIntervalSecond(1)) - toIntervalDay({back}) AND timestamp < now()
        GROUP BY distinct_id
        HAVING events >= {min_events}
    )
    ORDER BY events DESC, distinct_id ASC
    LIMIT {limit}
"""

with PostHogClient() as client:
    clock = client.get_time_settings()
    rows = rows_of(client.query(QUERY, values={"back": DAYS - 1, "min_events": MIN_EVENTS, "limit": LIMIT}))

emit({
    "power_user_count": int(rows[0]["power_user_count"]) if rows else 0,
    "users": [{"distinct_id": r["distinct_id"], "events": int(r["events"]), "active_days": int(r["active_days"])} for r in rows],
    "timezone": clock["timezone"],
    "week_start": clock["week_start"],
    "parameters": {"days": DAYS, "min_events": MIN_EVENTS, "limit": LIMIT},
})
