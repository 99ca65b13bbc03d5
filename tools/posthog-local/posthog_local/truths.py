"""True answers of the 14 templates (Templates/SEMANTICS.md), computed in plain Python.

Each function takes the Dataset and the template's parameters and returns the answer with the
keys SEMANTICS.md names. Conventions (shared with the server's HogQL results):
- timestamps are `YYYY-MM-DDTHH:MM:SS.ffffffZ`, dates `YYYY-MM-DD`;
- rates and ratios are unrounded floats (compare with a tolerance);
- a missing property value is `None` (JSON null) and sorts after strings on ties;
- rankings break ties by the name (distinct_id, event, value) ascending.
No SQL is involved: the rows come from the generator (or are read back from Parquet as-is).
"""

from __future__ import annotations

import inspect
import json
import math
from collections import Counter, defaultdict
from typing import Any, Callable

from .dataset import Dataset, EventRow
from .flags import evaluate, rollout_percentage, variants_of
from .timeutil import DAY_MS, date_of_ms, iso_ms, monday_of_ms, parse_iso, to_ms

DEFAULT_FUNNEL = ["signed_up", "onboarding_completed", "first_report_created",
                  "subscription_started"]


def _window(ds: Dataset, days: int) -> list[EventRow]:
    start = ds.reference_ms - days * DAY_MS
    return [e for e in ds.events if start <= e.ts < ds.reference_ms]


def _before_r(ds: Dataset) -> list[EventRow]:
    return [e for e in ds.events if e.ts < ds.reference_ms]


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


# --- the templates -------------------------------------------------------------------------------

def identify_churn_risk(ds: Dataset, inactive_days: int = 14, lookback_days: int = 60,
                        min_events: int = 5, limit: int = 50) -> dict[str, Any]:
    r = ds.reference_ms
    early_start, recent_start = r - lookback_days * DAY_MS, r - inactive_days * DAY_MS
    early: Counter[str] = Counter()
    recent: set[str] = set()
    last_seen: dict[str, int] = {}
    for e in _before_r(ds):
        if recent_start <= e.ts:
            recent.add(e.distinct_id)
        elif early_start <= e.ts:
            early[e.distinct_id] += 1
        if e.ts > last_seen.get(e.distinct_id, -1):
            last_seen[e.distinct_id] = e.ts
    at_risk = sorted(((d, n) for d, n in early.items() if n >= min_events and d not in recent),
                     key=lambda x: (-x[1], x[0]))
    return {
        "at_risk_count": len(at_risk),
        "users": [{"distinct_id": d, "events": n, "last_seen": iso_ms(last_seen[d])}
                  for d, n in at_risk[:limit]],
    }


def find_power_users(ds: Dataset, days: int = 30, min_events: int = 20,
                     limit: int = 20) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    dates: dict[str, set[str]] = defaultdict(set)
    for e in _window(ds, days):
        counts[e.distinct_id] += 1
        dates[e.distinct_id].add(date_of_ms(e.ts))
    power = sorted(((d, n) for d, n in counts.items() if n >= min_events),
                   key=lambda x: (-x[1], x[0]))
    return {
        "power_user_count": len(power),
        "users": [{"distinct_id": d, "events": n, "active_days": len(dates[d])}
                  for d, n in power[:limit]],
    }


def engagement_trend(ds: Dataset, days: int = 28, interval: str = "day") -> dict[str, Any]:
    if interval not in ("day", "week"):
        raise ValueError("interval must be 'day' or 'week'")
    r = ds.reference_ms
    users_by_bucket: dict[str, set[str]] = defaultdict(set)
    events_by_bucket: Counter[str] = Counter()
    users_by_day: dict[str, set[str]] = defaultdict(set)
    for e in _window(ds, days):
        day = date_of_ms(e.ts)
        bucket = day if interval == "day" else date_of_ms(monday_of_ms(e.ts))
        users_by_bucket[bucket].add(e.distinct_id)
        events_by_bucket[bucket] += 1
        users_by_day[day].add(e.distinct_id)
    series = [{"date": b, "active_users": len(users_by_bucket[b]), "events": events_by_bucket[b]}
              for b in sorted(users_by_bucket)]
    dau = sum(len(u) for u in users_by_day.values()) / days if days else 0.0
    wau = len({e.distinct_id for e in ds.events if r - 7 * DAY_MS <= e.ts < r})
    mau = len({e.distinct_id for e in ds.events if r - 30 * DAY_MS <= e.ts < r})
    return {"interval": interval, "series": series, "dau": dau, "wau": wau, "mau": mau,
            "stickiness": _ratio(dau, mau)}


def retention_cohorts(ds: Dataset, start_event: str = "signed_up", return_event: str = "$pageview",
                      weeks: int = 6) -> dict[str, Any]:
    r = ds.reference_ms
    first_start: dict[str, int] = {}
    return_weeks: dict[str, set[int]] = defaultdict(set)
    for e in _before_r(ds):
        if e.event == start_event and e.distinct_id not in first_start:
            first_start[e.distinct_id] = e.ts  # events are time-ordered
        if e.event == return_event:
            return_weeks[e.distinct_id].add(monday_of_ms(e.ts))
    cutoff = monday_of_ms(r - 7 * weeks * DAY_MS)
    cohorts: dict[int, list[str]] = defaultdict(list)
    for user, ts in first_start.items():
        week = monday_of_ms(ts)
        if week >= cutoff:
            cohorts[week].append(user)
    out = []
    for week in sorted(cohorts):
        members = cohorts[week]
        retained = []
        for k in range(weeks):
            target = week + 7 * k * DAY_MS
            if target >= r:
                break
            retained.append(sum(1 for u in members if target in return_weeks[u]))
        out.append({"cohort_week": date_of_ms(week), "size": len(members), "retained": retained})
    return {"cohorts": out}


def conversion_funnel(ds: Dataset, steps: list[str] | None = None, window_days: int = 14,
                      days: int = 60) -> dict[str, Any]:
    steps = list(steps or DEFAULT_FUNNEL)
    r = ds.reference_ms
    start = r - days * DAY_MS
    wanted = set(steps)
    times: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for e in _before_r(ds):
        if e.event in wanted:
            times[e.distinct_id][e.event].append(e.ts)
    reached = [0] * len(steps)
    for per_event in times.values():
        firsts = [t for t in per_event.get(steps[0], []) if start <= t < r]
        if not firsts:
            continue
        t0 = firsts[0]
        deadline = t0 + window_days * DAY_MS
        reached[0] += 1
        previous = t0
        for k in range(1, len(steps)):
            match = next((t for t in per_event.get(steps[k], []) if previous <= t <= deadline), None)
            if match is None:
                break
            reached[k] += 1
            previous = match
    out = []
    for k, name in enumerate(steps):
        first = 1.0 if reached[0] else 0.0
        out.append({"event": name, "users": reached[k],
                    "conversion_from_start": _ratio(reached[k], reached[0]) if k else first,
                    "conversion_from_previous": _ratio(reached[k], reached[k - 1]) if k else first})
    return {"steps": out}


def new_user_activation(ds: Dataset, signup_event: str = "signed_up",
                        activation_event: str = "first_report_created", within_days: int = 7,
                        days: int = 30) -> dict[str, Any]:
    r = ds.reference_ms
    first_signup: dict[str, int] = {}
    activations: dict[str, list[int]] = defaultdict(list)
    for e in _before_r(ds):
        if e.event == signup_event and e.distinct_id not in first_signup:
            first_signup[e.distinct_id] = e.ts
        if e.event == activation_event:
            activations[e.distinct_id].append(e.ts)
    new = {u: t for u, t in first_signup.items() if r - days * DAY_MS <= t < r}
    activated = sum(1 for u, t in new.items()
                    if any(t <= a <= t + within_days * DAY_MS for a in activations[u]))
    return {"new_users": len(new), "activated": activated,
            "activation_rate": _ratio(activated, len(new))}


def _breakdown(ds: Dataset, event: str, prop: str, days: int) -> tuple[Counter[Any], dict[Any, set[str]], int]:
    counts: Counter[Any] = Counter()
    users: dict[Any, set[str]] = defaultdict(set)
    total = 0
    for e in _window(ds, days):
        if e.event != event:
            continue
        value = _prop_value(ds.props(e), prop)
        counts[value] += 1
        users[value].add(e.distinct_id)
        total += 1
    return counts, users, total


def feature_impact(ds: Dataset, event: str = "report_exported", property: str = "plan",
                   days: int = 30) -> dict[str, Any]:
    counts, users, total = _breakdown(ds, event, property, days)
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], _value_key(kv[0])))
    return {"total_events": total, "breakdown": [
        {"value": v, "users": len(users[v]), "events": n,
         "events_per_user": _ratio(n, len(users[v])), "events_per_day": _ratio(n, days)}
        for v, n in rows]}


def analyze_experiment(ds: Dataset, flag_key: str = "new-onboarding",
                       conversion_event: str = "subscription_started", days: int = 60) -> dict[str, Any]:
    r = ds.reference_ms
    start = r - days * DAY_MS
    first: dict[str, tuple[int, str]] = {}
    conversions: dict[str, list[int]] = defaultdict(list)
    for e in _before_r(ds):
        if e.event == conversion_event:
            conversions[e.distinct_id].append(e.ts)
        if e.event == "$feature_flag_called" and e.ts >= start and e.distinct_id not in first:
            props = ds.props(e)
            if props.get("$feature_flag") == flag_key:
                first[e.distinct_id] = (e.ts, str(_prop_value(props, "$feature_flag_response")))
    stats: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for user, (ts, variant) in first.items():
        stats[variant][0] += 1
        if any(c > ts for c in conversions[user]):
            stats[variant][1] += 1
    variants = [{"variant": v, "users": n, "conversions": c, "rate": _ratio(c, n)}
                for v, (n, c) in sorted(stats.items())]
    answer: dict[str, Any] = {"flag_key": flag_key, "variants": variants, "lift": None,
                              "z": None, "p_value": None, "significant": False}
    control = stats.get("control")
    others = [v for v in sorted(stats) if v != "control"]
    treatment = "test" if "test" in stats else (others[0] if others else None)
    if control is None or treatment is None:
        return answer
    n0, c0 = control
    n1, c1 = stats[treatment]
    p0, p1 = _ratio(c0, n0), _ratio(c1, n1)
    answer["lift"] = (p1 - p0) / p0 if p0 else None
    pooled = _ratio(c0 + c1, n0 + n1)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n0 + 1 / n1)) if n0 and n1 else 0.0
    z = (p1 - p0) / se if se else 0.0
    p_value = math.erfc(abs(z) / math.sqrt(2)) if se else 1.0
    answer.update({"z": z, "p_value": p_value, "significant": p_value < 0.05})
    return answer


def top_events(ds: Dataset, days: int = 7, limit: int = 10) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    users: dict[str, set[str]] = defaultdict(set)
    window = _window(ds, days)
    for e in window:
        counts[e.event] += 1
        users[e.event].add(e.distinct_id)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return {"total_events": len(window), "events": [
        {"event": name, "events": n, "users": len(users[name])} for name, n in ranked[:limit]]}


def property_breakdown(ds: Dataset, event: str = "$pageview", property: str = "$browser",
                       days: int = 30, limit: int = 10) -> dict[str, Any]:
    counts, users, total = _breakdown(ds, event, property, days)
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], _value_key(kv[0])))
    return {"total_events": total, "breakdown": [
        {"value": v, "events": n, "users": len(users[v]), "share": _ratio(n, total)}
        for v, n in rows[:limit]]}


def user_activity_timeline(ds: Dataset, distinct_id: str, days: int = 30,
                           limit: int = 100) -> dict[str, Any]:
    mine = [e for e in _window(ds, days) if e.distinct_id == distinct_id]
    mine.sort(key=lambda e: (-e.ts, e.event))
    by_event = Counter(e.event for e in mine)
    return {"distinct_id": distinct_id, "total_events": len(mine),
            "by_event": dict(sorted(by_event.items(), key=lambda kv: (-kv[1], kv[0]))),
            "events": [{"event": e.event, "timestamp": iso_ms(e.ts)} for e in mine[:limit]]}


def create_churn_cohort(ds: Dataset, cohort_name: str = "Churn risk", inactive_days: int = 14,
                        lookback_days: int = 60, min_events: int = 5) -> dict[str, Any]:
    churn = identify_churn_risk(ds, inactive_days, lookback_days, min_events, limit=0)
    # cohort_id is assigned by the server: on a fresh server it is 1 + the existing cohorts.
    return {"cohort_id": None, "name": cohort_name, "count": churn["at_risk_count"]}


def feature_flag_report(ds: Dataset, flag_key: str | None = None,
                        distinct_ids: list[str] | None = None) -> dict[str, Any]:
    flags = sorted((f for f in ds.flags if not f.get("deleted")
                    and (flag_key is None or f["key"] == flag_key)), key=lambda f: f["key"])
    props_of = {p["distinct_id"]: p["properties"] for p in ds.persons}
    report = [{"key": f["key"], "active": bool(f.get("active")),
               "rollout_percentage": rollout_percentage(f),
               "variants": [{"key": v["key"], "rollout_percentage": v.get("rollout_percentage")}
                            for v in variants_of(f)] or None} for f in flags]
    evaluations: dict[str, dict[str, dict[str, Any]]] = {}
    for did in distinct_ids or []:
        per_flag = {}
        for f in flags:
            if not f.get("active"):
                continue  # /flags only answers for active flags
            result = evaluate(f, did, props_of.get(did, {}))
            per_flag[f["key"]] = {"enabled": result.enabled, "variant": result.variant}
        evaluations[did] = per_flag
    return {"flags": report, "evaluations": evaluations}


def _parse_bound(value: str | int) -> int:
    if isinstance(value, int):
        return value
    return to_ms(parse_iso(value))


def export_events(ds: Dataset, start: str, end: str, event_names: list[str] | None = None,
                  format: str = "jsonl") -> dict[str, Any]:
    lo, hi = _parse_bound(start), _parse_bound(end)
    names = set(event_names or [])
    rows = [e for e in ds.events if lo <= e.ts < hi and (not names or e.event in names)]
    by_event = Counter(e.event for e in rows)
    return {"rows": len(rows), "by_event": dict(sorted(by_event.items())), "format": format}


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


def parse_param(name: str, raw: str, template: str) -> Any:
    """Turn a CLI `k=v` value into the parameter's type (JSON first, then by the default)."""
    func = TEMPLATES[template]
    param = inspect.signature(func).parameters.get(name)
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


def answer(ds: Dataset, template: str, params: dict[str, Any]) -> dict[str, Any]:
    if template not in TEMPLATES:
        raise KeyError(f"unknown template {template!r}; known: {', '.join(sorted(TEMPLATES))}")
    return TEMPLATES[template](ds, **params)


def default_cases(ds: Dataset) -> dict[str, list[dict[str, Any]]]:
    """The parameter sets stored in truths.json (the first of each list is the defaults)."""
    r = ds.reference_ms
    power = find_power_users(ds)["users"]
    churn = identify_churn_risk(ds)["users"]
    signups = [e.distinct_id for e in ds.events if e.event == "signed_up"
               and r - 30 * DAY_MS <= e.ts < r]
    sample_ids = [u["distinct_id"] for u in power[:1]] + [u["distinct_id"] for u in churn[:1]] \
        + signups[:1]
    week_ago = date_of_ms(r - 7 * DAY_MS)
    end = iso_ms(r)
    cases: dict[str, list[dict[str, Any]]] = {name: [{}] for name in TEMPLATES}
    cases["engagement_trend"] = [{}, {"interval": "week"}]
    cases["analyze_experiment"] = [{}, {"flag_key": "pricing-page-v2"}]
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
    for name, param in list(inspect.signature(TEMPLATES[template]).parameters.items())[1:]:
        if name in params:
            out[name] = params[name]
        elif param.default is not inspect.Parameter.empty:
            out[name] = list(DEFAULT_FUNNEL) if name == "steps" and param.default is None else param.default
    return out


def compute_all(ds: Dataset) -> dict[str, Any]:
    templates: dict[str, list[dict[str, Any]]] = {}
    for name, cases in default_cases(ds).items():
        templates[name] = [{"params": full_params(name, params), "answer": answer(ds, name, params)}
                           for params in cases]
    return {"reference_time": iso_ms(ds.reference_ms), "templates": templates}
