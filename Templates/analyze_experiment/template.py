"""analyze_experiment: PostHog's experiment result for a conversion metric: exposures since the start,
every variant against control, frequentist and Bayesian (Templates/SEMANTICS.md)."""
import math
from statistics import NormalDist

from posthog_driver import PostHogClient, emit, rows_of

FLAG_KEY = {{ flag_key }}
CONVERSION_EVENT = {{ conversion_event }}
START_DATE = {{ start_date }}
CONVERSION_WINDOW_DAYS = {{ conversion_window_days }}
MULTIPLE = "$multiple"  # PostHog's key for users exposed to more than one variant (excluded)
NOT_A_VARIANT = "$non_variant"  # our key for the count of exposures whose response is no variant
NO_WINDOW_SECONDS = 3 * 365 * 86400  # PostHog's experiment funnels without a conversion window
MIN_EXPOSURES, MIN_CONVERSIONS, ALPHA, CI_LEVEL = 50, 5, 0.05, 0.95  # PostHog's rules and defaults


def fail(message):
    raise SystemExit("sandbox-runner-error: " + message)


def instant(text):
    """A time from the API or a variable, as one canonical UTC text (microseconds)."""
    import datetime

    moment = datetime.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


with PostHogClient() as client:
    clock = client.get_time_settings()
    # The experiment: the newest non-archived one on this flag (its start, end and variants).
    mine = [x for x in client.get_experiments() if x.get("feature_flag_key") == FLAG_KEY and not x.get("archived")]
    experiment = max(mine, key=lambda x: int(x["id"])) if mine else None
    start = START_DATE or (experiment or {}).get("start_date")
    if not start:
        fail("No experiment uses the flag %s and no start_date was given: pass start_date, when the experiment "
             "started." % FLAG_KEY)
    start = instant(start)
    end = (experiment or {}).get("end_date")
    end = instant(end) if end else None
    variants = [str(v["key"]) for v in ((experiment or {}).get("parameters") or {}).get("feature_flag_variants") or []]
    if not variants:
        flag = next((f for f in client.get_feature_flags(search=FLAG_KEY) if f.get("key") == FLAG_KEY), None)
        multivariate = ((flag or {}).get("filters") or {}).get("multivariate") or {}
        variants = [str(v["key"]) for v in multivariate.get("variants") or []]
    if not variants:
        fail("The flag %s has no variants to compare: an experiment needs a multivariate flag." % FLAG_KEY)

    # The experiment's range: from its start to its end, or to now while it runs. The query text is
    # chosen between two fixed forms; every value is a placeholder.
    in_range = "timestamp >= toDateTime({start}) AND " + ("timestamp <= toDateTime({end})" if end else "timestamp < now()")
    # Per exposed user: their variant (or $multiple when they saw several), and whether a conversion in
    # the range came at or after one of their exposures and within the conversion window of it (PostHog's
    # funnel metric: exposure, then the conversion event). The last row counts the exposures whose
    # response is not a variant (false, missing): they are ignored.
    query = """
      SELECT variant, users, conversions FROM (
        SELECT variant, count() AS users, countIf(converted > 0) AS conversions
        FROM (
            SELECT x.distinct_id AS distinct_id,
                   if(count(DISTINCT x.response) > 1, {multiple}, any(x.response)) AS variant,
                   countIf(c.timestamp >= x.timestamp AND c.timestamp <= x.timestamp + toIntervalSecond({window})) AS converted
            FROM (
                SELECT distinct_id, timestamp, properties.$feature_flag_response AS response
                FROM events
                WHERE event = '$feature_flag_called' AND properties.$feature_flag = {flag_key}
                  AND properties.$feature_flag_response IN {variants} AND """ + in_range + """
            ) AS x
            LEFT JOIN (
                SELECT distinct_id, timestamp FROM events WHERE event = {conversion_event} AND """ + in_range + """
            ) AS c ON c.distinct_id = x.distinct_id
            GROUP BY x.distinct_id
        )
        GROUP BY variant
        UNION ALL
        SELECT {not_a_variant} AS variant, count() AS users, 0 AS conversions
        FROM events
        WHERE event = '$feature_flag_called' AND properties.$feature_flag = {flag_key}
          AND NOT has({variants}, ifNull(properties.$feature_flag_response, '')) AND """ + in_range + """
      )
      LIMIT 1000
    """
    values = {"flag_key": FLAG_KEY, "conversion_event": CONVERSION_EVENT, "variants": variants, "start": start,
              "multiple": MULTIPLE, "not_a_variant": NOT_A_VARIANT,
              "window": (CONVERSION_WINDOW_DAYS or 0) * 86400 or NO_WINDOW_SECONDS}
    if end:
        values["end"] = end
    counted = {str(r["variant"]): (int(r["users"]), int(r["conversions"])) for r in rows_of(client.query(query, values=values))}


# --- PostHog's statistics (products/experiments/stats), in closed form -----------------------------------

def beta_fraction(a, b, x):
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-16:
            break
    return h


def incomplete_beta(a, b, x):
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * beta_fraction(a, b, x) / a
    return 1.0 - front * beta_fraction(b, a, 1 - x) / b


def t_cdf(t, df):
    """Student's t distribution function."""
    tail = 0.5 * incomplete_beta(df / 2, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p, df):
    """The inverse of t_cdf for p > 0.5, by bisection (deterministic, to the last bit)."""
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        low, high = (middle, high) if t_cdf(middle, df) < p else (low, middle)
    return (low + high) / 2


def compare(control, treatment):
    """One variant against control: PostHog's relative lift, its delta-method variance, Welch's t-test
    (frequentist) and the Gaussian posterior of a non-informative prior (Bayesian)."""
    (n_c, x_c), (n_t, x_t) = control, treatment
    p_c, p_t = x_c / n_c, x_t / n_t
    var_c, var_t = p_c * (1 - p_c), p_t * (1 - p_t)
    lift = (p_t - p_c) / p_c
    se = math.sqrt(var_t / (n_t * p_c ** 2) + p_t ** 2 * var_c / (n_c * p_c ** 4))
    a, b = var_t / n_t, var_c / n_c
    df = (a + b) ** 2 / (a ** 2 / (n_t - 1) + b ** 2 / (n_c - 1))
    p_value = 2 * (1 - t_cdf(abs(lift / se), df))
    t_crit = t_quantile(1 - ALPHA / 2, df)
    z_crit = NormalDist().inv_cdf(1 - (1 - CI_LEVEL) / 2)
    chance = NormalDist().cdf(lift / se)  # P(lift > 0)
    return lift, se, {
        "method": "Welch's t-test on the relative difference (two-sided, alpha 0.05)",
        "lift": lift, "p_value": p_value, "confidence_interval": [lift - t_crit * se, lift + t_crit * se],
        "significant": p_value < ALPHA,
    }, {
        "method": "Gaussian posterior of the relative difference, non-informative prior",
        "chance_to_win": chance, "credible_interval": [lift - z_crit * se, lift + z_crit * se],
        "significant": chance > CI_LEVEL or chance < 1 - CI_LEVEL,
    }


def probability_best(effects):
    """P(each arm is best), control's lift being 0 and each variant's lift ~ Normal(lift, se) on its own:
    control when every lift is below 0; a variant when its lift is above 0 and above the others'
    (Simpson's rule over +-12 standard deviations: deterministic)."""
    out = {"control": math.prod(NormalDist(m, s).cdf(0) for m, s in effects.values())}
    for key, (m, s) in effects.items():
        others = [NormalDist(mo, so) for k, (mo, so) in effects.items() if k != key]
        own = NormalDist(m, s)
        low, high = max(0.0, m - 12 * s), m + 12 * s
        if high <= low:
            out[key] = 0.0
            continue
        steps = 20000
        h = (high - low) / steps
        total = 0.0
        for i in range(steps + 1):
            x = low + i * h
            weight = 1 if i in (0, steps) else (4 if i % 2 else 2)
            total += weight * own.pdf(x) * math.prod(d.cdf(x) for d in others)
        out[key] = total * h / 3
    return out


users = {v: counted.get(v, (0, 0))[0] for v in variants}
conversions = {v: counted.get(v, (0, 0))[1] for v in variants}


def failures(key):
    """PostHog's minimum-sample rule (validate_variant_result)."""
    out = []
    if users[key] < MIN_EXPOSURES:
        out.append("not-enough-exposures")
    if conversions[key] < MIN_CONVERSIONS:
        out.append("not-enough-metric-data")
    if key == "control" and conversions[key] == 0:
        out.append("baseline-mean-is-zero")
    return out


ordered = (["control"] if "control" in variants else []) + [v for v in variants if v != "control"]
control_ok = "control" in variants and not failures("control")
comparisons, effects = [], {}
for variant in ordered[1 if "control" in variants else 0:]:
    entry = {"variant": variant, "baseline": "control", "frequentist": None, "bayesian": None}
    if control_ok and not failures(variant):
        lift, se, entry["frequentist"], entry["bayesian"] = compare(
            (users["control"], conversions["control"]), (users[variant], conversions[variant]))
        effects[variant] = (lift, se)
    comparisons.append(entry)

emit({
    "flag_key": FLAG_KEY,
    "experiment_id": int(experiment["id"]) if experiment else None,
    "start": start,
    "end": end,
    "conversion_event": CONVERSION_EVENT,
    "conversion_window_days": CONVERSION_WINDOW_DAYS,
    "variants": [{"variant": v, "users": users[v], "conversions": conversions[v],
                  "rate": conversions[v] / users[v] if users[v] else 0.0, "validation_failures": failures(v)}
                 for v in ordered],
    "excluded_multiple_variant_users": counted.get(MULTIPLE, (0, 0))[0],
    "non_variant_exposures": counted.get(NOT_A_VARIANT, (0, 0))[0],
    "comparisons": comparisons,
    "probability_best": probability_best(effects) if effects else None,
    "timezone": clock["timezone"],
    "week_start": clock["week_start"],
    "parameters": {"flag_key": FLAG_KEY, "conversion_event": CONVERSION_EVENT, "start_date": START_DATE,
                   "conversion_window_days": CONVERSION_WINDOW_DAYS},
})
