"""Typed errors of the driver. Messages are short sentences saying what to do; they never hold
a key or a raw response body."""
from __future__ import annotations


class PostHogError(Exception):
    """Base of every driver error."""

    status: int | None = None

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthenticationError(PostHogError):
    """401: the key is missing or wrong."""


class PermissionDeniedError(PostHogError):
    """403: the key lacks a scope or access to the project."""


class NotFoundError(PostHogError):
    """404: no such project, resource or route."""


class RateLimitError(PostHogError):
    """429: throttled; `retry_after` seconds when PostHog said."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message, 429)
        self.retry_after = retry_after


class QueryError(PostHogError):
    """400 on a query: PostHog's own explanation of what is wrong with it."""


class ValidationError(PostHogError):
    """Bad input caught before any request (an identifier, a parameter)."""


class ServerError(PostHogError):
    """5xx from PostHog."""


class ConnectionFailedError(PostHogError):
    """The host could not be reached or the connection broke."""


class RequestTimeoutError(PostHogError):
    """No answer within the timeout."""
