"""posthog_driver: PostHog from inside a sandbox, with the Python standard library only.

    from posthog_driver import PostHogClient, emit, rows_of
    with PostHogClient() as client:           # POSTHOG_API_URL, POSTHOG_PERSONAL_API_KEY, ...
        answer = client.query("SELECT count() FROM events WHERE event = {e}", values={"e": "$pageview"})
    emit({"rows": rows_of(answer)})

Importing this package is cheap: the HTTP machinery loads on first use.
"""
from __future__ import annotations

import sys


from .errors import (AuthenticationError, ConnectionFailedError, NotFoundError, PermissionDeniedError, PostHogError,
                     QueryError, RateLimitError, RequestTimeoutError, ServerError, ValidationError)

__all__ = ["PostHogClient", "Query", "check_identifier", "emit", "rows_of", "PostHogError", "AuthenticationError",
           "PermissionDeniedError", "NotFoundError", "RateLimitError", "QueryError", "ValidationError", "ServerError",
           "ConnectionFailedError", "RequestTimeoutError"]


def emit(document: Any) -> None:
    """Prints exactly one JSON document on stdout (dates and other objects as strings)."""
    import json

    sys.stdout.write(json.dumps(document, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def rows_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """PostHog's query answer as a list of dicts keyed by column name."""
    columns = answer.get("columns") or []
    return [dict(zip(columns, row)) if isinstance(row, (list, tuple)) else row for row in answer.get("results") or []]


def __getattr__(name: str) -> Any:
    if name == "PostHogClient":
        from .client import PostHogClient

        return PostHogClient
    if name in ("Query", "check_identifier"):
        from . import hogql

        return getattr(hogql, name)
    raise AttributeError(f"module 'posthog_driver' has no attribute {name!r}")
