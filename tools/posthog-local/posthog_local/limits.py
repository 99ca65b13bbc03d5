"""PostHog's limits on the query API, with PostHog's numbers by default.

- Query rate: `HogQLQueryThrottle` (posthog/rate_limit.py): 120 HogQL queries per hour per personal
  API key, Django REST framework's SimpleRateThrottle: a sliding window of request times; a request
  over the limit gets 429 `throttled` with `Retry-After` = ceil(the time until the oldest request in
  the window leaves it) and "Request was throttled. Expected available in N seconds." Every POST of
  a HogQLQuery counts (cached answers and refused queries too: DRF throttles before the view runs);
  polling an async query does not (another throttle class).
- Concurrency: `get_api_personal_rate_limiter` (posthog/clickhouse/client/limit.py): 3 queries at
  once per organization for personal-key queries; a query waits up to 30 s for a slot, then 429
  whose detail is "Exceeded maximum concurrency limit: 3 for key: … and task: …", without
  Retry-After (posthog/api/query.py raises Throttled without a wait).
- Execution time: 60 s (HogQLGlobalSettings.max_execution_time, posthog/hogql/constants.py).
- Static cohorts: at most 1,000 persons per add_persons_to_static_cohort call.
- Bodies: 20 MB.
- Cache: `refresh: blocking` answers from a cached result younger than the cache age (5 minutes).

Everything is adjustable (flags, environment, or POST /_local/limits) so tests reach a limit in
seconds: e.g. `--query-rate 5/10s` is the compressed-time budget of five queries per ten seconds.
"""
from __future__ import annotations

import math
import re
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable

_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600,
          "d": 86400, "day": 86400}


class LimitSpecError(ValueError):
    """A limit setting that cannot be understood."""


def parse_rate(text: str) -> tuple[int, float]:
    """`120/hour`, `5/minute`, `5/10s`, `30/90sec` -> (requests, period in seconds)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*([a-z]+)\s*", str(text).lower())
    if not match or match.group(3).rstrip("s") not in _UNITS and match.group(3) not in _UNITS:
        raise LimitSpecError(f"a rate looks like 120/hour, 5/minute or 5/10s, not {text!r}")
    unit = match.group(3) if match.group(3) in _UNITS else match.group(3).rstrip("s")
    period = float(match.group(2) or 1) * _UNITS[unit]
    count = int(match.group(1))
    if count < 1 or period <= 0:
        raise LimitSpecError("a rate needs at least one request per a positive period")
    return count, period


@dataclass
class LimitSettings:
    query_rate: int = 120
    query_period_s: float = 3600.0
    concurrency: int = 3
    concurrency_wait_s: float = 30.0
    max_execution_s: float = 60.0
    cohort_batch: int = 1000
    max_body_bytes: int = 20 * 1024 * 1024
    cache_ttl_s: float = 300.0
    enabled: bool = True  # rate and concurrency limits on

    def describe(self) -> dict[str, Any]:
        out = asdict(self)
        out["query_rate_spec"] = f"{self.query_rate}/{self.query_period_s:g}s"
        return out

    def update(self, changes: dict[str, Any]) -> None:
        known = {f.name: f.type for f in fields(self)}
        for key, value in changes.items():
            if key == "query_rate_spec" or (key == "query_rate" and isinstance(value, str)):
                self.query_rate, self.query_period_s = parse_rate(str(value))
                continue
            if key not in known:
                raise LimitSpecError(f"unknown limit {key!r}; known: {', '.join(sorted(known))}")
            current = getattr(self, key)
            try:
                converted = (value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")) \
                    if isinstance(current, bool) else type(current)(value)
            except (TypeError, ValueError) as err:
                raise LimitSpecError(f"limit {key} must be a {type(current).__name__}") from err
            if not isinstance(current, bool) and converted < 0:
                raise LimitSpecError(f"limit {key} must not be negative")
            setattr(self, key, converted)


class Throttled(Exception):
    """429: `wait` seconds until a retry can succeed (None: no Retry-After)."""

    def __init__(self, detail: str, wait: int | None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.wait = wait


def throttled_detail(wait: float) -> tuple[str, int]:
    """DRF's Throttled: the wait rounded up, "second" when it is 1."""
    seconds = max(1, math.ceil(wait)) if wait > 0 else 0
    unit = "second" if seconds == 1 else "seconds"
    return f"Request was throttled. Expected available in {seconds} {unit}.", seconds


class RateLimiter:
    """SimpleRateThrottle per key: a deque of request times inside the window."""

    def __init__(self, settings: LimitSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self._history: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._history.clear()

    def hit(self, key: str) -> None:
        """Records one request for `key`, or raises Throttled (the request is not recorded)."""
        s = self.settings
        if not s.enabled:
            return
        now = self.clock()
        with self._lock:
            history = self._history.setdefault(key, deque())
            while history and history[0] <= now - s.query_period_s:
                history.popleft()
            if len(history) >= s.query_rate:
                remaining = s.query_period_s - (now - history[0])
                available = s.query_rate - len(history) + 1
                detail, wait = throttled_detail(remaining / available if available > 0 else remaining)
                raise Throttled(detail, wait)
            history.append(now)

    def used(self, key: str) -> int:
        with self._lock:
            return len(self._history.get(key, ()))


class ConcurrencyLimiter:
    """At most `concurrency` queries at once per organization; a query waits for a slot up to
    `concurrency_wait_s` (PostHog retries with backoff for 30 s), then Throttled without a wait."""

    def __init__(self, settings: LimitSettings, org: str = "posthog-local") -> None:
        self.settings = settings
        self.org = org
        self._running = 0
        self._cond = threading.Condition()
        self._task = 0

    @property
    def running(self) -> int:
        with self._cond:
            return self._running

    def acquire(self) -> str:
        s = self.settings
        with self._cond:
            self._task += 1
            task = f"{self._task:08x}"
            if not s.enabled:
                self._running += 1
                return task
            deadline = time.monotonic() + s.concurrency_wait_s
            while self._running >= max(1, s.concurrency):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Throttled(f"Exceeded maximum concurrency limit: {s.concurrency} for key: "
                                    f"api:query:per-org:{self.org} and task: {task}", None)
                self._cond.wait(left)
            self._running += 1
            return task

    def release(self) -> None:
        with self._cond:
            self._running = max(0, self._running - 1)
            self._cond.notify()
