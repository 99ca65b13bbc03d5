"""conversion_funnel: users reaching each step in order within a window (Templates/SEMANTICS.md)."""
from posthog_driver import PostHogClient, emit, rows_of

STEPS = {{ steps }}
WINDOW_DAYS = {{ window_days }}
DAYS = {{ days }}

# One condition per step, each naming its own placeholder; the event names travel as values.
conditions = ", ".join("event = {step_%d}" % i for i in range(len(STEPS)))
values = {"step_%d" % i: name for i, name in enumerate(STEPS)}
values.update({"steps": list(STEPS), "days": DAYS, "window": WINDOW_DAYS * 86400})
QUERY = (
    "SELECT level, count() AS users FROM ("
    " SELECT distinct_id, windowFunnel({window})(toDateTime(timestamp), " + conditions + ") AS level"
    " FROM events WHERE timestamp >= now() - toIntervalDay({days}) AND timestamp < now() AND event IN {steps}"
    " GROUP BY distinct_id"
    ") GROUP BY level ORDER BY level LIMIT 100"
)

with PostHogClient() as client:
    levels = {int(r["level"]): int(r["users"]) for r in rows_of(client.query(QUERY, values=values))}

reached = [sum(n for level, n in levels.items() if level >= k + 1) for k in range(len(STEPS))]
steps = []
for k, name in enumerate(STEPS):
    first = 1.0 if reached[0] else 0.0
    steps.append({
        "event": name,
        "users": reached[k],
        "conversion_from_start": (reached[k] / reached[0] if reached[0] else 0.0) if k else first,
        "conversion_from_previous": (reached[k] / reached[k - 1] if reached[k - 1] else 0.0) if k else first,
    })
emit({
    "steps": steps,
    "parameters": {"steps": list(STEPS), "window_days": WINDOW_DAYS, "days": DAYS},
})
