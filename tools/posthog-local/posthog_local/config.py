"""Keys, project id and scopes: from the environment, with demo defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEMO_PERSONAL_KEY = "phx_demo_personal_key"
DEMO_PROJECT_KEY = "phc_demo_project_key"
DEMO_PROJECT_ID = "1"

READ_SCOPES = frozenset({
    "query:read", "insight:read", "cohort:read", "person:read", "feature_flag:read",
    "experiment:read", "event_definition:read", "property_definition:read", "project:read",
    "user:read", "organization:read",
})
ALL_SCOPES = READ_SCOPES | {s.replace(":read", ":write") for s in READ_SCOPES}


def mask(key: str) -> str:
    """Enough of a key to recognise it, never all of it: `phx_demo…`."""
    if not key:
        return "(none)"
    shown = 8 if len(key) > 12 else max(1, min(4, len(key) - 2))
    return key[:shown] + "…"


@dataclass(frozen=True)
class Settings:
    personal_key: str = DEMO_PERSONAL_KEY
    project_key: str = DEMO_PROJECT_KEY
    project_id: int = 1
    readonly_key: str | None = None
    project_name: str = "posthog-local demo"
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        raw_id = env.get("POSTHOG_PROJECT_ID") or DEMO_PROJECT_ID
        try:
            project_id = int(raw_id)
        except ValueError as err:
            raise ValueError("POSTHOG_PROJECT_ID must be a number") from err
        return cls(
            personal_key=env.get("POSTHOG_PERSONAL_API_KEY") or DEMO_PERSONAL_KEY,
            project_key=env.get("POSTHOG_PROJECT_API_KEY") or DEMO_PROJECT_KEY,
            project_id=project_id,
            readonly_key=env.get("POSTHOG_LOCAL_READONLY_KEY") or None,
        )

    def scopes_for(self, key: str) -> frozenset[str] | None:
        """The scopes of a personal key, or None when the key is not one of ours."""
        if key == self.personal_key:
            return ALL_SCOPES
        if self.readonly_key and key == self.readonly_key:
            return READ_SCOPES
        return None
