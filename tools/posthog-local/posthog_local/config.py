"""Keys, project id and scopes: from the environment, with demo defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEMO_PERSONAL_KEY = "phx_demo_personal_key"
DEMO_PROJECT_KEY = "phc_demo_project_key"
DEMO_PROJECT_ID = "1"
DEMO_NY_PROJECT_KEY = "phc_demo_ny_project_key"
NY_TIMEZONE = "America/New_York"

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
class Project:
    """A PostHog project (team): its id, project API key and settings. Both demo projects read
    the same dataset; they differ in keys and in how time is shown and bucketed."""

    id: int
    name: str
    project_key: str
    timezone: str = "UTC"
    week_start_day: int = 1  # PostHog's WeekStartDay: 0 Sunday, 1 Monday


@dataclass(frozen=True)
class Settings:
    personal_key: str = DEMO_PERSONAL_KEY
    project_key: str = DEMO_PROJECT_KEY
    project_id: int = 1
    readonly_key: str | None = None
    project_name: str = "posthog-local demo"
    ny_project_id: int = 2
    ny_project_key: str = DEMO_NY_PROJECT_KEY
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        raw_id = env.get("POSTHOG_PROJECT_ID") or DEMO_PROJECT_ID
        try:
            project_id = int(raw_id)
        except ValueError as err:
            raise ValueError("POSTHOG_PROJECT_ID must be a number") from err
        raw_ny = env.get("POSTHOG_LOCAL_NY_PROJECT_ID") or str(project_id + 1)
        try:
            ny_id = int(raw_ny)
        except ValueError as err:
            raise ValueError("POSTHOG_LOCAL_NY_PROJECT_ID must be a number") from err
        if ny_id == project_id:
            raise ValueError("POSTHOG_LOCAL_NY_PROJECT_ID must differ from POSTHOG_PROJECT_ID")
        return cls(
            personal_key=env.get("POSTHOG_PERSONAL_API_KEY") or DEMO_PERSONAL_KEY,
            project_key=env.get("POSTHOG_PROJECT_API_KEY") or DEMO_PROJECT_KEY,
            project_id=project_id,
            readonly_key=env.get("POSTHOG_LOCAL_READONLY_KEY") or None,
            ny_project_id=ny_id,
            ny_project_key=env.get("POSTHOG_LOCAL_NY_PROJECT_API_KEY") or DEMO_NY_PROJECT_KEY,
        )

    @property
    def projects(self) -> dict[int, Project]:
        """The primary demo project (UTC, weeks from Monday) and the New York one (America/New_York,
        weeks from Sunday)."""
        return {
            self.project_id: Project(self.project_id, self.project_name, self.project_key, "UTC", 1),
            self.ny_project_id: Project(self.ny_project_id, f"{self.project_name} (New York)", self.ny_project_key,
                                        NY_TIMEZONE, 0),
        }

    @property
    def project_keys(self) -> frozenset[str]:
        return frozenset(p.project_key for p in self.projects.values())

    def scopes_for(self, key: str) -> frozenset[str] | None:
        """The scopes of a personal key, or None when the key is not one of ours."""
        if key == self.personal_key:
            return ALL_SCOPES
        if self.readonly_key and key == self.readonly_key:
            return READ_SCOPES
        return None
