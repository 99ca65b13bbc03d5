"""PostHog feature flag evaluation: deterministic hashing, rollout, variants, person properties."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

LONG_SCALE = float(0xFFFFFFFFFFFFFFF)


def flag_hash(key: str, distinct_id: str, salt: str = "") -> float:
    """PostHog's hash: first 15 hex digits of sha1("key.distinct_id" + salt) scaled to [0, 1)."""
    digest = hashlib.sha1(f"{key}.{distinct_id}{salt}".encode("utf-8")).hexdigest()
    return int(digest[:15], 16) / LONG_SCALE


def variants_of(flag: dict[str, Any]) -> list[dict[str, Any]]:
    multivariate = (flag.get("filters") or {}).get("multivariate") or {}
    return list(multivariate.get("variants") or [])


def matching_variant(flag: dict[str, Any], distinct_id: str) -> str | None:
    """The variant PostHog assigns: the variant hash against cumulative percentages."""
    variants = variants_of(flag)
    if not variants:
        return None
    value = flag_hash(str(flag["key"]), distinct_id, salt="variant")
    low = 0.0
    for variant in variants:
        high = low + float(variant.get("rollout_percentage") or 0) / 100.0
        if low <= value < high:
            return str(variant["key"])
        low = high
    return None


@dataclass
class FlagResult:
    key: str
    enabled: bool
    variant: str | None
    reason_code: str
    condition_index: int | None
    description: str
    payload: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def value(self) -> bool | str:
        if not self.enabled:
            return False
        return self.variant if self.variant is not None else True


def _as_number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def property_matches(prop: dict[str, Any], properties: dict[str, Any]) -> bool:
    """One person-property condition (PostHog operators; a missing property never matches)."""
    key = prop.get("key")
    operator = prop.get("operator") or "exact"
    expected = prop.get("value")
    if operator == "is_not_set":
        return key not in properties
    if key not in properties:
        return False
    actual = properties[key]
    if operator == "is_set":
        return True
    if operator in ("exact", "is_not"):
        candidates = expected if isinstance(expected, list) else [expected]
        hit = any(str(c).lower() == str(actual).lower() for c in candidates)
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
        left, right = _as_number(actual), _as_number(expected)
        if left is None or right is None:
            left_s, right_s = str(actual), str(expected)
            return {"gt": left_s > right_s, "gte": left_s >= right_s,
                    "lt": left_s < right_s, "lte": left_s <= right_s}[operator]
        return {"gt": left > right, "gte": left >= right,
                "lt": left < right, "lte": left <= right}[operator]
    return False


def evaluate(flag: dict[str, Any], distinct_id: str,
             person_properties: dict[str, Any] | None = None) -> FlagResult:
    """Evaluate one flag for one user the way PostHog's /flags does."""
    key = str(flag["key"])
    props = person_properties or {}
    if not flag.get("active", True) or flag.get("deleted"):
        return FlagResult(key, False, None, "disabled", None, "Feature flag is disabled")
    filters = flag.get("filters") or {}
    # No condition groups: nothing to match (flag_matching.py iterates the flag's conditions).
    groups = filters.get("groups") or []
    payloads = filters.get("payloads") or {}
    saw_property_match = False
    out_of_rollout_index: int | None = None
    valid_variants = [str(v.get("key")) for v in variants_of(flag)]
    # PostHog (posthog/models/feature_flag/flag_matching.py): a stable sort puts the condition
    # groups with a variant override first; the reason keeps each group's own index.
    ordered = sorted(enumerate(groups), key=lambda pair: 0 if pair[1].get("variant") else 1)
    for index, group in ordered:
        conditions = group.get("properties") or []
        if not all(property_matches(c, props) for c in conditions
                   if c.get("type", "person") == "person"):
            continue
        if any(c.get("type", "person") != "person" for c in conditions):
            continue
        saw_property_match = True
        rollout = group.get("rollout_percentage")
        rollout = 100.0 if rollout is None else float(rollout)
        if flag_hash(key, distinct_id) > rollout / 100.0:  # flag_matching.py: out when hash > rollout / 100
            if out_of_rollout_index is None:
                out_of_rollout_index = index
            continue
        override = group.get("variant")
        variant = override if override in valid_variants else matching_variant(flag, distinct_id)
        payload_key = variant if variant is not None else "true"
        return FlagResult(key, True, variant, "condition_match", index,
                          f"Matched condition set {index + 1}", payloads.get(payload_key))
    if saw_property_match and out_of_rollout_index is not None:
        return FlagResult(key, False, None, "out_of_rollout_bound", out_of_rollout_index,
                          f"Out of rollout bound for condition set {out_of_rollout_index + 1}")
    # PostHog reports the highest-priority reason seen with its index, starting from index 0.
    return FlagResult(key, False, None, "no_condition_match", 0, "No matching condition set")


def rollout_percentage(flag: dict[str, Any]) -> float | None:
    """The first condition group's rollout (None means 100 in PostHog)."""
    groups = (flag.get("filters") or {}).get("groups") or []
    if not groups:
        return None
    value = groups[0].get("rollout_percentage")
    return None if value is None else float(value)
