"""engagement_trend: DAU/WAU/MAU, stickiness and an activity series (Templates/SEMANTICS.md)."""
from posthog_driver import PostHogClient, emit, rows_of

DAYS = {{ days }}
INTERVAL = {{ interval }}
BUCKET = "toDate(timestamp)" if INTERVAL == "day" else "toStartOfWeek(timestamp, 1)"
values = {"days": DAYS}

with PostHogClient() as client:
    series = rows_of(client.query(
        "SELECT toString(" + BUCKET + ") AS date, count(DISTINCT distinct_id) AS active_users, count() AS events FROM events "
        "WHERE timestamp >= now() - toIntervalDay({days}) AND timestamp < now() GROUP BY date ORDER BY date LIMIT 10000",
        values=values))
    # One pass for the summary: daily actives summed over the window, and the 7- and 30-day actives.
    summary = rows_of(client.query("""
        SELECT
            (SELECT count() FROM (SELECT DISTINCT toDate(timestamp) AS d, distinct_id FROM events
                                  WHERE timestamp >= now() - toIntervalDay({days}) AND timestamp < now())) AS user_days,
            (SELECT count(DISTINCT distinct_id) FROM events WHERE timestamp >= now() - toIntervalDay(7) AND timestamp < now()) AS wau,
            (SELECT count(DISTINCT distinct_id) FROM events WHERE timestamp >= now() - toIntervalDay(30) AND timestamp < now()) AS mau
        """, values=values))[0]

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
