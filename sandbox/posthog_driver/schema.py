"""What `list_objects()` names and `get_fields()` starts from: PostHog's HogQL tables and the API
resources the driver reads. Types are PostHog's names (HogQL for tables, JSON for API fields)."""
from __future__ import annotations

OBJECTS: dict[str, dict[str, str]] = {
    # HogQL tables (client.query)
    "events": {"uuid": "UUID", "event": "String", "properties": "JSON", "timestamp": "DateTime",
               "distinct_id": "String", "person_id": "UUID", "elements_chain": "String",
               "created_at": "DateTime", "$session_id": "String", "person.properties": "JSON"},
    "persons": {"id": "UUID", "created_at": "DateTime", "properties": "JSON", "is_identified": "Boolean"},
    "person_distinct_ids": {"distinct_id": "String", "person_id": "UUID"},
    "cohort_people": {"cohort_id": "Integer", "person_id": "UUID"},
    # API resources (get_cohorts, get_insights, …)
    "cohorts": {"id": "Integer", "name": "String", "description": "String", "is_static": "Boolean",
                "count": "Integer", "filters": "JSON", "is_calculating": "Boolean", "created_at": "DateTime"},
    "insights": {"id": "Integer", "short_id": "String", "name": "String", "description": "String",
                 "query": "JSON", "result": "JSON", "created_at": "DateTime", "last_modified_at": "DateTime"},
    "feature_flags": {"id": "Integer", "key": "String", "name": "String", "active": "Boolean",
                      "filters": "JSON", "rollout_percentage": "Integer", "created_at": "DateTime"},
    "experiments": {"id": "Integer", "name": "String", "description": "String", "feature_flag_key": "String",
                    "start_date": "DateTime", "end_date": "DateTime", "parameters": "JSON", "metrics": "JSON"},
    "event_definitions": {"name": "String", "volume_30_day": "Integer", "last_seen_at": "DateTime"},
    "property_definitions": {"name": "String", "property_type": "String", "is_numerical": "Boolean"},
}

# Tables whose `properties` are described by property definitions of this type.
PROPERTY_TYPES = {"events": "event", "persons": "person"}
