"""find_power_users: the heaviest users of a window (Templates/SEMANTICS.md)."""
from posthog_driver import PostHogClient, emit, rows_of

DAYS = {{ days }}
MIN_EVENTS = {{ min_events }}
LIMIT = {{ limit }}
PER_USER = """
    SELECT distinct_id, count() AS events, count(DISTINCT toDate(timestamp)) AS active_days
    FROM events
    WHERE timestamp >= now() - toIntervalDay({days}) AND timestamp < now()
    GROUP BY distinct_id
    HAVING events >= {min_events}
"""
values = {"days": DAYS, "min_events": MIN_EVENTS, "limit": LIMIT}

with PostHogClient() as client:
    top = rows_of(client.query("SELECT distinct_id, events, active_days FROM (" + PER_USER
                               + ") ORDER BY events DESC, distinct_id ASC LIMIT {limit}", values=values))
    total = rows_of(client.query("SELECT count() AS n FROM (" + PER_USER + ")", values=values))

emit({
    "power_user_count": int(total[0]["n"]) if total else 0,
    "users": [{"distinct_id": r["distinct_id"], "events": int(r["events"]), "active_days": int(r["active_days"])} for r in top],
    "parameters": {"days": DAYS, "min_events": MIN_EVENTS, "limit": LIMIT},
})
