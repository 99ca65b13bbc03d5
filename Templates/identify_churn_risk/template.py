"""identify_churn_risk: users who were active before and have gone quiet (Templates/SEMANTICS.md)."""
from posthog_driver import PostHogClient, emit, rows_of

INACTIVE_DAYS = {{ inactive_days }}
LOOKBACK_DAYS = {{ lookback_days }}
MIN_EVENTS = {{ min_events }}
LIMIT = {{ limit }}

if LOOKBACK_DAYS <= INACTIVE_DAYS:
    raise SystemExit("sandbox-runner-error: lookback_days must be greater than inactive_days.")

# One query, one pass over the lookback window: per user, the events before the quiet period and
# the last event; `count() OVER ()` counts every at-risk user before LIMIT cuts the list.
# Every value is a placeholder bound by PostHog; nothing is pasted into the query text.
QUERY = """
    SELECT distinct_id, events, last_seen, count() OVER () AS at_risk_count
    FROM (
        SELECT distinct_id,
               countIf(timestamp < now() - toIntervalDay({inactive_days})) AS events,
               max(timestamp) AS last_seen
        FROM events
        WHERE timestamp >= now() - toIntervalDay({lookback_days}) AND timestamp < now()
        GROUP BY distinct_id
        HAVING events >= {min_events} AND last_seen < now() - toIntervalDay({inactive_days})
    )
    ORDER BY events DESC, distinct_id ASC
    LIMIT {limit}
"""

with PostHogClient() as client:
    rows = rows_of(client.query(QUERY, values={"inactive_days": INACTIVE_DAYS, "lookback_days": LOOKBACK_DAYS,
                                               "min_events": MIN_EVENTS, "limit": LIMIT}))

emit({
    "at_risk_count": int(rows[0]["at_risk_count"]) if rows else 0,
    "users": [{"distinct_id": r["distinct_id"], "events": int(r["events"]), "last_seen": r["last_seen"]} for r in rows],
    "parameters": {"inactive_days": INACTIVE_DAYS, "lookback_days": LOOKBACK_DAYS, "min_events": MIN_EVENTS, "limit": LIMIT},
})
