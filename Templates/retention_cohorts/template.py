"""retention_cohorts: PostHog's weekly Retention: cohorts and who comes back in each later week
(Templates/SEMANTICS.md)."""
import datetime

from posthog_driver import PostHogClient, emit, rows_of

START_EVENT = {{ start_event }}
RETURN_EVENT = {{ return_event }}
WEEKS = {{ weeks }}
RECURRING = {{ recurring }}

# The cohort weeks: the WEEKS weeks ending with the current one (the week holding T, the local date of
# the last second before now), weeks starting on the project's week start ({week_mode}).
FIRST_WEEK = "(toStartOfWeek(toDate(now() - toIntervalSecond(1)), {week_mode}) - toIntervalDay({back_days}))"
# A user's cohort: the week of their first start_event ever (PostHog's first-time retention), or with
# RECURRING every cohort week in which they did start_event. The query text is chosen, never built
# from values.
FIRST_TIME = """
    SELECT distinct_id, toStartOfWeek(min(timestamp), {week_mode}) AS cohort_week
    FROM events
    WHERE event = {start_event} AND timestamp < now()
    GROUP BY distinct_id
    HAVING cohort_week >= """ + FIRST_WEEK
EVERY_TIME = """
    SELECT DISTINCT distinct_id, toStartOfWeek(timestamp, {week_mode}) AS cohort_week
    FROM events
    WHERE event = {start_event} AND toDate(timestamp) >= """ + FIRST_WEEK + """ AND timestamp < now()"""
COHORT = EVERY_TIME if RECURRING else FIRST_TIME
# One query for the whole matrix: period -1 rows are each cohort's members (its size, period 0);
# period k >= 1 rows are the members with a return_event in the k-th week after their cohort week
# ((user, week) pairs are distinct, so count() counts users); the period -2 row carries the first
# cohort week even when no cohort has anyone.
QUERY = """
    SELECT toString(week0) AS cohort_week, period, count() AS users
    FROM (
        SELECT cohort_week AS week0, -1 AS period, distinct_id FROM (""" + COHORT + """)
        UNION ALL
        SELECT c.cohort_week AS week0, intDiv(dateDiff('day', c.cohort_week, r.week), 7) AS period,
               c.distinct_id AS distinct_id
        FROM (""" + COHORT + """) AS c
        INNER JOIN (
            SELECT DISTINCT distinct_id, toStartOfWeek(timestamp, {week_mode}) AS week
            FROM events
            WHERE event = {return_event} AND toDate(timestamp) >= """ + FIRST_WEEK + """ AND timestamp < now()
        ) AS r ON r.distinct_id = c.distinct_id
        WHERE r.week > c.cohort_week
        UNION ALL
        SELECT """ + FIRST_WEEK + """ AS week0, -2 AS period, '' AS distinct_id
    )
    GROUP BY week0, period
    ORDER BY week0, period
    LIMIT 50000
"""

with PostHogClient() as client:
    clock = client.get_time_settings()
    values = {"start_event": START_EVENT, "return_event": RETURN_EVENT, "week_mode": clock["week_mode"],
              "back_days": 7 * (WEEKS - 1)}
    cells = rows_of(client.query(QUERY, values=values))

first = min(datetime.date.fromisoformat(c["cohort_week"][:10]) for c in cells if int(c["period"]) == -2)
counts = {(c["cohort_week"][:10], int(c["period"])): int(c["users"]) for c in cells}
cohorts = []
for i in range(WEEKS):
    week = (first + datetime.timedelta(days=7 * i)).isoformat()
    size = counts.get((week, -1), 0)
    # period 0 is the cohort itself; the current week (the last cohort) has only period 0
    cohorts.append({"cohort_week": week, "size": size,
                    "retained": [size] + [counts.get((week, k), 0) for k in range(1, WEEKS - i)]})

emit({
    "cohorts": cohorts,
    "timezone": clock["timezone"],
    "week_start": clock["week_start"],
    "parameters": {"start_event": START_EVENT, "return_event": RETURN_EVENT, "weeks": WEEKS, "recurring": RECURRING},
})
