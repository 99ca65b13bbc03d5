"""create_churn_cohort: the identify_churn_risk users saved as a static cohort (Templates/SEMANTICS.md)."""
from posthog_driver import PostHogClient, emit, rows_of

COHORT_NAME = {{ cohort_name }}
INACTIVE_DAYS = {{ inactive_days }}
LOOKBACK_DAYS = {{ lookback_days }}
MIN_EVENTS = {{ min_events }}

if LOOKBACK_DAYS <= INACTIVE_DAYS:
    raise SystemExit("sandbox-runner-error: lookback_days must be greater than inactive_days.")

AT_RISK = """
    SELECT distinct_id FROM events
    WHERE timestamp >= now() - toIntervalDay({lookback_days}) AND timestamp < now()
    GROUP BY distinct_id
    HAVING countIf(timestamp < now() - toIntervalDay({inactive_days})) >= {min_events}
       AND max(timestamp) < now() - toIntervalDay({inactive_days})
    ORDER BY distinct_id
    LIMIT 50000
"""
values = {"inactive_days": INACTIVE_DAYS, "lookback_days": LOOKBACK_DAYS, "min_events": MIN_EVENTS}

with PostHogClient() as client:
    ids = [r["distinct_id"] for r in rows_of(client.query(AT_RISK, values=values))]
    cohort = client.create_cohort(COHORT_NAME, ids, description="Users at risk of churning, saved by sandbox-runner "
                                  f"(inactive {INACTIVE_DAYS} days, active before within {LOOKBACK_DAYS} days).")

emit({
    "cohort_id": cohort["id"],
    "name": cohort.get("name", COHORT_NAME),
    "count": len(ids),
    "persons_added": cohort.get("persons_added", 0),
    "distinct_ids_sample": ids[:20],
    "parameters": {"cohort_name": COHORT_NAME, "inactive_days": INACTIVE_DAYS, "lookback_days": LOOKBACK_DAYS, "min_events": MIN_EVENTS},
})
