"""engagement_trend: DAU, WAU, MAU and DAU/MAU per day, an activity series, and PostHog's Stickiness
(Templates/SEMANTICS.md)."""
import datetime

from posthog_driver import PostHogClient, emit, rows_of

DAYS = {{ days }}
INTERVAL = {{ interval }}

# The window is the last DAYS local days: from 00:00 of day T-DAYS+1, T being the local date of the
# last second before now (SEMANTICS.md, Conventions). HogQL answers in the project's time zone.
SINCE = "toStartOfDay(now() - toIntervalSecond(1)) - toIntervalDay({back})"

# The series: one row per day (or week, starting on the project's week start) that had events in the
# window. The bucket is chosen by a bound value ({interval}), so the query text never changes.
SERIES = """
    SELECT toString(if({interval} = 'week', toStartOfWeek(timestamp, {week_mode}), toDate(timestamp))) AS date,
           count(DISTINCT distinct_id) AS active_users,
           count() AS events
    FROM events
    WHERE timestamp >= """ + SINCE + """ AND timestamp < now()
    GROUP BY date
    ORDER BY date
    LIMIT 10000
"""
# DAU, WAU and MAU of each day d of the window, as PostHog's trends compute WAU/MAU: the users active
# on d, on d-6..d, on d-29..d (the (user, day) pairs of the window and the 29 days before it, crossed
# with the window's days). Days whose 30 days had nobody are absent: all three are 0 there.
DAILY = """
    WITH active AS (
        SELECT DISTINCT toDate(timestamp) AS active_day, distinct_id
        FROM events
        WHERE timestamp >= toStartOfDay(now() - toIntervalSecond(1)) - toIntervalDay({lookback}) AND timestamp < now()
    )
    SELECT toString(d.day) AS day,
           toString(toDate(now() - toIntervalSecond(1))) AS today,
           uniqExactIf(a.distinct_id, a.active_day = d.day) AS dau,
           uniqExactIf(a.distinct_id, a.active_day > d.day - 7) AS wau,
           count(DISTINCT a.distinct_id) AS mau
    FROM (SELECT toDate(now() - toIntervalSecond(1)) - shift AS day FROM (SELECT arrayJoin({offsets}) AS shift)) AS d
    CROSS JOIN active AS a
    WHERE a.active_day <= d.day AND a.active_day > d.day - 30
    GROUP BY d.day
    ORDER BY d.day
    LIMIT 10000
"""
# PostHog's Stickiness: how many users were active on exactly k days of the window.
STICKINESS = """
    SELECT active_days, count() AS users
    FROM (
        SELECT distinct_id, count(DISTINCT toDate(timestamp)) AS active_days
        FROM events
        WHERE timestamp >= """ + SINCE + """ AND timestamp < now()
        GROUP BY distinct_id
    )
    GROUP BY active_days
    ORDER BY active_days
    LIMIT 10000
"""

with PostHogClient() as client:
    clock = client.get_time_settings()
    values = {"back": DAYS - 1, "lookback": DAYS + 28, "offsets": list(range(DAYS)), "interval": INTERVAL,
              "week_mode": clock["week_mode"]}
    series = {r["date"][:10]: r for r in rows_of(client.query(SERIES, values=values))}
    daily = rows_of(client.query(DAILY, values=values))
    sticky = {int(r["active_days"]): int(r["users"]) for r in rows_of(client.query(STICKINESS, values=values))}
    if daily:
        today = daily[0]["today"]
    else:  # nobody in the window or the 29 days before it: only the dates are needed
        today = rows_of(client.query("SELECT toString(toDate(now() - toIntervalSecond(1))) AS today"))[0]["today"]

last = datetime.date.fromisoformat(today[:10])
window = [last - datetime.timedelta(days=k) for k in range(DAYS - 1, -1, -1)]
if INTERVAL == "week":
    monday_first = clock["week_start"] == "monday"

    def week_of(day):
        return day - datetime.timedelta(days=day.weekday() if monday_first else (day.weekday() + 1) % 7)

    buckets = sorted({week_of(day) for day in window})
else:
    buckets = window
by_day = {r["day"][:10]: r for r in daily}
dau = [int(by_day.get(d.isoformat(), {}).get("dau", 0)) for d in window]
wau = [int(by_day.get(d.isoformat(), {}).get("wau", 0)) for d in window]
mau = [int(by_day.get(d.isoformat(), {}).get("mau", 0)) for d in window]
emit({
    "interval": INTERVAL,
    "series": [{"date": b.isoformat(), "active_users": int(series.get(b.isoformat(), {}).get("active_users", 0)),
                "events": int(series.get(b.isoformat(), {}).get("events", 0))} for b in buckets],
    "dau": sum(dau) / DAYS,
    "wau": sum(wau) / DAYS,
    "mau": sum(mau) / DAYS,
    "dau_mau": sum(a / m if m else 0.0 for a, m in zip(dau, mau)) / DAYS,
    "stickiness": [{"days_active": k, "users": sticky.get(k, 0)} for k in range(1, DAYS + 1)],
    "timezone": clock["timezone"],
    "week_start": clock["week_start"],
    "parameters": {"days": DAYS, "interval": INTERVAL},
})
