"""The query endpoint's execution modes, cache and async jobs, as PostHog runs them.

`refresh` (posthog/hogql_queries/query_runner.py execution_mode_from_refresh, posthog/api/query.py):
  blocking (the default)  a cached answer younger than the cache age, else computed now
  force_blocking / true   always computed now
  async                   a fresh cached answer, else 202 with `query_status` (computed in the
                          background; poll GET …/query/{id}/)
  force_async             always 202 and computed in the background
  lazy_async              fresh cache, else async when a stale answer exists, else computed now
  force_cache             (the query endpoint turns it into blocking)
A cached answer says `is_cached: true` and carries `last_refresh`. Polling answers 202 while the
query runs, 200 with `query_status.results` (the whole answer) when done, 400 with
`error_message` for a query error, 500 without one for an engine failure.
"""
from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any, Callable

from .config import Project
from .hogql import HogQLError
from .limits import ConcurrencyLimiter, LimitSettings
from .store import QueryFailed, Store
from .timeutil import iso_datetime

REFRESH_MODES = {"blocking", "force_blocking", "async", "force_async", "lazy_async", "force_cache"}
_MAX_JOBS = 200


def refresh_mode(value: Any) -> str:
    """The request's `refresh`, normalised; ValueError for a value PostHog's schema refuses."""
    if value is None:
        return "blocking"
    if value is True:
        return "force_blocking"
    if value is False:
        return "blocking"
    if isinstance(value, str) and value in REFRESH_MODES:
        return "blocking" if value == "force_cache" else value
    raise ValueError(f"refresh must be one of {', '.join(sorted(REFRESH_MODES))} (or true/false)")


def _now_iso() -> str:
    return iso_datetime(dt.datetime.now(dt.timezone.utc))


@dataclass
class _Cached:
    at: float
    at_iso: str
    answer: dict[str, Any]


@dataclass
class Job:
    id: str
    team_id: int
    started: str
    complete: bool = False
    error: bool = False
    error_message: str | None = None
    results: dict[str, Any] | None = None
    end_time: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def status(self) -> dict[str, Any]:
        return {"id": self.id, "team_id": self.team_id, "query_async": True, "complete": self.complete,
                "error": self.error, "error_message": self.error_message, "results": self.results,
                "start_time": self.started, "pickup_time": self.started, "end_time": self.end_time,
                "expiration_time": None, "query_progress": None, "task_id": self.id, "insight_id": None,
                "dashboard_id": None, "labels": None}


class QueryService:
    def __init__(self, store: Store, limits: LimitSettings, concurrency: ConcurrencyLimiter,
                 log: Callable[[str], None]) -> None:
        self.store = store
        self.limits = limits
        self.concurrency = concurrency
        self.log = log
        self._cache: dict[str, _Cached] = {}
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self.executions = 0  # queries actually computed (cache hits excluded)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    # -- running ----------------------------------------------------------------------------------
    def _compute(self, project: Project, query: str, values: dict[str, Any], convert_tz: bool) -> dict[str, Any]:
        timezone = project.timezone if convert_tz else "UTC"
        self.concurrency.acquire()  # Throttled after the wait, as PostHog's per-organization limiter
        try:
            with self._lock:
                self.executions += 1
            answer = self.store.run_hogql(query, values, timezone=timezone, week_start_day=project.week_start_day,
                                          timeout_s=self.limits.max_execution_s)
        finally:
            self.concurrency.release()
        answer["modifiers"] = {"convertToProjectTimezone": convert_tz}
        return answer

    @staticmethod
    def cache_key(project: Project, query: str, values: dict[str, Any], convert_tz: bool) -> str:
        return json.dumps([project.id, query, values, convert_tz], sort_keys=True, default=str)

    def _fresh(self, key: str) -> _Cached | None:
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit.at < self.limits.cache_ttl_s:
            return hit
        return None

    def _remember(self, key: str, answer: dict[str, Any]) -> str:
        at_iso = _now_iso()
        with self._lock:
            self._cache[key] = _Cached(time.monotonic(), at_iso, answer)
        return at_iso

    def run(self, project: Project, query: str, values: dict[str, Any], convert_tz: bool,
            mode: str) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) for POST …/query/. Raises HogQLError, QueryFailed, Throttled."""
        key = self.cache_key(project, query, values, convert_tz)
        if mode in ("blocking", "async", "lazy_async"):
            hit = self._fresh(key)
            if hit is not None:
                return 200, {**hit.answer, "is_cached": True, "last_refresh": hit.at_iso, "cache_key": _short(key),
                             "query_id": uuidlib.uuid4().hex}
        stale = key in self._cache
        if mode in ("async", "force_async") or (mode == "lazy_async" and stale):
            job, queued = self._start_job(project, query, values, convert_tz, key)
            return 202, {"query_status": queued, "results": None, "is_cached": False}
        answer = self._compute(project, query, values, convert_tz)
        at_iso = self._remember(key, answer)
        return 200, {**answer, "is_cached": False, "last_refresh": at_iso, "cache_key": _short(key),
                     "query_id": uuidlib.uuid4().hex}

    # -- async ------------------------------------------------------------------------------------
    def _start_job(self, project: Project, query: str, values: dict[str, Any], convert_tz: bool,
                   key: str) -> tuple[Job, dict[str, Any]]:
        job = Job(id=uuidlib.uuid4().hex, team_id=project.id, started=_now_iso())
        queued = job.status()  # what the 202 says, whatever the thread has done by then
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > _MAX_JOBS:
                self._jobs.pop(next(iter(self._jobs)))

        def work() -> None:
            try:
                answer = self._compute(project, query, values, convert_tz)
                at_iso = self._remember(key, answer)
                job.results = {**answer, "is_cached": False, "last_refresh": at_iso, "cache_key": _short(key),
                               "query_id": job.id}
            except HogQLError as err:
                job.error, job.error_message = True, err.detail
            except Exception as err:  # noqa: BLE001 - an engine failure: reported as a 500 on poll
                job.error = True
                self.log(f"async query {job.id} failed: {type(err).__name__}")
            finally:
                job.complete = True
                job.end_time = _now_iso()
                job.done.set()

        threading.Thread(target=work, name=f"query-{job.id[:8]}", daemon=True).start()
        return job, queued

    def status(self, team_id: int, query_id: str) -> tuple[int, dict[str, Any]] | None:
        with self._lock:
            job = self._jobs.get(query_id)
        if job is None or job.team_id != team_id:
            return None
        if not job.complete:
            return 202, {"query_status": job.status()}
        if job.error:
            return (400 if job.error_message else 500), {"query_status": job.status()}
        return 200, {"query_status": job.status()}


def _short(key: str) -> str:
    import hashlib

    return "cache_" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


__all__ = ["QueryService", "refresh_mode", "REFRESH_MODES", "QueryFailed"]
