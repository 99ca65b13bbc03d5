"""engagement_trend: DAU/WAU/MAU, stickiness and an activity series (Templates/SEMANTICS.md)."""
from posthog_driver import PostHogClient, emit, rows_of

DAYS = {{ days }}
INTERVAL = {{ interval }}

# The series: one row per day (or Monday-week) that had events. The bucket is chosen by a bound
# value ({interval}), so the query text never changes with the variables.
SERIES = """
    SELECT toString(if({interval} = 'week', toStartOfWeek(timestamp, 1), toDate(timestamp))) AS date,
           count(DISTINCT distinct_id) AS active_users,
           count() AS events
    FROM events
    WHERE timestamp >= now() - toIntervalDay({days}) AND timestamp < now()
    GROUP BY date
    ORDER BY date
    LIMIT 10000
"""
# The summary in one row: the (user, day) pairs of the window (their number / days is DAU, empty
# days counting 0), and the distinct users of the last 7 and 30 days.
SUMMARY = """
    SELECT
        (SELECT count() FROM (SELECT DISTINCT toDate(timestamp) AS day, distinct_id FROM events
                              WHERE timestamp >= now() - toIntervalDay({days}) AND timestamp < now())) AS user_days,
        (SELECT count(DISTINCT distinct_id) FROM events
         WHERE timestamp >= now() - toIntervalDay(7) AND timestamp < now()) AS wau,
        (SELECT count(DISTINCT distinct_id) FROM events
         WHERE timestamp >= now() - toIntervalDay(30) AND timestamp < now()) AS mau
"""
values = {"days": DAYS, "interval": INTERVAL}

with PostHogClient() as client:
    series = rows_of(client.query(SERIES, values=values))
    summary = rows_of(client.query(SUMMARY, values=values))[0]

dau = int(summary["user_days"]) / DAYS
mau = int(summary["mau"])
emit({
    "interval": INTERVAL,
    "series": [{"date": r["date"], "active_users": int(r["active_users"]), "events": int(r["events"])} for r in series],
    "dau": dau,
    "wau": int(summary["wau"]),
    "mau": mau,
    "stickiness": dau / mau if mau else 0.0,
    "parameters": {"days": DAYS, "interval": INTERVAL},
})
