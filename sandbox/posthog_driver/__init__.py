"""posthog_driver: PostHog from inside a sandbox, with the Python standard library only.

    from posthog_driver import PostHogClient, Query, emit, rows_of
    with PostHogClient() as client:            # POSTHOG_API_URL, POSTHOG_PERSONAL_API_KEY, … (config.py)
        answer = client.query("SELECT event, count() AS n FROM events WHERE event = {e} GROUP BY event",
                              values={"e": "$pageview"})
    emit({"rows": rows_of(answer)})

Importing the package is cheap (no HTTP, JSON or logging machinery): PostHogClient, Query and the
rest load on first use, the HTTP stack on the first request.
"""
from __future__ import annotations

import sys

from .errors import (AuthenticationError, BadRequestError, ConfigurationError, ConnectionFailedError,
                     EgressRefusedError, InvalidIdentifierError, NotFoundError, PermissionDeniedError, PostHogError, QueryError,
                     RateLimitError, RequestTimeoutError, ServerError, ValidationError)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .client import PostHogClient, QueryResult
    from .hogql import Query, check_identifier, iso_utc

__version__ = "1.0.0"
__all__ = [
    "PostHogClient", "QueryResult", "Query", "check_identifier", "iso_utc", "emit", "rows_of",
    "PostHogError", "ValidationError", "InvalidIdentifierError", "ConfigurationError", "AuthenticationError",
    "PermissionDeniedError", "NotFoundError", "BadRequestError", "QueryError", "RateLimitError",
    "ServerError", "ConnectionFailedError", "RequestTimeoutError", "EgressRefusedError", "progress",
]

_LAZY = {"PostHogClient": "client", "QueryResult": "client", "Query": "hogql", "check_identifier": "hogql",
         "iso_utc": "hogql"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'posthog_driver' has no attribute {name!r}")
    if module == "client":
        from . import client as loaded
    else:
        from . import hogql as loaded
    value = getattr(loaded, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _plain(value: Any) -> Any:
    """`value` with NaN and infinities (not JSON) turned into None, recursively."""
    if isinstance(value, float):
        return None if value != value or value in (float("inf"), float("-inf")) else value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _default(value: Any) -> Any:
    if hasattr(value, "isoformat"):  # datetime, date, time
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    if type(value).__name__ == "Decimal":
        return float(value)
    return str(value)


def emit(document: Any) -> None:
    """Prints exactly one JSON document (one line) on stdout: the run's answer. Dates become ISO
    strings, other non-JSON objects their str(); NaN and infinities become null."""
    import json

    try:
        text = json.dumps(document, default=_default, ensure_ascii=False, allow_nan=False)
    except ValueError:
        text = json.dumps(_plain(document), default=_default, ensure_ascii=False, allow_nan=False)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def progress(note: str | None = None, **counts: int) -> None:
    """Tells the runner what the script is doing, shown live on the operator's terminal:
    `progress("scoring users", users=1200)` (counts are totals so far). Does nothing unless the
    runner asked for progress (SANDBOX_RUNNER_PROGRESS=1)."""
    from . import _progress

    _progress.note(note, **counts)


def rows_of(answer: Any) -> list[dict[str, Any]]:
    """A query answer's rows as dicts keyed by column name (a list of dicts passes through)."""
    if isinstance(answer, list):
        return answer
    rows = getattr(answer, "rows", None)
    if isinstance(rows, list):
        return rows
    columns = answer.get("columns") or []
    return [dict(zip(columns, row)) if isinstance(row, (list, tuple)) else row for row in answer.get("results") or []]
