"""identify_churn_risk: users who were active before and have gone quiet (Templates/SEMANTICS.md)."""
from posthog_driver import PostHogClient, emit, rows_of

INACTIVE_DAYS = {{ inactive_days }}
LOOKBACK_DAYS = {{ lookback_days }}
MIN_EVENTS = {{ min_events }}
LIMIT = {{ limit }}

if LOOKBACK_DAYS <= INACTIVE_DAYS:
    raise SystemExit("sandbox-runner-error: lookback_days must be greater than inactive_days.")

# One pass over the lookback window: per user, events before the quiet period and the last event.
# Every value is a placeholder bound by PostHog; nothing is pasted into the query text.
AT_RISK = """
    SELECT distinct_id,
           countIf(timestamp < now() - toIntervalDay({inactive_days})) AS events,
           max(timestamp) AS last_seen
    FROM events
    WHERE timestamp >= now() - toIntervalDay({lookback_days}) AND timestamp < now()
    GROUP BY distinct_id
    HAVING events >= {min_events} AND max(timestamp) < now() - toIntervalDay({inactive_days})
"""
values = {"inactive_days": INACTIVE_DAYS, "lookback_days": LOOKBACK_DAYS, "min_events": MIN_EVENTS, "limit": LIMIT}

with PostHogClient() as client:
    top = rows_of(client.query(
        "SELECT distinct_id, events, last_seen FROM (" + AT_RISK + ") ORDER BY events DESC, distinct_id ASC LIMIT {limit}",
        values=values))
    total = rows_of(client.query("SELECT count() AS n FROM (" + AT_RISK + ")", values=values))

emit({
    "at_risk_count": int(total[0]["n"]) if total else 0,
    "users": [{"distinct_id": r["distinct_id"], "events": int(r["events"]), "last_seen": r["last_seen"]} for r in top],
    "parameters": {"inactive_days": INACTIVE_DAYS, "lookback_days": LOOKBACK_DAYS, "min_events": MIN_EVENTS, "limit": LIMIT},
})
