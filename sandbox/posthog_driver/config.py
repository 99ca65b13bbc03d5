"""Where PostHog is and which keys to use: explicit arguments first, then the environment.

    POSTHOG_API_URL           https://us.posthog.com (default), https://eu.posthog.com, `us`, `eu`,
                              or a self-hosted URL (a path prefix is kept)
    POSTHOG_INGEST_URL        capture and /flags; derived when unset: us.posthog.com → us.i.posthog.com,
                              eu.posthog.com → eu.i.posthog.com, anything else → the API URL
    POSTHOG_PERSONAL_API_KEY  phx_…: the private API (queries, cohorts, flags, insights…)
    POSTHOG_PROJECT_API_KEY   phc_…: capture and flag evaluation
    POSTHOG_PROJECT_ID        the numeric project id (default @current: the key's current project)
    POSTHOG_TIMEOUT           seconds per request (default 30)
    POSTHOG_MAX_WAIT          seconds one call may spend waiting for PostHog's limits and retries
                              (default 900: an export under 120 queries/hour finishes by waiting)
    POSTHOG_QUERY_RATE        the query budget when known, e.g. 120/hour: queries are then paced to
                              stay inside it instead of running into 429s (default: not paced)
    POSTHOG_QUERY_REFRESH     the `refresh` sent with queries (default force_blocking: fresh
                              answers; `blocking` accepts PostHog's cached answer, up to ~5 min old)
    POSTHOG_EGRESS_SOCKET     set by sandbox-runner under its `posthog` network policy: every request
                              goes as plain HTTP with its absolute URL over this Unix socket to the
                              runner's egress proxy, which holds the personal key and speaks TLS
    POSTHOG_AUTH              `egress`: the personal key is added outside the sandbox (the egress
                              proxy, E2B's network rules); the driver sends none and needs none
"""
from __future__ import annotations

import os
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~4 ms to import; annotations are strings anyway
    from typing import Any, Mapping

from .errors import ConfigurationError

DEFAULT_API_URL = "https://us.posthog.com"
DEFAULT_MAX_WAIT = 900.0
REFRESH_VALUES = ("force_blocking", "blocking", "async", "force_async", "lazy_async")
_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600, "d": 86400,
          "day": 86400}


def check_refresh(value: str) -> str:
    if value not in REFRESH_VALUES:
        raise ConfigurationError("POSTHOG_QUERY_REFRESH (refresh) must be one of " + ", ".join(REFRESH_VALUES) + ".")
    return value


def parse_rate(value: str | None) -> tuple[int, float] | None:
    """`120/hour`, `5/minute`, `10/30s` -> (queries, period in seconds); None when unset."""
    if value is None or not str(value).strip():
        return None
    count, _, per = str(value).strip().lower().partition("/")
    digits = per.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = per[len(digits):]
    unit = unit if unit in _UNITS else unit.rstrip("s")
    try:
        queries, span = int(count), float(digits or 1) * _UNITS[unit]
    except (ValueError, KeyError):
        raise ConfigurationError("POSTHOG_QUERY_RATE (query_rate) must look like 120/hour, 5/minute or 10/30s.") from None
    if queries < 1 or span <= 0:
        raise ConfigurationError("POSTHOG_QUERY_RATE (query_rate) needs at least one query per a positive period.")
    return queries, span
SHORTCUTS = {"us": "https://us.posthog.com", "eu": "https://eu.posthog.com"}
# Hosts of PostHog Cloud: the app (private API) and its ingestion twin.
_CLOUD_INGEST = {"us.posthog.com": "us.i.posthog.com", "eu.posthog.com": "eu.i.posthog.com",
                 "app.posthog.com": "us.i.posthog.com"}
_CLOUD_APP = {"us.i.posthog.com": "us.posthog.com", "eu.i.posthog.com": "eu.posthog.com"}


def _split(url: str) -> tuple[str, str, str]:
    """(scheme, host[:port], path) of an http(s) URL, or ConfigurationError."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        raise ConfigurationError("POSTHOG_API_URL must be us, eu or an http(s):// URL.")
    host, _, path = rest.partition("/")
    if not host or "@" in host or any(c.isspace() for c in host):
        raise ConfigurationError("POSTHOG_API_URL must be us, eu or an http(s):// URL with a host.")
    path = path.split("?", 1)[0].split("#", 1)[0].strip("/")
    return scheme.lower(), host.lower(), ("/" + path) if path else ""


def normalize_api_url(value: str | None) -> str:
    raw = (value or "").strip() or DEFAULT_API_URL
    raw = SHORTCUTS.get(raw.lower(), raw)
    if "://" not in raw:
        raw = "https://" + raw
    scheme, host, path = _split(raw)
    host = _CLOUD_APP.get(host, host)  # the ingestion host given by mistake: use its app host
    return f"{scheme}://{host}{path}"


def derive_ingest_url(api_url: str) -> str:
    scheme, host, path = _split(api_url)
    if host in _CLOUD_INGEST:
        return f"https://{_CLOUD_INGEST[host]}"
    return f"{scheme}://{host}{path}"


def _float(value: Any, name: str, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be a number of seconds.") from None
    if not number > 0:
        raise ConfigurationError(f"{name} must be more than 0 seconds.")
    return number


class Settings:
    """The resolved configuration. Its repr never shows a key."""

    __slots__ = ("api_url", "ingest_url", "personal_api_key", "project_api_key", "project_id",
                 "timeout", "max_retries", "max_retry_wait", "backoff_base", "backoff_cap", "refresh",
                 "query_rate", "sync_query_limit", "egress_socket", "key_at_egress")

    def __init__(self, *, api_url: str, ingest_url: str, personal_api_key: str | None,
                 project_api_key: str | None, project_id: str, timeout: float,
                 max_retries: int, max_retry_wait: float, backoff_base: float = 0.5,
                 backoff_cap: float = 8.0, refresh: str = "force_blocking",
                 query_rate: tuple[int, float] | None = None, sync_query_limit: float = 55.0,
                 egress_socket: str | None = None, key_at_egress: bool = False) -> None:
        self.api_url = api_url
        self.ingest_url = ingest_url
        self.personal_api_key = personal_api_key
        self.project_api_key = project_api_key
        self.project_id = project_id
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.refresh = refresh
        self.query_rate = query_rate  # (queries, period in seconds) to pace to, or None
        self.sync_query_limit = sync_query_limit  # longer queries go async (PostHog Cloud's gateway: ~60 s)
        self.egress_socket = egress_socket  # the runner's egress proxy (a Unix socket), or None
        self.key_at_egress = key_at_egress  # the personal key is added outside: send none, need none

    def __repr__(self) -> str:
        return (f"Settings(api_url={self.api_url!r}, ingest_url={self.ingest_url!r}, "
                f"project_id={self.project_id!r}, personal_api_key={'set' if self.personal_api_key else None}, "
                f"project_api_key={'set' if self.project_api_key else None}, timeout={self.timeout}"
                + (", personal key added at the egress" if self.key_at_egress else "") + ")")

    @property
    def secrets(self) -> list[str]:
        return [k for k in (self.personal_api_key, self.project_api_key) if k]

    @classmethod
    def resolve(cls, api_url: str | None = None, personal_api_key: str | None = None,
                project_api_key: str | None = None, project_id: str | int | None = None,
                ingest_url: str | None = None, timeout: float | None = None,
                max_retries: int | None = None, max_retry_wait: float | None = None,
                backoff_base: float | None = None, backoff_cap: float | None = None,
                refresh: str | None = None, query_rate: str | None = None,
                env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        api = normalize_api_url(api_url or env.get("POSTHOG_API_URL") or env.get("POSTHOG_HOST"))
        ingest_raw = (ingest_url or env.get("POSTHOG_INGEST_URL") or "").strip()
        if ingest_raw:
            ingest_raw = SHORTCUTS.get(ingest_raw.lower(), ingest_raw)
            if "://" not in ingest_raw:
                ingest_raw = "https://" + ingest_raw
            scheme, host, path = _split(ingest_raw)
            ingest = f"{scheme}://{_CLOUD_INGEST.get(host, host)}{path}"
        else:
            ingest = derive_ingest_url(api)
        pid_raw = project_id if project_id is not None else env.get("POSTHOG_PROJECT_ID")
        pid = str(pid_raw).strip() if pid_raw not in (None, "") else "@current"
        if not (pid.isdigit() or pid == "@current"):
            # never echo the value: a key pasted into the wrong variable must not leak
            raise ConfigurationError("POSTHOG_PROJECT_ID must be the numeric project id (or @current).")
        socket_path = (env.get("POSTHOG_EGRESS_SOCKET") or "").strip() or None
        auth = (env.get("POSTHOG_AUTH") or "").strip().lower()
        if auth not in ("", "egress", "key"):
            raise ConfigurationError("POSTHOG_AUTH must be egress (the key is added outside the sandbox) or key.")
        retries = 4 if max_retries is None else int(max_retries)
        if retries < 0:
            raise ConfigurationError("max_retries must be 0 or more.")
        return cls(
            api_url=api, ingest_url=ingest,
            personal_api_key=(personal_api_key or env.get("POSTHOG_PERSONAL_API_KEY") or "").strip() or None,
            project_api_key=(project_api_key or env.get("POSTHOG_PROJECT_API_KEY") or "").strip() or None,
            project_id=pid,
            timeout=_float(timeout if timeout is not None else env.get("POSTHOG_TIMEOUT"), "POSTHOG_TIMEOUT", 30.0),
            max_retries=retries,
            max_retry_wait=(_float(env.get("POSTHOG_MAX_WAIT"), "POSTHOG_MAX_WAIT", DEFAULT_MAX_WAIT)
                            if max_retry_wait is None else max(0.0, float(max_retry_wait))),
            backoff_base=0.5 if backoff_base is None else max(0.0, float(backoff_base)),
            backoff_cap=8.0 if backoff_cap is None else max(0.0, float(backoff_cap)),
            refresh=check_refresh(refresh or env.get("POSTHOG_QUERY_REFRESH") or "force_blocking"),
            query_rate=parse_rate(query_rate or env.get("POSTHOG_QUERY_RATE")),
            egress_socket=socket_path,
            key_at_egress=auth == "egress" or (socket_path is not None and auth != "key"),
        )
