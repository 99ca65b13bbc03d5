"""identify_churn_risk: lapsed users, apart from new signups who bounced (Templates/SEMANTICS.md)."""
from posthog_driver import PostHogClient, emit, rows_of

INACTIVE_DAYS = {{ inactive_days }}
LOOKBACK_DAYS = {{ lookback_days }}
MIN_ACTIVE_DAYS = {{ min_active_days }}
LIMIT = {{ limit }}

if LOOKBACK_DAYS <= INACTIVE_DAYS:
    raise SystemExit("sandbox-runner-error: lookback_days must be greater than inactive_days.")

# Windows start at local midnights: "the last N days" begin at 00:00 of day T-N+1, T being the local
# date of the last second before now (SEMANTICS.md, Conventions). Q starts the quiet period, L the
# lookback window.
L = "toStartOfDay(now() - toIntervalSecond(1)) - toIntervalDay({lookback_back})"
Q = "toStartOfDay(now() - toIntervalSecond(1)) - toIntervalDay({inactive_back})"

# One query. Inside: every user quiet since Q who was active between L and Q, with their active
# local days and events there, and their first and last event ever. Outside: both counts over all of
# them (window sums, before LIMIT), then the lapsed users first, by active days and events.
QUERY = """
    SELECT distinct_id, active_days, events, first_seen, last_seen,
           sum(if(active_days >= {min_active_days}, 1, 0)) OVER () AS at_risk_count,
           sum(if(active_days < {min_active_days} AND first_seen >= """ + L + """, 1, 0)) OVER () AS bounced_count
    FROM (
        SELECT distinct_id,
               uniqExactIf(toDate(timestamp), timestamp >= """ + L + """ AND timestamp < """ + Q + """) AS active_days,
               countIf(timestamp >= """ + L + """ AND timestamp < """ + Q + """) AS events,
               min(timestamp) AS first_seen,
               max(timestamp) AS last_seen
        FROM events
        WHERE timestamp < now()
        GROUP BY distinct_id
        HAVING events > 0 AND last_seen < """ + Q + """
    )
    ORDER BY if(active_days >= {min_active_days}, 0, 1), active_days DESC, events DESC, distinct_id ASC
    LIMIT {limit}
"""
values = {"lookback_back": LOOKBACK_DAYS - 1, "inactive_back": INACTIVE_DAYS - 1,
          "min_active_days": MIN_ACTIVE_DAYS, "limit": LIMIT}

with PostHogClient() as client:
    clock = client.get_time_settings()
    rows = rows_of(client.query(QUERY, values=values))

emit({
    "at_risk_count": int(rows[0]["at_risk_count"]) if rows else 0,
    "bounced_count": int(rows[0]["bounced_count"]) if rows else 0,
    "users": [{"distinct_id": r["distinct_id"], "active_days": int(r["active_days"]), "events": int(r["events"]),
               "first_seen": r["first_seen"], "last_seen": r["last_seen"]}
              for r in rows if int(r["active_days"]) >= MIN_ACTIVE_DAYS],
    "timezone": clock["timezone"],
    "week_start": clock["week_start"],
    "parameters": {"inactive_days": INACTIVE_DAYS, "lookback_days": LOOKBACK_DAYS, "min_active_days": MIN_ACTIVE_DAYS,
                   "limit": LIMIT},
})
