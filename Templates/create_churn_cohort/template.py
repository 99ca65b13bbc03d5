"""create_churn_cohort: the identify_churn_risk lapsed users saved as a static cohort (Templates/SEMANTICS.md).

Writes to PostHog: one new static cohort per run."""
from posthog_driver import PostHogClient, emit, rows_of

COHORT_NAME = {{ cohort_name }}
INACTIVE_DAYS = {{ inactive_days }}
LOOKBACK_DAYS = {{ lookback_days }}
MIN_ACTIVE_DAYS = {{ min_active_days }}
PAGE = 50000  # PostHog's cap on a query's LIMIT: more lapsed users are read page by page
SAMPLE = 20

if LOOKBACK_DAYS <= INACTIVE_DAYS:
    raise SystemExit("sandbox-runner-error: lookback_days must be greater than inactive_days.")

# The same definition as identify_churn_risk, word for word: the quiet users of the lookback window
# (from L) who have had no event since Q, with their active local days before Q and first event ever.
L = "toStartOfDay(now() - toIntervalSecond(1)) - toIntervalDay({lookback_back})"
Q = "toStartOfDay(now() - toIntervalSecond(1)) - toIntervalDay({inactive_back})"
QUIET = """
    SELECT distinct_id,
           uniqExactIf(toDate(timestamp), timestamp >= """ + L + """ AND timestamp < """ + Q + """) AS active_days,
           countIf(timestamp >= """ + L + """ AND timestamp < """ + Q + """) AS events,
           min(timestamp) AS first_seen,
           max(timestamp) AS last_seen
    FROM events
    WHERE timestamp < now()
    GROUP BY distinct_id
    HAVING events > 0 AND last_seen < """ + Q
# Both counts, then the lapsed users in distinct_id order, paged by keyset (distinct_id > {after}).
COUNTS = """
    SELECT countIf(active_days >= {min_active_days}) AS at_risk_count,
           countIf(active_days < {min_active_days} AND first_seen >= """ + L + """) AS bounced_count
    FROM (""" + QUIET + """)
"""
LAPSED = """
    SELECT distinct_id FROM (""" + QUIET + """)
    WHERE active_days >= {min_active_days} AND distinct_id > {after}
    ORDER BY distinct_id
    LIMIT {page}
"""
values = {"lookback_back": LOOKBACK_DAYS - 1, "inactive_back": INACTIVE_DAYS - 1, "min_active_days": MIN_ACTIVE_DAYS,
          "page": PAGE, "after": ""}

with PostHogClient() as client:
    clock = client.get_time_settings()
    counts = rows_of(client.query(COUNTS, values=values))[0]
    ids = []
    while True:
        page = [r["distinct_id"] for r in rows_of(client.query(LAPSED, values=values))]
        ids.extend(page)
        if len(page) < PAGE:
            break
        values["after"] = page[-1]
    # Resolves the distinct ids to persons, creates the static cohort, adds them 1,000 at a time.
    cohort = client.create_cohort(COHORT_NAME, ids, description=(
        "Lapsed users saved by sandbox-runner create_churn_cohort: active on at least %d days in the last %d days "
        "before going quiet, no event in the last %d days (days in %s)." % (
            MIN_ACTIVE_DAYS, LOOKBACK_DAYS, INACTIVE_DAYS, clock["timezone"])))

emit({
    "cohort_id": int(cohort["id"]),
    "name": cohort.get("name") or COHORT_NAME,
    "count": len(ids),
    "bounced_count": int(counts["bounced_count"]),
    "persons_added": int(cohort.get("persons_added", 0)),
    "unresolved": int(cohort.get("unresolved", 0)),
    "distinct_ids_sample": ids[:SAMPLE],
    "timezone": clock["timezone"],
    "week_start": clock["week_start"],
    "parameters": {"cohort_name": COHORT_NAME, "inactive_days": INACTIVE_DAYS, "lookback_days": LOOKBACK_DAYS,
                   "min_active_days": MIN_ACTIVE_DAYS},
})
