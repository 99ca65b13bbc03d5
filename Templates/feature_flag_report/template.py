"""feature_flag_report: flags, rollout, and what given users get (Templates/SEMANTICS.md)."""
from posthog_driver import PostHogClient, emit

FLAG_KEY = {{ flag_key }}
DISTINCT_IDS = {{ distinct_ids }}


def rollout(flag):
    """The first condition group's rollout percentage (None: no condition groups)."""
    groups = (flag.get("filters") or {}).get("groups") or []
    value = groups[0].get("rollout_percentage") if groups else None
    return None if value is None else float(value)


def variants(flag):
    """The multivariate split, or None for a boolean flag."""
    multivariate = (flag.get("filters") or {}).get("multivariate") or {}
    return [{"key": v["key"], "rollout_percentage": v.get("rollout_percentage")}
            for v in multivariate.get("variants") or []] or None


with PostHogClient() as client:
    # The flag list (the driver follows pagination); with flag_key, PostHog's search narrows it and
    # the exact key is kept.
    listed = client.get_feature_flags(search=FLAG_KEY)
    flags = sorted((f for f in listed if not f.get("deleted") and (FLAG_KEY is None or f.get("key") == FLAG_KEY)),
                   key=lambda f: f["key"])
    active = [f["key"] for f in flags if f.get("active")]
    evaluations = {}
    for distinct_id in DISTINCT_IDS:
        # One /flags?v=2 call per user evaluates every active flag at once, as an SDK would.
        answer = client.evaluate_flags(distinct_id, flag_keys=active) if active else {}
        evaluations[distinct_id] = {key: {"enabled": bool((answer.get(key) or {}).get("enabled")),
                                          "variant": (answer.get(key) or {}).get("variant")} for key in active}

emit({
    "flags": [{"key": f["key"], "active": bool(f.get("active")), "rollout_percentage": rollout(f), "variants": variants(f)}
              for f in flags],
    "evaluations": evaluations,
    "parameters": {"flag_key": FLAG_KEY, "distinct_ids": DISTINCT_IDS},
})
