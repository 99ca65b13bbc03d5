"""retention_cohorts: weekly cohorts and who comes back in each later week (Templates/SEMANTICS.md)."""
from posthog_driver import PostHogClient, emit, rows_of

START_EVENT = {{ start_event }}
RETURN_EVENT = {{ return_event }}
WEEKS = {{ weeks }}
WEEK_SECONDS = 7 * 86400

# Each user's cohort: the Monday-week of their first start_event, kept if it is one of the last
# `weeks` weeks. (Used twice below; the text is fixed, the values are placeholders.)
COHORT = """
    SELECT distinct_id, toStartOfWeek(min(timestamp), 1) AS cohort_week
    FROM events
    WHERE event = {start_event} AND timestamp < now()
    GROUP BY distinct_id
    HAVING cohort_week >= toStartOfWeek(now() - toIntervalDay({cutoff_days}), 1)
"""
# One query for the whole matrix: offset -1 rows are the cohort's members (its size); offset k >= 0
# rows are the members with a return_event in the week cohort_week + k. (user, week) pairs are
# distinct, so count() is distinct users. age_seconds tells which offsets' weeks have started.
QUERY = """
    SELECT toString(week0) AS cohort_week, offset, count() AS users,
           dateDiff('second', week0, now()) AS age_seconds
    FROM (
        SELECT cohort_week AS week0, -1 AS offset, distinct_id FROM (""" + COHORT + """)
        UNION ALL
        SELECT c.cohort_week AS week0, intDiv(dateDiff('day', c.cohort_week, r.week), 7) AS offset,
               c.distinct_id AS distinct_id
        FROM (""" + COHORT + """) AS c
        INNER JOIN (
            SELECT DISTINCT distinct_id, toStartOfWeek(timestamp, 1) AS week
            FROM events
            WHERE event = {return_event}
              AND timestamp >= toStartOfWeek(now() - toIntervalDay({cutoff_days}), 1) AND timestamp < now()
        ) AS r ON r.distinct_id = c.distinct_id
        WHERE r.week >= c.cohort_week AND r.week < c.cohort_week + toIntervalDay({span_days})
    )
    GROUP BY week0, offset
    ORDER BY week0, offset
    LIMIT 50000
"""
values = {"start_event": START_EVENT, "return_event": RETURN_EVENT, "cutoff_days": 7 * WEEKS, "span_days": 7 * WEEKS}

with PostHogClient() as client:
    cells = rows_of(client.query(QUERY, values=values))

sizes, retained, ages = {}, {}, {}
for c in cells:
    week, offset, users = c["cohort_week"][:10], int(c["offset"]), int(c["users"])
    ages[week] = int(c["age_seconds"])
    if offset < 0:
        sizes[week] = users
    else:
        retained[(week, offset)] = users

cohorts = []
for week in sorted(sizes):
    started = min(WEEKS, -(-ages[week] // WEEK_SECONDS))  # offsets k whose week starts before now
    cohorts.append({"cohort_week": week, "size": sizes[week],
                    "retained": [retained.get((week, k), 0) for k in range(started)]})

emit({
    "cohorts": cohorts,
    "parameters": {"start_event": START_EVENT, "return_event": RETURN_EVENT, "weeks": WEEKS},
})
