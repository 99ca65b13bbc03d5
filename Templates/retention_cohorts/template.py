"""retention_cohorts: weekly cohorts and who comes back in each later week (Templates/SEMANTICS.md)."""
from posthog_driver import PostHogClient, emit, rows_of

START_EVENT = {{ start_event }}
RETURN_EVENT = {{ return_event }}
WEEKS = {{ weeks }}

# Cohort week per user (first start_event), joined to the weeks in which they did return_event.
QUERY = """
    SELECT toString(c.cohort_week) AS cohort_week,
           dateDiff('day', c.cohort_week, r.week) / 7 AS offset,
           count(DISTINCT c.distinct_id) AS users
    FROM (SELECT distinct_id, toStartOfWeek(min(timestamp), 1) AS cohort_week FROM events
          WHERE event = {start_event} AND timestamp < now() GROUP BY distinct_id) AS c
    LEFT JOIN (SELECT DISTINCT distinct_id, toStartOfWeek(timestamp, 1) AS week FROM events
               WHERE event = {return_event} AND timestamp < now()) AS r ON r.distinct_id = c.distinct_id
    WHERE c.cohort_week >= toStartOfWeek(now() - toIntervalDay({days}), 1)
    GROUP BY cohort_week, offset
    ORDER BY cohort_week, offset
    LIMIT 50000
"""
SIZES = """
    SELECT toString(cohort_week) AS cohort_week, count() AS size, toString(now()) AS now_ts
    FROM (SELECT distinct_id, toStartOfWeek(min(timestamp), 1) AS cohort_week FROM events
          WHERE event = {start_event} AND timestamp < now() GROUP BY distinct_id)
    WHERE cohort_week >= toStartOfWeek(now() - toIntervalDay({days}), 1)
    GROUP BY cohort_week ORDER BY cohort_week LIMIT 1000
"""
values = {"start_event": START_EVENT, "return_event": RETURN_EVENT, "days": 7 * WEEKS}

with PostHogClient() as client:
    sizes = rows_of(client.query(SIZES, values=values))
    cells = rows_of(client.query(QUERY, values=values)) if sizes else []

import datetime as _dt

retained_by = {}
for c in cells:
    if c["offset"] is not None:
        retained_by[(c["cohort_week"][:10], int(c["offset"]))] = int(c["users"])
cohorts = []
for s in sizes:
    week = _dt.date.fromisoformat(s["cohort_week"][:10])
    now = _dt.datetime.fromisoformat(s["now_ts"].replace("Z", "+00:00").replace(" ", "T"))
    if now.tzinfo is not None:
        now = now.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    # Offsets whose week has started before now.
    offsets = [k for k in range(WEEKS) if _dt.datetime.combine(week + _dt.timedelta(days=7 * k), _dt.time()) < now]
    cohorts.append({"cohort_week": week.isoformat(), "size": int(s["size"]),
                    "retained": [retained_by.get((week.isoformat(), k), 0) for k in offsets]})

emit({"cohorts": cohorts, "parameters": {"start_event": START_EVENT, "return_event": RETURN_EVENT, "weeks": WEEKS}})
