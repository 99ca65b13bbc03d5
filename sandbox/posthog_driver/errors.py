"""Typed errors of the driver.

Every message is a short sentence saying what failed and what to do. A message never holds an API
key or a raw response body: PostHog's `detail` is kept only where it describes the caller's own
input (a HogQL error, a refused field, a missing scope), cut to one line, with anything shaped
like a key removed. run.py reports `str(error)` of a PostHogError as the run's one-line failure.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~4 ms to import; annotations are strings anyway
    from typing import Any, Iterable

_MAX_DETAIL = 300


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with the given secrets, and anything shaped like a PostHog key, replaced."""
    for secret in secrets:
        if secret and len(secret) >= 4 and secret in text:
            text = text.replace(secret, "[REDACTED]")
    if "_" not in text:
        return text
    import re  # on the error path only: `import posthog_driver` stays cheap

    # phx_ personal, phc_ project, phs_ feature-flag secure, pha_/phi_/phk_ other tokens
    return re.sub(r"\bph[a-z]_[A-Za-z0-9_\-]{6,}", "[REDACTED]", text)


def clean_detail(detail: Any, secrets: Iterable[str] = ()) -> str | None:
    """PostHog's `detail` as one short, key-free line, or None when there is none."""
    if not isinstance(detail, str) or not detail.strip():
        return None
    line = " ".join(detail.split())
    if len(line) > _MAX_DETAIL:
        line = line[: _MAX_DETAIL - 1].rstrip() + "…"
    return redact(line, secrets)


class PostHogError(Exception):
    """Base of every driver error."""

    def __init__(self, message: str, status: int | None = None, *, code: str | None = None,
                 method: str | None = None, path: str | None = None, attempts: int = 1) -> None:
        message = redact(" ".join(str(message).split()))
        super().__init__(message)
        self.message = message
        self.status = status  # the HTTP status when PostHog answered, else None
        self.code = code  # PostHog's error code (`authentication_failed`, `throttled`, …) if any
        self.method = method
        self.path = path  # the request path, never its query string
        self.attempts = attempts  # requests made, retries included

    def __str__(self) -> str:
        return self.message


class ValidationError(PostHogError, ValueError):
    """Bad input caught before any request (an identifier, a parameter, a setting)."""


class InvalidIdentifierError(ValidationError):
    """A name cannot be used as a field or property reference in HogQL."""


class ConfigurationError(ValidationError):
    """A setting is malformed (POSTHOG_API_URL, POSTHOG_PROJECT_ID, POSTHOG_TIMEOUT…)."""


class AuthenticationError(PostHogError):
    """401, or no key configured: the key is missing or wrong."""


class PermissionDeniedError(PostHogError):
    """403: the key lacks a scope, or access to the project."""


class NotFoundError(PostHogError):
    """404: no such project, resource or route."""


class BadRequestError(PostHogError):
    """PostHog refused the request as malformed (400, 405, 413…); `detail` is its explanation."""

    def __init__(self, message: str, status: int | None = None, *, detail: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(message, status, **kwargs)
        self.detail = detail


class QueryError(BadRequestError):
    """400 on a query: `detail` is PostHog's own explanation of what is wrong with the HogQL."""


class RateLimitError(PostHogError):
    """429: throttled; `retry_after` is the wait PostHog asked for, in seconds, when it said."""

    def __init__(self, message: str, retry_after: float | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("code", "throttled")
        super().__init__(message, 429, **kwargs)
        self.retry_after = retry_after


class ServerError(PostHogError):
    """5xx from PostHog (after the retries a safe request gets)."""


class ConnectionFailedError(PostHogError):
    """PostHog could not be reached, or the connection broke before an answer."""


class RequestTimeoutError(ConnectionFailedError):
    """No answer within the timeout (POSTHOG_TIMEOUT)."""


class EgressRefusedError(ConnectionFailedError):
    """The sandbox's egress proxy refused the request (a host outside the allowlist, a cap of
    the run): never retried. `kind` is `refused` or `cap`."""

    def __init__(self, message: str, *, kind: str = "refused", **info: Any) -> None:
        super().__init__(message, **info)
        self.kind = kind


__all__ = [
    "AuthenticationError", "BadRequestError", "ConfigurationError", "ConnectionFailedError", "EgressRefusedError",
    "InvalidIdentifierError", "NotFoundError", "PermissionDeniedError", "PostHogError", "QueryError",
    "RateLimitError", "RequestTimeoutError", "ServerError", "ValidationError",
]
