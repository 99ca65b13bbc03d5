"""analyze_experiment: conversion per variant, lift and a two-proportion z-test (Templates/SEMANTICS.md)."""
import math

from posthog_driver import PostHogClient, emit, rows_of

FLAG_KEY = {{ flag_key }}
CONVERSION_EVENT = {{ conversion_event }}
DAYS = {{ days }}

# Each user's first exposure in the window (its variant), then whether a conversion followed it.
QUERY = """
    SELECT x.variant AS variant, count() AS users, countIf(c.converted_at > x.exposed_at) AS conversions
    FROM (
        SELECT distinct_id, min(timestamp) AS exposed_at,
               argMin(properties['$feature_flag_response'], timestamp) AS variant
        FROM events
        WHERE event = '$feature_flag_called' AND properties['$feature_flag'] = {flag_key}
          AND timestamp >= now() - toIntervalDay({days}) AND timestamp < now()
        GROUP BY distinct_id
    ) AS x
    LEFT JOIN (
        SELECT distinct_id, max(timestamp) AS converted_at FROM events
        WHERE event = {conversion_event} AND timestamp < now() GROUP BY distinct_id
    ) AS c ON c.distinct_id = x.distinct_id
    GROUP BY variant ORDER BY variant LIMIT 100
"""
values = {"flag_key": FLAG_KEY, "conversion_event": CONVERSION_EVENT, "days": DAYS}

with PostHogClient() as client:
    rows = rows_of(client.query(QUERY, values=values))

stats = {str(r["variant"]): (int(r["users"]), int(r["conversions"])) for r in rows}
answer = {
    "flag_key": FLAG_KEY,
    "variants": [{"variant": v, "users": n, "conversions": c, "rate": c / n if n else 0.0} for v, (n, c) in sorted(stats.items())],
    "lift": None, "z": None, "p_value": None, "significant": False,
}
others = [v for v in sorted(stats) if v != "control"]
treatment = "test" if "test" in stats else (others[0] if others else None)
if "control" in stats and treatment is not None:
    (n0, c0), (n1, c1) = stats["control"], stats[treatment]
    p0, p1 = (c0 / n0 if n0 else 0.0), (c1 / n1 if n1 else 0.0)
    pooled = (c0 + c1) / (n0 + n1) if n0 + n1 else 0.0
    se = math.sqrt(pooled * (1 - pooled) * (1 / n0 + 1 / n1)) if n0 and n1 else 0.0
    z = (p1 - p0) / se if se else 0.0
    p_value = math.erfc(abs(z) / math.sqrt(2)) if se else 1.0
    answer.update({"lift": (p1 - p0) / p0 if p0 else None, "z": z, "p_value": p_value, "significant": p_value < 0.05})
answer["parameters"] = {"flag_key": FLAG_KEY, "conversion_event": CONVERSION_EVENT, "days": DAYS}
emit(answer)
