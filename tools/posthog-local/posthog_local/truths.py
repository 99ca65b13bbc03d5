"""True answers of the 14 templates (Templates/SEMANTICS.md), computed in plain Python.

Written from SEMANTICS.md, not from the templates' HogQL: no SQL is involved (the rows come from the
generator, or are read back from Parquet as they are), and the statistics come from mpmath, not from
the closed forms the templates carry. Each function takes the Dataset, the template's parameters and
the project (time zone, week start) and returns the answer with the keys SEMANTICS.md names.
Conventions (shared with the server's HogQL results):
- timestamps are the project's local time with its offset (`…Z` in UTC), microseconds; dates `YYYY-MM-DD`;
- rates and ratios are unrounded floats (compare with a tolerance);
- a missing property value is `None` (JSON null) and sorts after strings on ties;
- rankings break ties by the name (distinct_id, event, value) ascending.
"""

from __future__ import annotations

import bisect
import datetime as dt
import inspect
import json
from collections import Counter, defaultdict
from itertools import groupby
from typing import Any, Callable
from zoneinfo import ZoneInfo

from .dataset import Dataset, EventRow
from .flags import evaluate, variants_of
from .timeutil import DAY_MS, iso_ms, parse_iso, to_ms

DEFAULT_FUNNEL = ["signed_up", "onboarding_completed", "first_report_created",
                  "subscription_started"]
WEEK_START_NAMES = {0: "sunday", 1: "monday"}
MULTIPLE_VARIANTS = "$multiple"
NO_WINDOW_DAYS = 3 * 365  # PostHog's experiment funnels without a conversion window: 3 years
MIN_EXPOSURES = 50  # posthog/hogql_queries/experiments/utils.py validate_variant_result
MIN_CONVERSIONS = 5
_QUARTER_HOUR_MS = 15 * 60 * 1000
_EPOCH_DATE = dt.date(1970, 1, 1)


# --- the project's clock ---------------------------------------------------------------------------

class Project:
    """Local days, windows and weeks of one project (SEMANTICS.md, Conventions)."""

    def __init__(self, ds: Dataset, timezone: str = "UTC", week_start_day: int | None = 1) -> None:
        self.ds = ds
        self.timezone = timezone
        self.zone = ZoneInfo(timezone)
        self.week_start_day = 1 if week_start_day == 1 else 0  # PostHog: null means Sunday
        self.now = ds.reference_ms
        self._offsets: dict[int, int] = {}
        self.today = self.day(self.now - 1000)  # the local date of the last second before now

    @property
    def labels(self) -> dict[str, str]:
        return {"timezone": self.timezone, "week_start": WEEK_START_NAMES[self.week_start_day]}

    def offset_ms(self, ms: int) -> int:
        bucket = ms // _QUARTER_HOUR_MS  # zones change offsets on quarter hours at the finest
        cached = self._offsets.get(bucket)
        if cached is None:
            moment = dt.datetime.fromtimestamp(bucket * _QUARTER_HOUR_MS / 1000, dt.timezone.utc)
            offset = self.zone.utcoffset(moment)
            cached = int(offset.total_seconds() * 1000) if offset is not None else 0
            self._offsets[bucket] = cached
        return cached

    def day(self, ms: int) -> int:
        """The local date of an instant, as days since 1970-01-01."""
        return (ms + self.offset_ms(ms)) // DAY_MS

    def day_start(self, day: int) -> int:
        """The instant of 00:00 local time on a local day."""
        date = _EPOCH_DATE + dt.timedelta(days=day)
        midnight = dt.datetime(date.year, date.month, date.day, tzinfo=self.zone)
        return int(midnight.timestamp() * 1000)

    def window_start(self, days: int) -> int:
        """W_N: the first instant of the last N days (T-N+1 ... T)."""
        return self.day_start(self.today - days + 1)

    def week(self, day: int) -> int:
        """The first local day of the week holding `day` (weeks start on the project's day)."""
        monday_index = (day + 3) % 7  # 1970-01-01 was a Thursday
        back = monday_index if self.week_start_day == 1 else (monday_index + 1) % 7
        return day - back

    @staticmethod
    def date(day: int) -> str:
        return (_EPOCH_DATE + dt.timedelta(days=day)).isoformat()

    def timestamp(self, ms: int) -> str:
        """An instant as PostHog returns it for this project: local time with the offset."""
        if self.timezone == "UTC":
            return iso_ms(ms)
        moment = dt.datetime.fromtimestamp(ms // 1000, dt.timezone.utc).replace(microsecond=(ms % 1000) * 1000)
        return moment.astimezone(self.zone).isoformat(timespec="microseconds")


# --- helpers -----------------------------------------------------------------------------------------

def _between(ds: Dataset, lo: int, hi: int) -> list[EventRow]:
    """Events with lo <= ts < hi (the events are sorted by time)."""
    stamps = ds.__dict__.get("_stamps")
    if stamps is None or len(stamps) != len(ds.events):
        stamps = [e.ts for e in ds.events]
        ds.__dict__["_stamps"] = stamps
    return ds.events[bisect.bisect_left(stamps, lo):bisect.bisect_left(stamps, hi)]


def _last_days(ds: Dataset, p: Project, days: int) -> list[EventRow]:
    return _between(ds, p.window_start(days), p.now)


def _before_now(ds: Dataset, p: Project) -> list[EventRow]:
    return _between(ds, -(2 ** 62), p.now)


def _value_key(value: Any) -> tuple[int, str]:
    return (1, "") if value is None else (0, str(value))


def _prop_value(props: dict[str, Any], name: str) -> Any:
    """A property as HogQL returns it: strings as-is, other JSON scalars as their JSON text."""
    if name not in props or props[name] is None:
        return None
    value = props[name]
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _median(values: list[float]) -> float | None:
    """The median as ClickHouse's quantile(0.5) gives it for small sets: linear interpolation."""
    if not values:
        return None
    ordered = sorted(values)
    position = 0.5 * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# --- users who stopped --------------------------------------------------------------------------------

def _churn(ds: Dataset, p: Project, inactive_days: int, lookback_days: int,
           min_active_days: int) -> tuple[list[tuple[str, int, int]], int, dict[str, int], dict[str, int]]:
    if lookback_days <= inactive_days:
        raise ValueError("lookback_days must be greater than inactive_days")
    lookback, quiet_from = p.window_start(lookback_days), p.window_start(inactive_days)
    first_seen: dict[str, int] = {}
    last_seen: dict[str, int] = {}
    events: Counter[str] = Counter()
    days: dict[str, set[int]] = defaultdict(set)
    recent: set[str] = set()
    for e in _before_now(ds, p):
        first_seen.setdefault(e.distinct_id, e.ts)
        last_seen[e.distinct_id] = e.ts
        if e.ts >= quiet_from:
            recent.add(e.distinct_id)
        elif e.ts >= lookback:
            events[e.distinct_id] += 1
            days[e.distinct_id].add(p.day(e.ts))
    quiet = [d for d in events if d not in recent]
    lapsed = sorted(((d, len(days[d]), events[d]) for d in quiet if len(days[d]) >= min_active_days),
                    key=lambda x: (-x[1], -x[2], x[0]))
    bounced = sum(1 for d in quiet if len(days[d]) < min_active_days and first_seen[d] >= lookback)
    return lapsed, bounced, first_seen, last_seen


def identify_churn_risk(ds: Dataset, inactive_days: int = 14, lookback_days: int = 60,
                        min_active_days: int = 3, limit: int = 50, *,
                        project: Project | None = None) -> dict[str, Any]:
    p = project or Project(ds)
    lapsed, bounced, first_seen, last_seen = _churn(ds, p, inactive_days, lookback_days, min_active_days)
    return {
        "at_risk_count": len(lapsed),
        "bounced_count": bounced,
        "users": [{"distinct_id": d, "active_days": n_days, "events": n_events,
                   "first_seen": p.timestamp(first_seen[d]), "last_seen": p.timestamp(last_seen[d])}
                  for d, n_days, n_events in lapsed[:limit]],
        **p.labels,
    }


def create_churn_cohort(ds: Dataset, cohort_name: str = "Churn risk", inactive_days: int = 14,
                        lookback_days: int = 60, min_active_days: int = 3, *,
                        project: Project | None = None) -> dict[str, Any]:
    p = project or Project(ds)
    lapsed, bounced, _, _ = _churn(ds, p, inactive_days, lookback_days, min_active_days)
    ids = sorted(d for d, _, _ in lapsed)
    # cohort_id is assigned by the server: on a fresh server it is 1 + the existing cohorts.
    return {"cohort_id": None, "name": cohort_name, "count": len(ids), "bounced_count": bounced,
            "persons_added": len(ids), "unresolved": 0, "distinct_ids_sample": ids[:20], **p.labels}


def find_power_users(ds: Dataset, days: int = 30, min_events: int = 20, limit: int = 20, *,
                     project: Project | None = None) -> dict[str, Any]:
    p = project or Project(ds)
    counts: Counter[str] = Counter()
    dates: dict[str, set[int]] = defaultdict(set)
    for e in _last_days(ds, p, days):
        counts[e.distinct_id] += 1
        dates[e.distinct_id].add(p.day(e.ts))
    power = sorted(((d, n) for d, n in counts.items() if n >= min_events), key=lambda x: (-x[1], x[0]))
    return {
        "power_user_count": len(power),
        "users": [{"distinct_id": d, "events": n, "active_days": len(dates[d])} for d, n in power[:limit]],
        **p.labels,
    }


# --- engagement ------------------------------------------------------------------------------------------

def engagement_trend(ds: Dataset, days: int = 28, interval: str = "day", *,
                     project: Project | None = None) -> dict[str, Any]:
    if interval not in ("day", "week"):
        raise ValueError("interval must be 'day' or 'week'")
    p = project or Project(ds)
    window = list(range(p.today - days + 1, p.today + 1))
    users_on: dict[int, set[str]] = defaultdict(set)
    events_on: Counter[int] = Counter()
    # the window and the 29 days before it: each day's MAU looks 30 days back
    for e in _between(ds, p.day_start(window[0] - 29), p.now):
        day = p.day(e.ts)
        users_on[day].add(e.distinct_id)
        events_on[day] += 1
    if interval == "day":
        series = [{"date": p.date(d), "active_users": len(users_on[d]), "events": events_on[d]} for d in window]
    else:
        weeks: dict[int, list[int]] = defaultdict(list)
        for d in window:
            weeks[p.week(d)].append(d)
        series = [{"date": p.date(w), "active_users": len(set().union(*(users_on[d] for d in ds_))),
                   "events": sum(events_on[d] for d in ds_)} for w, ds_ in sorted(weeks.items())]

    def active(day: int, span: int) -> int:
        return len(set().union(*(users_on[d] for d in range(day - span + 1, day + 1))))

    dau = [len(users_on[d]) for d in window]
    wau = [active(d, 7) for d in window]
    mau = [active(d, 30) for d in window]
    per_user: Counter[str] = Counter()
    for d in window:
        for user in users_on[d]:
            per_user[user] += 1
    exactly = Counter(per_user.values())
    return {
        "interval": interval,
        "series": series,
        "dau": _mean(dau),
        "wau": _mean(wau),
        "mau": _mean(mau),
        "dau_mau": _mean([_ratio(a, m) for a, m in zip(dau, mau)]),
        "stickiness": [{"days_active": k, "users": exactly.get(k, 0)} for k in range(1, days + 1)],
        **p.labels,
    }


def retention_cohorts(ds: Dataset, start_event: str = "signed_up", return_event: str = "$pageview",
                      weeks: int = 6, recurring: bool = False, *,
                      project: Project | None = None) -> dict[str, Any]:
    p = project or Project(ds)
    current = p.week(p.today)
    first_week = current - 7 * (weeks - 1)
    range_start = p.day_start(first_week)
    cohorts_of: dict[str, set[int]] = defaultdict(set)
    returns_of: dict[str, set[int]] = defaultdict(set)
    first_start: dict[str, int] = {}
    for e in _before_now(ds, p):
        if e.event == start_event:
            if recurring:
                if e.ts >= range_start:
                    cohorts_of[e.distinct_id].add(p.week(p.day(e.ts)))
            else:
                first_start.setdefault(e.distinct_id, e.ts)
        if e.event == return_event and e.ts >= range_start:
            returns_of[e.distinct_id].add(p.week(p.day(e.ts)))
    if not recurring:
        for user, ts in first_start.items():
            week = p.week(p.day(ts))
            if week >= first_week:
                cohorts_of[user].add(week)
    members: dict[int, list[str]] = defaultdict(list)
    for user, own in cohorts_of.items():
        for week in own:
            members[week].append(user)
    out = []
    for week in range(first_week, current + 1, 7):
        group = members[week]
        periods = (current - week) // 7 + 1
        retained = [len(group)] + [sum(1 for u in group if week + 7 * k in returns_of[u]) for k in range(1, periods)]
        out.append({"cohort_week": p.date(week), "size": len(group), "retained": retained})
    return {"cohorts": out, **p.labels}


# --- funnels -------------------------------------------------------------------------------------------

def _funnel_path(events: list[tuple[int, str, list[int]]], n: int, window_us: int) -> tuple[int, list[int]]:
    """One person's ordered funnel as SEMANTICS.md describes PostHog's (funnel-udf/src/steps.rs):
    events are (microseconds, uuid, the steps the event matches, ascending). Returns the furthest step
    (0: none) and the step times of the path recorded for it."""
    entered: list[tuple[int, tuple[int, ...], tuple[str, ...]] | None] = [None] * (n + 1)
    best: tuple[int, tuple[int, ...]] = (0, ())

    def take(t: int, uuid: str, steps: list[int], shared: bool) -> None:
        nonlocal best
        for step in reversed(steps):
            previous = entered[step - 1]
            if previous is None or t - previous[0] > window_us:
                continue
            current = entered[step]
            if current is not None and current[0] == previous[0]:
                continue  # this path already reached the step
            if shared and uuid in previous[2]:
                continue  # one event is one step of a path
            path = (previous[0], previous[1] + (t,), previous[2] + (uuid,))
            entered[step] = path
            if step > best[0]:
                best = (step, path[1])

    for t, group in groupby(events, key=lambda x: x[0]):
        same_time = list(group)
        entered[0] = (t, (), ())
        if len(same_time) == 1 or all(e[2] == same_time[0][2] for e in same_time):
            for _, uuid, steps in same_time:
                take(t, uuid, steps, False)
        else:  # different events at one instant: each step on its own, lowest step first
            split = sorted(((s, uuid) for _, uuid, steps in same_time for s in steps), key=lambda x: x[0])
            for s, uuid in split:
                take(t, uuid, [s], True)
        if entered[n] is not None:
            break
    return best[0], list(best[1])


def conversion_funnel(ds: Dataset, steps: list[str] | None = None, window_days: int = 14,
                      days: int = 60, *, project: Project | None = None) -> dict[str, Any]:
    steps = list(steps or DEFAULT_FUNNEL)
    p = project or Project(ds)
    wanted = set(steps)
    per_user: dict[str, list[tuple[int, str, list[int]]]] = defaultdict(list)
    for e in _last_days(ds, p, days):
        if e.event in wanted:
            matched = [k + 1 for k, name in enumerate(steps) if name == e.event]
            per_user[e.distinct_id].append((e.ts * 1000, e.uuid, matched))
    reached = [0] * len(steps)
    times: list[list[float]] = [[] for _ in steps]
    for events in per_user.values():
        furthest, path = _funnel_path(events, len(steps), window_days * 86_400 * 1_000_000)
        for k in range(furthest):
            reached[k] += 1
        for k in range(1, len(path)):
            seconds = (path[k] - path[k - 1]) / 1e6
            if seconds > 0:  # PostHog leaves zero-second conversions out of the averages
                times[k].append(seconds)
    out = []
    for k, name in enumerate(steps):
        first = 1.0 if reached[0] else 0.0
        out.append({"event": name, "users": reached[k],
                    "conversion_from_start": _ratio(reached[k], reached[0]) if k else first,
                    "conversion_from_previous": _ratio(reached[k], reached[k - 1]) if k else first,
                    "average_conversion_time_seconds": (sum(times[k]) / len(times[k])) if k and times[k] else None,
                    "median_conversion_time_seconds": _median(times[k]) if k else None})
    return {"steps": out, **p.labels}


def new_user_activation(ds: Dataset, signup_event: str = "signed_up",
                        activation_event: str = "first_report_created", within_days: int = 7,
                        days: int = 30, *, project: Project | None = None) -> dict[str, Any]:
    p = project or Project(ds)
    first_signup: dict[str, int] = {}
    activations: dict[str, list[int]] = defaultdict(list)
    for e in _before_now(ds, p):
        if e.event == signup_event:
            first_signup.setdefault(e.distinct_id, e.ts)
        if e.event == activation_event:
            activations[e.distinct_id].append(e.ts)
    start = p.window_start(days)
    span = within_days * DAY_MS
    new = {u: t for u, t in first_signup.items() if t >= start}
    matured = {u: t for u, t in new.items() if t + span <= p.now}
    immature = {u: t for u, t in new.items() if u not in matured}

    def activated(group: dict[str, int]) -> int:
        return sum(1 for u, t in group.items() if any(t <= a <= t + span for a in activations[u]))

    done = activated(matured)
    return {"new_users": len(new), "matured_users": len(matured), "activated": done,
            "activation_rate": _ratio(done, len(matured)), "immature_users": len(immature),
            "immature_activated": activated(immature), **p.labels}


# --- breakdowns ----------------------------------------------------------------------------------------

def _breakdown(ds: Dataset, p: Project, event: str, prop: str,
               days: int) -> tuple[Counter[Any], dict[Any, set[str]], int]:
    counts: Counter[Any] = Counter()
    users: dict[Any, set[str]] = defaultdict(set)
    total = 0
    for e in _last_days(ds, p, days):
        if e.event != event:
            continue
        value = _prop_value(ds.props(e), prop)
        counts[value] += 1
        users[value].add(e.distinct_id)
        total += 1
    return counts, users, total


def feature_impact(ds: Dataset, event: str = "report_exported", property: str = "plan",
                   days: int = 30, *, project: Project | None = None) -> dict[str, Any]:
    p = project or Project(ds)
    counts, users, total = _breakdown(ds, p, event, property, days)
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], _value_key(kv[0])))
    return {"total_events": total, "breakdown": [
        {"value": v, "users": len(users[v]), "events": n, "events_per_user": _ratio(n, len(users[v])),
         "events_per_day": _ratio(n, days)} for v, n in rows], **p.labels}


def top_events(ds: Dataset, days: int = 7, limit: int = 10, *, project: Project | None = None) -> dict[str, Any]:
    p = project or Project(ds)
    counts: Counter[str] = Counter()
    users: dict[str, set[str]] = defaultdict(set)
    window = _last_days(ds, p, days)
    for e in window:
        counts[e.event] += 1
        users[e.event].add(e.distinct_id)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return {"total_events": len(window), "events": [
        {"event": name, "events": n, "users": len(users[name])} for name, n in ranked[:limit]], **p.labels}


def property_breakdown(ds: Dataset, event: str = "$pageview", property: str = "$browser",
                       days: int = 30, limit: int = 10, *, project: Project | None = None) -> dict[str, Any]:
    p = project or Project(ds)
    counts, users, total = _breakdown(ds, p, event, property, days)
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], _value_key(kv[0])))
    return {"total_events": total, "breakdown": [
        {"value": v, "events": n, "users": len(users[v]), "share": _ratio(n, total)}
        for v, n in rows[:limit]], **p.labels}


def user_activity_timeline(ds: Dataset, distinct_id: str, days: int = 30, limit: int = 100, *,
                           project: Project | None = None) -> dict[str, Any]:
    p = project or Project(ds)
    mine = [e for e in _last_days(ds, p, days) if e.distinct_id == distinct_id]
    mine.sort(key=lambda e: (-e.ts, e.event))
    by_event = Counter(e.event for e in mine)
    return {"distinct_id": distinct_id, "total_events": len(mine),
            "by_event": dict(sorted(by_event.items(), key=lambda kv: (-kv[1], kv[0]))),
            "events": [{"event": e.event, "timestamp": p.timestamp(e.ts)} for e in mine[:limit]], **p.labels}


# --- experiments -----------------------------------------------------------------------------------------

def _experiment_for(ds: Dataset, flag_key: str) -> dict[str, Any] | None:
    mine = [x for x in ds.experiments if x.get("feature_flag_key") == flag_key and not x.get("archived")]
    return max(mine, key=lambda x: int(x["id"])) if mine else None


def _variant_keys(ds: Dataset, flag_key: str, experiment: dict[str, Any] | None) -> list[str]:
    if experiment and (experiment.get("parameters") or {}).get("feature_flag_variants"):
        return [str(v["key"]) for v in experiment["parameters"]["feature_flag_variants"]]
    flag = next((f for f in ds.flags if f["key"] == flag_key and not f.get("deleted")), None)
    return [str(v["key"]) for v in variants_of(flag)] if flag else []


def _statistics(control: tuple[int, int], treatment: tuple[int, int]) -> dict[str, Any]:
    """PostHog's current engine on (users, conversions) pairs (products/experiments/stats), computed
    with mpmath: the relative lift, its delta-method variance, Welch's t-test and the Gaussian
    posterior of a non-informative prior."""
    import mpmath

    mpmath.mp.dps = 40
    (n_c, x_c), (n_t, x_t) = control, treatment
    p_c, p_t = mpmath.mpf(x_c) / n_c, mpmath.mpf(x_t) / n_t
    var_c, var_t = p_c * (1 - p_c), p_t * (1 - p_t)
    lift = (p_t - p_c) / p_c
    variance = var_t / (n_t * p_c ** 2) + p_t ** 2 * var_c / (n_c * p_c ** 4)
    se = mpmath.sqrt(variance)
    a, b = var_t / n_t, var_c / n_c
    df = (a + b) ** 2 / (a ** 2 / (n_t - 1) + b ** 2 / (n_c - 1))
    t_stat = lift / se

    def t_cdf(x: Any) -> Any:  # Student's t through the regularized incomplete beta function
        tail = mpmath.betainc(df / 2, mpmath.mpf(1) / 2, 0, df / (df + x ** 2), regularized=True) / 2
        return 1 - tail if x >= 0 else tail

    p_value = 2 * (1 - t_cdf(abs(t_stat)))
    t_crit = mpmath.findroot(lambda x: t_cdf(x) - mpmath.mpf("0.975"), 2)
    z_crit = mpmath.sqrt(2) * mpmath.erfinv(mpmath.mpf("0.95"))
    chance = mpmath.ncdf(lift / se)
    return {
        "lift": float(lift), "se": float(se),
        "frequentist": {"method": "Welch's t-test on the relative difference (two-sided, alpha 0.05)",
                        "lift": float(lift), "p_value": float(p_value),
                        "confidence_interval": [float(lift - t_crit * se), float(lift + t_crit * se)],
                        "significant": bool(p_value < mpmath.mpf("0.05"))},
        "bayesian": {"method": "Gaussian posterior of the relative difference, non-informative prior",
                     "chance_to_win": float(chance),
                     "credible_interval": [float(lift - z_crit * se), float(lift + z_crit * se)],
                     "significant": bool(chance > mpmath.mpf("0.95") or chance < mpmath.mpf("0.05"))},
    }


def _probability_best(effects: dict[str, tuple[float, float]]) -> dict[str, float]:
    """P(each arm is best) with control's relative effect 0 and each variant's ~ N(lift, se²), the
    variants independent: control wins when every effect is below 0; a variant when its effect is
    above 0 and above every other. Numerical integration (mpmath.quad), deterministic."""
    import mpmath

    mpmath.mp.dps = 30
    out: dict[str, float] = {"control": float(mpmath.fprod(mpmath.ncdf(0, m, s) for m, s in effects.values()))}
    for key, (m, s) in effects.items():
        others = [v for k, v in effects.items() if k != key]

        def density(x: Any, m: float = m, s: float = s, others: list[tuple[float, float]] = others) -> Any:
            return mpmath.npdf(x, m, s) * mpmath.fprod(mpmath.ncdf(x, mo, so) for mo, so in others)

        high = max(m, 0) + 12 * s
        out[key] = float(mpmath.quad(density, [0, m, high] if 0 < m < high else [0, high]))
    return out


def analyze_experiment(ds: Dataset, flag_key: str = "new-onboarding",
                       conversion_event: str = "subscription_started", start_date: str | None = None,
                       conversion_window_days: int | None = None, *,
                       project: Project | None = None) -> dict[str, Any]:
    p = project or Project(ds)
    experiment = _experiment_for(ds, flag_key)
    start_text = start_date or (experiment or {}).get("start_date")
    if not start_text:
        raise ValueError(f"no experiment uses the flag {flag_key!r}: pass start_date")
    start = to_ms(parse_iso(start_text))
    end_text = (experiment or {}).get("end_date")
    end = to_ms(parse_iso(end_text)) if end_text else None
    variants = _variant_keys(ds, flag_key, experiment)
    window = (conversion_window_days or NO_WINDOW_DAYS) * DAY_MS

    def in_range(ts: int) -> bool:
        return ts >= start and (ts <= end if end is not None else ts < p.now)

    exposures: dict[str, list[int]] = defaultdict(list)
    responses: dict[str, set[str]] = defaultdict(set)
    conversions: dict[str, list[int]] = defaultdict(list)
    non_variant = 0
    for e in _before_now(ds, p):
        if not in_range(e.ts):
            continue
        if e.event == conversion_event:
            conversions[e.distinct_id].append(e.ts)
        if e.event == "$feature_flag_called":
            props = ds.props(e)
            if props.get("$feature_flag") != flag_key:
                continue
            response = _prop_value(props, "$feature_flag_response")
            if response in variants:
                exposures[e.distinct_id].append(e.ts)
                responses[e.distinct_id].add(response)
            else:
                non_variant += 1
    users: Counter[str] = Counter()
    converted: Counter[str] = Counter()
    multiple = 0
    for user, seen in responses.items():
        if len(seen) > 1:
            multiple += 1
            continue
        variant = next(iter(seen))
        users[variant] += 1
        if any(x <= c <= x + window for c in conversions[user] for x in exposures[user]):
            converted[variant] += 1

    def failures(key: str) -> list[str]:
        out = []
        if users[key] < MIN_EXPOSURES:
            out.append("not-enough-exposures")
        if converted[key] < MIN_CONVERSIONS:
            out.append("not-enough-metric-data")
        if key == "control" and converted[key] == 0:
            out.append("baseline-mean-is-zero")
        return out

    ordered = (["control"] if "control" in variants else []) + [v for v in variants if v != "control"]
    rows = [{"variant": v, "users": users[v], "conversions": converted[v], "rate": _ratio(converted[v], users[v]),
             "validation_failures": failures(v)} for v in ordered]
    control_ok = "control" in variants and not failures("control")
    comparisons = []
    effects: dict[str, tuple[float, float]] = {}
    for v in ordered:
        if v == "control":
            continue
        entry: dict[str, Any] = {"variant": v, "baseline": "control", "frequentist": None, "bayesian": None}
        if control_ok and not failures(v):
            stats = _statistics((users["control"], converted["control"]), (users[v], converted[v]))
            entry["frequentist"], entry["bayesian"] = stats["frequentist"], stats["bayesian"]
            effects[v] = (stats["lift"], stats["se"])
        comparisons.append(entry)
    return {
        "flag_key": flag_key,
        "experiment_id": int(experiment["id"]) if experiment else None,
        "start": iso_ms(start),
        "end": iso_ms(end) if end is not None else None,
        "conversion_event": conversion_event,
        "conversion_window_days": conversion_window_days,
        "variants": rows,
        "excluded_multiple_variant_users": multiple,
        "non_variant_exposures": non_variant,
        "comparisons": comparisons,
        "probability_best": _probability_best(effects) if effects else None,
        **p.labels,
    }


# --- flags ----------------------------------------------------------------------------------------------

def feature_flag_report(ds: Dataset, flag_key: str | None = None, distinct_ids: list[str] | None = None,
                        days: int = 30, *, project: Project | None = None) -> dict[str, Any]:
    p = project or Project(ds)
    flags = sorted((f for f in ds.flags if not f.get("deleted") and (flag_key is None or f["key"] == flag_key)),
                   key=lambda f: f["key"])
    props_of = {person["distinct_id"]: person["properties"] for person in ds.persons}
    covered = sorted({e.distinct_id for e in _last_days(ds, p, days)})
    report = []
    for f in flags:
        groups = (f.get("filters") or {}).get("groups") or []
        variant_keys = [str(v["key"]) for v in variants_of(f)]
        # PostHog evaluates the groups with a variant override first, then the rest, each in order
        order = [i for i, g in enumerate(groups) if g.get("variant")] + \
                [i for i, g in enumerate(groups) if not g.get("variant")]
        enabled = 0
        per_variant: Counter[str] = Counter()
        per_group: Counter[int] = Counter()
        for did in covered:
            result = evaluate(f, did, props_of.get(did, {}))
            if result.enabled:
                enabled += 1
                if result.variant is not None:
                    per_variant[result.variant] += 1
                if result.condition_index is not None:
                    per_group[result.condition_index] += 1
        report.append({
            "key": f["key"], "active": bool(f.get("active")),
            "groups": [{"properties": g.get("properties") or [],
                        "rollout_percentage": None if g.get("rollout_percentage") is None
                        else float(g["rollout_percentage"]),
                        "variant": g.get("variant")} for g in groups],
            "evaluation_order": order,
            "variants": [{"key": v["key"], "rollout_percentage": v.get("rollout_percentage")}
                         for v in variants_of(f)] or None,
            "reach": {"persons": len(covered), "enabled": enabled, "share": _ratio(enabled, len(covered)),
                      "by_variant": {k: per_variant[k] for k in variant_keys} if variant_keys else None,
                      "by_group": [per_group[i] for i in range(len(groups))]},
        })
    evaluations: dict[str, dict[str, dict[str, Any]]] = {}
    for did in distinct_ids or []:
        per_flag = {}
        for f in flags:
            if not f.get("active"):
                continue  # /flags only answers for active flags
            result = evaluate(f, did, props_of.get(did, {}))
            per_flag[f["key"]] = {"enabled": result.enabled, "variant": result.variant}
        evaluations[did] = per_flag
    return {"flags": report, "evaluations": evaluations, "reach_days": days, **p.labels}


# --- export -------------------------------------------------------------------------------------------

def _parse_bound(value: str | int) -> int:
    if isinstance(value, int):
        return value
    return to_ms(parse_iso(value))


def export_events(ds: Dataset, start: str, end: str, event_names: list[str] | None = None,
                  format: str = "jsonl", gzip: bool = False, *, project: Project | None = None) -> dict[str, Any]:
    """`gzip` changes the file's bytes only (file, bytes and sha256 depend on the writer)."""
    p = project or Project(ds)
    lo, hi = _parse_bound(start), _parse_bound(end)
    names = set(event_names or [])
    rows = [e for e in _between(ds, lo, hi) if not names or e.event in names]
    by_event = Counter(e.event for e in rows)
    return {"rows": len(rows), "by_event": dict(sorted(by_event.items())), "format": format, **p.labels}


TEMPLATES: dict[str, Callable[..., dict[str, Any]]] = {
    "identify_churn_risk": identify_churn_risk,
    "find_power_users": find_power_users,
    "engagement_trend": engagement_trend,
    "retention_cohorts": retention_cohorts,
    "conversion_funnel": conversion_funnel,
    "new_user_activation": new_user_activation,
    "feature_impact": feature_impact,
    "analyze_experiment": analyze_experiment,
    "top_events": top_events,
    "property_breakdown": property_breakdown,
    "user_activity_timeline": user_activity_timeline,
    "create_churn_cohort": create_churn_cohort,
    "feature_flag_report": feature_flag_report,
    "export_events": export_events,
}


def _parameters(template: str) -> list[inspect.Parameter]:
    """The template's variables: the function's parameters after the dataset, keyword-only excluded."""
    params = list(inspect.signature(TEMPLATES[template]).parameters.values())[1:]
    return [p for p in params if p.kind is not inspect.Parameter.KEYWORD_ONLY]


def parse_param(name: str, raw: str, template: str) -> Any:
    """Turn a CLI `k=v` value into the parameter's type (JSON first, then by the default)."""
    param = next((p for p in _parameters(template) if p.name == name), None)
    if param is None:
        raise KeyError(f"{template} has no parameter {name!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    default = param.default
    annotation = str(param.annotation)
    if "list" in annotation and isinstance(value, str):
        return [v for v in raw.split(",") if v]
    if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, str):
        return int(value)
    if "str" in annotation and not isinstance(value, str) and value is not None and "list" not in annotation:
        return raw
    return value


def answer(ds: Dataset, template: str, params: dict[str, Any], timezone: str = "UTC",
           week_start_day: int = 1) -> dict[str, Any]:
    if template not in TEMPLATES:
        raise KeyError(f"unknown template {template!r}; known: {', '.join(sorted(TEMPLATES))}")
    return TEMPLATES[template](ds, **params, project=Project(ds, timezone, week_start_day))


def default_cases(ds: Dataset) -> dict[str, list[dict[str, Any]]]:
    """The parameter sets stored in truths.json (the first of each list is the defaults)."""
    p = Project(ds)
    power = find_power_users(ds, project=p)["users"]
    churn = identify_churn_risk(ds, project=p)["users"]
    signups = [e.distinct_id for e in _last_days(ds, p, 30) if e.event == "signed_up"]
    sample_ids = [u["distinct_id"] for u in power[:1]] + [u["distinct_id"] for u in churn[:1]] + signups[:1]
    week_ago = Project.date(p.today - 6)
    end = iso_ms(p.now)
    cases: dict[str, list[dict[str, Any]]] = {name: [{}] for name in TEMPLATES}
    cases["engagement_trend"] = [{}, {"interval": "week"}]
    cases["analyze_experiment"] = [{}, {"flag_key": "pricing-page-v2"},
                                   {"flag_key": "onboarding-tips", "conversion_event": "checklist_completed"}]
    cases["retention_cohorts"] = [{}, {"recurring": True}]
    cases["user_activity_timeline"] = [{"distinct_id": d} for d in sample_ids]
    cases["create_churn_cohort"] = [{"cohort_name": "Churn risk"}]
    cases["feature_flag_report"] = [{"distinct_ids": sample_ids},
                                    {"flag_key": "new-onboarding", "distinct_ids": sample_ids}]
    cases["export_events"] = [
        {"start": week_ago, "end": end},
        {"start": week_ago, "end": end, "event_names": ["signed_up", "subscription_started"]},
    ]
    return cases


def full_params(template: str, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters with every default spelled out (what truths.json records)."""
    out: dict[str, Any] = {}
    for param in _parameters(template):
        if param.name in params:
            out[param.name] = params[param.name]
        elif param.default is not inspect.Parameter.empty:
            out[param.name] = list(DEFAULT_FUNNEL) if param.name == "steps" and param.default is None \
                else param.default
    return out


def compute_all(ds: Dataset) -> dict[str, Any]:
    templates: dict[str, list[dict[str, Any]]] = {}
    for name, cases in default_cases(ds).items():
        templates[name] = [{"params": full_params(name, params), "answer": answer(ds, name, params)}
                           for params in cases]
    return {"reference_time": iso_ms(ds.reference_ms), "templates": templates}

