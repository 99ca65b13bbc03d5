"""new_user_activation: how many new users reach an activation event in time (Templates/SEMANTICS.md)."""
from posthog_driver import PostHogClient, emit, rows_of

SIGNUP_EVENT = {{ signup_event }}
ACTIVATION_EVENT = {{ activation_event }}
WITHIN_DAYS = {{ within_days }}
DAYS = {{ days }}

# Per new user: first signup ever, and whether an activation falls in [signup, signup + within_days].
QUERY = """
    SELECT count() AS new_users, countIf(activations > 0) AS activated
    FROM (
        SELECT s.distinct_id AS distinct_id,
               countIf(a.timestamp >= s.signup AND a.timestamp <= s.signup + toIntervalDay({within_days})) AS activations
        FROM (SELECT distinct_id, min(timestamp) AS signup FROM events
              WHERE event = {signup_event} AND timestamp < now() GROUP BY distinct_id) AS s
        LEFT JOIN (SELECT distinct_id, timestamp FROM events
                   WHERE event = {activation_event} AND timestamp < now()) AS a ON a.distinct_id = s.distinct_id
        WHERE s.signup >= now() - toIntervalDay({days})
        GROUP BY s.distinct_id
    )
"""
values = {"signup_event": SIGNUP_EVENT, "activation_event": ACTIVATION_EVENT, "within_days": WITHIN_DAYS, "days": DAYS}

with PostHogClient() as client:
    row = (rows_of(client.query(QUERY, values=values)) or [{"new_users": 0, "activated": 0}])[0]

new_users, activated = int(row["new_users"]), int(row["activated"])
emit({
    "new_users": new_users,
    "activated": activated,
    "activation_rate": activated / new_users if new_users else 0.0,
    "parameters": {"signup_event": SIGNUP_EVENT, "activation_event": ACTIVATION_EVENT, "within_days": WITHIN_DAYS, "days": DAYS},
})
