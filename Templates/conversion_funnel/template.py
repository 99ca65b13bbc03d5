"""conversion_funnel: PostHog's ordered funnel: how far each user gets, and how long each step takes
(Templates/SEMANTICS.md)."""
from posthog_driver import PostHogClient, emit, rows_of

STEPS = {{ steps }}
WINDOW_DAYS = {{ window_days }}
DAYS = {{ days }}
PAGE = 50000  # users per query (PostHog caps LIMIT at 50,000): more are read page by page
MASK_BITS = 10  # a step mask of up to 10 steps rides in the low bits of each packed event

# Per user who did step 1 in the window: their funnel events in the window, each packed as one
# integer, microseconds since the window's start * 1024 + the mask of the steps it matches (an event
# may match several steps when steps repeat an event name). The fold is PostHog's per-person funnel
# (funnel-udf/src/steps.rs), done below in Python; HogQL only selects and groups. The window is the
# last DAYS local days: from 00:00 of day T-DAYS+1, T being the local date of the last second before now.
SINCE = "toStartOfDay(now() - toIntervalSecond(1)) - toIntervalDay({back})"
mask = " + ".join("if(event = {step_%d}, %d, 0)" % (i, 1 << i) for i in range(len(STEPS)))
QUERY = (
    "SELECT distinct_id, groupArray(dateDiff('microsecond', " + SINCE + ", timestamp) * 1024 + (" + mask + ")) AS packed"
    " FROM events"
    " WHERE timestamp >= " + SINCE + " AND timestamp < now() AND event IN {steps} AND distinct_id > {after}"
    " GROUP BY distinct_id"
    " HAVING countIf(event = {step_0}) > 0"
    " ORDER BY distinct_id"
    " LIMIT {page}"
)
values = {"step_%d" % i: name for i, name in enumerate(STEPS)}
values.update({"steps": list(STEPS), "back": DAYS - 1, "after": "", "page": PAGE})
WINDOW_US = WINDOW_DAYS * 86400 * 1_000_000


def furthest_step(packed):
    """PostHog's ordered funnel for one person. Returns (furthest step reached, 0 when none; the step
    times of the first path that reached it). For each step, `reached[k]` holds the path that got
    there with the latest start: (start, step times, event ids)."""
    n = len(STEPS)
    events = sorted((value >> MASK_BITS, value & ((1 << MASK_BITS) - 1), index) for index, value in enumerate(packed))
    reached = [None] * (n + 1)
    best_step, best_times = 0, []
    i = 0
    while i < len(events):
        t = events[i][0]
        j = i
        while j < len(events) and events[j][0] == t:
            j += 1
        group = events[i:j]
        i = j
        reached[0] = (t, (), ())  # every instant may start a path
        masks = {m for _, m, _ in group}
        if len(masks) == 1:  # one event, or several of the same kind: in turn, each as a whole
            tries = [(sorted(k for k in range(1, n + 1) if m >> (k - 1) & 1), ident, False) for _, m, ident in group]
        else:  # different events at one instant: step by step, lowest first, one event one step
            tries = sorted(([k], ident, True) for _, m, ident in group for k in range(1, n + 1) if m >> (k - 1) & 1)
        for steps, ident, shared in tries:
            for k in reversed(steps):  # an event matching two steps tries the higher one first
                before = reached[k - 1]
                if before is None or t - before[0] > WINDOW_US:
                    continue
                if reached[k] is not None and reached[k][0] == before[0]:
                    continue  # this path got here already, with an earlier event
                if shared and ident in before[2]:
                    continue
                reached[k] = (before[0], before[1] + (t,), before[2] + (ident,))
                if k > best_step:
                    best_step, best_times = k, list(reached[k][1])
        if reached[n] is not None:
            break
    return best_step, best_times


def median(values):
    """ClickHouse's median (quantile 0.5): interpolated between the two middle values."""
    ordered = sorted(values)
    middle = (len(ordered) - 1) / 2
    low = int(middle)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (middle - low)


reached_count = [0] * len(STEPS)
durations = [[] for _ in STEPS]
with PostHogClient() as client:
    clock = client.get_time_settings()
    while True:
        page = rows_of(client.query(QUERY, values=values))
        for row in page:
            step, times = furthest_step([int(v) for v in row["packed"]])
            for k in range(step):
                reached_count[k] += 1
            for k in range(1, len(times)):
                seconds = (times[k] - times[k - 1]) / 1e6
                if seconds > 0:  # PostHog leaves zero-second steps out of the times
                    durations[k].append(seconds)
        if len(page) < PAGE:
            break
        values["after"] = page[-1]["distinct_id"]

steps = []
for k, name in enumerate(STEPS):
    start = 1.0 if reached_count[0] else 0.0
    steps.append({
        "event": name,
        "users": reached_count[k],
        "conversion_from_start": (reached_count[k] / reached_count[0] if reached_count[0] else 0.0) if k else start,
        "conversion_from_previous": (reached_count[k] / reached_count[k - 1] if reached_count[k - 1] else 0.0) if k else start,
        "average_conversion_time_seconds": sum(durations[k]) / len(durations[k]) if durations[k] else None,
        "median_conversion_time_seconds": median(durations[k]) if durations[k] else None,
    })
emit({
    "steps": steps,
    "timezone": clock["timezone"],
    "week_start": clock["week_start"],
    "parameters": {"steps": list(STEPS), "window_days": WINDOW_DAYS, "days": DAYS},
})
