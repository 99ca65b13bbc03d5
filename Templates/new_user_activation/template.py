"""new_user_activation: of the new users who have had the full time, how many activated (Templates/SEMANTICS.md)."""
from posthog_driver import PostHogClient, emit, rows_of

SIGNUP_EVENT = {{ signup_event }}
ACTIVATION_EVENT = {{ activation_event }}
WITHIN_DAYS = {{ within_days }}
DAYS = {{ days }}

# Per new user (first signup ever inside the last DAYS local days): matured when signup + WITHIN_DAYS
# x 24 h has passed, and whether an activation falls in [signup, signup + WITHIN_DAYS x 24 h]. Only
# matured users are in the rate; the others are counted apart.
QUERY = """
    SELECT count() AS new_users,
           countIf(matured) AS matured_users,
           countIf(matured AND activations > 0) AS activated,
           countIf(NOT matured AND activations > 0) AS immature_activated
    FROM (
        SELECT s.distinct_id AS distinct_id,
               any(s.signup) + toIntervalSecond({within_seconds}) <= now() AS matured,
               countIf(a.timestamp >= s.signup AND a.timestamp <= s.signup + toIntervalSecond({within_seconds})) AS activations
        FROM (SELECT distinct_id, min(timestamp) AS signup FROM events
              WHERE event = {signup_event} AND timestamp < now() GROUP BY distinct_id) AS s
        LEFT JOIN (SELECT distinct_id, timestamp FROM events
                   WHERE event = {activation_event} AND timestamp < now()) AS a ON a.distinct_id = s.distinct_id
        WHERE s.signup >= toStartOfDay(now() - toIntervalSecond(1)) - toIntervalDay({back})
        GROUP BY s.distinct_id
    )
"""
values = {"signup_event": SIGNUP_EVENT, "activation_event": ACTIVATION_EVENT, "within_seconds": WITHIN_DAYS * 86400,
          "back": DAYS - 1}

with PostHogClient() as client:
    clock = client.get_time_settings()
    row = (rows_of(client.query(QUERY, values=values)) or [{}])[0]

new_users, matured = int(row.get("new_users") or 0), int(row.get("matured_users") or 0)
activated = int(row.get("activated") or 0)
emit({
    "new_users": new_users,
    "matured_users": matured,
    "activated": activated,
    "activation_rate": activated / matured if matured else 0.0,
    "immature_users": new_users - matured,
    "immature_activated": int(row.get("immature_activated") or 0),
    "timezone": clock["timezone"],
    "week_start": clock["week_start"],
    "parameters": {"signup_event": SIGNUP_EVENT, "activation_event": ACTIVATION_EVENT, "within_days": WITHIN_DAYS, "days": DAYS},
})
