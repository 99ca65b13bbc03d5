"""feature_flag_report: every flag's condition groups in PostHog's evaluation order, its reach over the
users of a window, and what given users get (Templates/SEMANTICS.md)."""
import hashlib
import json
import re

from posthog_driver import PostHogClient, emit, rows_of

FLAG_KEY = {{ flag_key }}
DISTINCT_IDS = {{ distinct_ids }}
DAYS = {{ days }}
PAGE = 50000  # users per query (PostHog caps LIMIT at 50,000): more are read page by page
LONG_SCALE = float(0xFFFFFFFFFFFFFFF)

# The persons the report covers: users with an event in the last DAYS local days, with their person's
# properties (what /flags evaluates conditions on), paged by keyset.
COVERED = """
    SELECT distinct_id, any(person.properties) AS properties
    FROM events
    WHERE timestamp >= toStartOfDay(now() - toIntervalSecond(1)) - toIntervalDay({back}) AND timestamp < now()
      AND distinct_id > {after}
    GROUP BY distinct_id
    ORDER BY distinct_id
    LIMIT {page}
"""


# --- PostHog's flag evaluation (posthog/models/feature_flag/flag_matching.py), done locally -----------

def bucket(key, distinct_id, salt=""):
    """PostHog's hash of a flag and a user: the first 15 hex digits of sha1, scaled to [0, 1)."""
    return int(hashlib.sha1(("%s.%s%s" % (key, distinct_id, salt)).encode("utf-8")).hexdigest()[:15], 16) / LONG_SCALE


def number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def condition_holds(condition, properties):
    """One person-property condition, with PostHog's operators (a missing property never matches,
    except for is_not_set)."""
    key, operator, expected = condition.get("key"), condition.get("operator") or "exact", condition.get("value")
    if operator == "is_not_set":
        return key not in properties
    if key not in properties:
        return False
    actual = properties[key]
    if operator == "is_set":
        return True
    if operator in ("exact", "is_not"):
        hit = str(actual).lower() in [str(e).lower() for e in (expected if isinstance(expected, list) else [expected])]
        return hit if operator == "exact" else not hit
    if operator in ("icontains", "not_icontains"):
        hit = str(expected).lower() in str(actual).lower()
        return hit if operator == "icontains" else not hit
    if operator in ("regex", "not_regex"):
        try:
            hit = re.search(str(expected), str(actual)) is not None
        except re.error:
            return False
        return hit if operator == "regex" else not hit
    if operator in ("gt", "gte", "lt", "lte"):
        left, right = number(actual), number(expected)
        if left is None or right is None:
            left, right = str(actual), str(expected)
        return {"gt": left > right, "gte": left >= right, "lt": left < right, "lte": left <= right}[operator]
    return False


def evaluation_order(groups):
    """Groups with a variant override first, then the others, each in listed order."""
    return [i for i, g in enumerate(groups) if g.get("variant")] + [i for i, g in enumerate(groups) if not g.get("variant")]


def evaluate(flag, distinct_id, properties):
    """(enabled, variant, the group that matched) for one user, as /flags decides it."""
    if not flag.get("active") or flag.get("deleted"):
        return False, None, None
    filters = flag.get("filters") or {}
    groups = filters.get("groups") or []
    variants = (filters.get("multivariate") or {}).get("variants") or []
    keys = [str(v["key"]) for v in variants]
    for index in evaluation_order(groups):
        group = groups[index]
        if not all(condition_holds(c, properties) for c in group.get("properties") or []):
            continue
        rollout = group.get("rollout_percentage")
        if bucket(flag["key"], distinct_id) >= (100.0 if rollout is None else float(rollout)) / 100.0:
            continue
        variant = group.get("variant") if group.get("variant") in keys else None
        if variant is None and variants:
            value, low = bucket(flag["key"], distinct_id, "variant"), 0.0
            for v in variants:
                high = low + float(v.get("rollout_percentage") or 0) / 100.0
                if low <= value < high:
                    variant = str(v["key"])
                    break
                low = high
        return True, variant, index
    return False, None, None


def locally_evaluable(flag):
    """Person-property conditions only: cohorts and groups need PostHog's own data."""
    groups = (flag.get("filters") or {}).get("groups") or []
    return all((c.get("type") or "person") == "person" for g in groups for c in g.get("properties") or [])


with PostHogClient() as client:
    clock = client.get_time_settings()
    # The flag list (the driver follows pagination); with flag_key, PostHog's search narrows it and
    # the exact key is kept.
    listed = client.get_feature_flags(search=FLAG_KEY)
    flags = sorted((f for f in listed if not f.get("deleted") and (FLAG_KEY is None or f.get("key") == FLAG_KEY)),
                   key=lambda f: f["key"])
    covered = []
    values = {"back": DAYS - 1, "after": "", "page": PAGE}
    while flags:
        page = rows_of(client.query(COVERED, values=values))
        covered.extend((r["distinct_id"], json.loads(r["properties"] or "{}")) for r in page)
        if len(page) < PAGE:
            break
        values["after"] = page[-1]["distinct_id"]
    active = [f["key"] for f in flags if f.get("active")]
    evaluations = {}
    for distinct_id in DISTINCT_IDS:
        # One /flags?v=2 call per user evaluates every active flag at once, as an SDK would.
        answer = client.evaluate_flags(distinct_id, flag_keys=active) if active else {}
        evaluations[distinct_id] = {key: {"enabled": bool((answer.get(key) or {}).get("enabled")),
                                          "variant": (answer.get(key) or {}).get("variant")} for key in active}

report = []
for flag in flags:
    filters = flag.get("filters") or {}
    groups = filters.get("groups") or []
    variants = (filters.get("multivariate") or {}).get("variants") or []
    reach = None
    if locally_evaluable(flag):
        enabled, by_variant, by_group = 0, {str(v["key"]): 0 for v in variants}, [0] * len(groups)
        for distinct_id, properties in covered:
            on, variant, index = evaluate(flag, distinct_id, properties)
            if on:
                enabled += 1
                by_group[index] += 1
                if variant is not None:
                    by_variant[variant] += 1
        reach = {"persons": len(covered), "enabled": enabled, "share": enabled / len(covered) if covered else 0.0,
                 "by_variant": by_variant if variants else None, "by_group": by_group}
    report.append({
        "key": flag["key"],
        "active": bool(flag.get("active")),
        "groups": [{"properties": g.get("properties") or [],
                    "rollout_percentage": None if g.get("rollout_percentage") is None else float(g["rollout_percentage"]),
                    "variant": g.get("variant")} for g in groups],
        "evaluation_order": evaluation_order(groups),
        "variants": [{"key": v["key"], "rollout_percentage": v.get("rollout_percentage")} for v in variants] or None,
        "reach": reach,
    })

emit({
    "flags": report,
    "evaluations": evaluations,
    "reach_days": DAYS,
    "timezone": clock["timezone"],
    "week_start": clock["week_start"],
    "parameters": {"flag_key": FLAG_KEY, "distinct_ids": DISTINCT_IDS, "days": DAYS},
})
