"""Where PostHog is and which keys to use, from the environment or explicit arguments."""
from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import ValidationError

HOSTS = {"us": "https://us.posthog.com", "eu": "https://eu.posthog.com"}
INGEST = {"https://us.posthog.com": "https://us.i.posthog.com", "https://app.posthog.com": "https://us.i.posthog.com",
          "https://eu.posthog.com": "https://eu.i.posthog.com"}


@dataclass(frozen=True)
class Settings:
    api_url: str
    ingest_url: str
    personal_api_key: str | None
    project_api_key: str | None
    project_id: str
    timeout: float = 30.0
    max_retries: int = 4
    max_retry_wait: float = 30.0

    def __repr__(self) -> str:  # never show keys
        return f"Settings(api_url={self.api_url!r}, ingest_url={self.ingest_url!r}, project_id={self.project_id!r})"

    @staticmethod
    def resolve(api_url: str | None = None, personal_api_key: str | None = None, project_api_key: str | None = None,
                project_id: str | int | None = None, ingest_url: str | None = None, timeout: float | None = None,
                max_retries: int | None = None, max_retry_wait: float | None = None) -> "Settings":
        env = os.environ
        url = (api_url or env.get("POSTHOG_API_URL") or env.get("POSTHOG_HOST") or "us").strip()
        url = HOSTS.get(url.lower(), url).rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ValidationError("POSTHOG_API_URL must be us, eu or an http(s) URL.")
        ingest = (ingest_url or env.get("POSTHOG_INGEST_URL") or INGEST.get(url, url)).rstrip("/")
        pid = str(project_id if project_id is not None else env.get("POSTHOG_PROJECT_ID") or "@current")
        if not (pid.isdigit() or pid == "@current"):
            raise ValidationError("POSTHOG_PROJECT_ID must be a number (or @current).")
        t = timeout if timeout is not None else float(env.get("POSTHOG_TIMEOUT") or 30)
        return Settings(api_url=url, ingest_url=ingest,
                        personal_api_key=personal_api_key or env.get("POSTHOG_PERSONAL_API_KEY") or None,
                        project_api_key=project_api_key or env.get("POSTHOG_PROJECT_API_KEY") or None,
                        project_id=pid, timeout=t,
                        max_retries=4 if max_retries is None else max_retries,
                        max_retry_wait=30.0 if max_retry_wait is None else max_retry_wait)
