"""create_churn_cohort: the identify_churn_risk users saved as a static cohort (Templates/SEMANTICS.md).

Writes to PostHog: one new static cohort per run."""
from posthog_driver import PostHogClient, emit, rows_of

COHORT_NAME = {{ cohort_name }}
INACTIVE_DAYS = {{ inactive_days }}
LOOKBACK_DAYS = {{ lookback_days }}
MIN_EVENTS = {{ min_events }}
PAGE = 50000  # PostHog's cap on a query's LIMIT: more at-risk users are read page by page
SAMPLE = 20

if LOOKBACK_DAYS <= INACTIVE_DAYS:
    raise SystemExit("sandbox-runner-error: lookback_days must be greater than inactive_days.")

# The identify_churn_risk set, in distinct_id order, paged by keyset (distinct_id > {after}).
AT_RISK = """
    SELECT distinct_id FROM events
    WHERE timestamp >= now() - toIntervalDay({lookback_days}) AND timestamp < now() AND distinct_id > {after}
    GROUP BY distinct_id
    HAVING countIf(timestamp < now() - toIntervalDay({inactive_days})) >= {min_events}
       AND max(timestamp) < now() - toIntervalDay({inactive_days})
    ORDER BY distinct_id
    LIMIT {page}
"""
values = {"inactive_days": INACTIVE_DAYS, "lookback_days": LOOKBACK_DAYS, "min_events": MIN_EVENTS, "page": PAGE, "after": ""}

with PostHogClient() as client:
    ids = []
    while True:
        page = [r["distinct_id"] for r in rows_of(client.query(AT_RISK, values=values))]
        ids.extend(page)
        if len(page) < PAGE:
            break
        values["after"] = page[-1]
    # Resolves the distinct ids to persons, creates the static cohort, adds them in batches.
    cohort = client.create_cohort(COHORT_NAME, ids, description=(
        "Users at risk of churning, saved by sandbox-runner create_churn_cohort: at least %d events between %d and %d "
        "days ago, none in the last %d days." % (MIN_EVENTS, LOOKBACK_DAYS, INACTIVE_DAYS, INACTIVE_DAYS)))

emit({
    "cohort_id": int(cohort["id"]),
    "name": cohort.get("name") or COHORT_NAME,
    "count": len(ids),
    "persons_added": int(cohort.get("persons_added", 0)),
    "unresolved": int(cohort.get("unresolved", 0)),
    "distinct_ids_sample": ids[:SAMPLE],
    "parameters": {"cohort_name": COHORT_NAME, "inactive_days": INACTIVE_DAYS, "lookback_days": LOOKBACK_DAYS, "min_events": MIN_EVENTS},
})
