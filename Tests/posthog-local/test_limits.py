"""PostHog's limits, cache and async mode in posthog-local: on by default with PostHog's numbers,
each reached here in seconds through POST /_local/limits (compressed time).

Sources: posthog/rate_limit.py HogQLQueryThrottle (120/hour per personal key, Django REST
framework's SimpleRateThrottle: 429, `Retry-After`, "Request was throttled. Expected available in N
seconds."); posthog/clickhouse/client/limit.py get_api_personal_rate_limiter (3 at once, a 30 s
wait, then ConcurrencyLimitExceeded) and posthog/api/query.py (raised as Throttled without a wait:
no Retry-After); posthog/hogql/constants.py (max_execution_time 60); posthog/api/cohort.py with
DEFAULT_COHORT_INSERT_BATCH_SIZE (1,000); posthog/hogql_queries/query_runner.py
execution_mode_from_refresh and posthog/api/query.py (202 + query_status; GET query/{id}/).
"""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from phl_support import ENV, PERSONAL_KEY, PROJECT_ID, PROJECT_KEY, READONLY_KEY, SERVER, Server, start_server, stop_server

SLOW = "SELECT count() FROM events a CROSS JOIN events b WHERE a.timestamp < b.timestamp"


def set_limits(server: Server, **limits: Any) -> dict[str, Any]:
    response = server.session.post(f"{server.url}/_local/limits", json={**limits, "reset_usage": True}, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def limited(local: Server) -> Iterator[Server]:
    yield local
    local.session.delete(f"{local.url}/_local/limits", timeout=5)  # back to the session's settings


def post_query(server: Server, hogql: str, key: str = PERSONAL_KEY, **extra: Any) -> Any:
    return server.session.post(f"{server.project}/query/", json={"query": {"kind": "HogQLQuery", "query": hogql}, **extra},
                               headers=server.auth(key), timeout=60)


def test_limits_are_on_by_default_with_posthogs_numbers(data_dir: Path) -> None:
    srv = start_server(data_dir, env=ENV)
    try:
        limits = srv.session.get(f"{srv.url}/_local/limits", timeout=5).json()["limits"]
        assert any(line.startswith("limits: 120 queries per 3600 s per key, 3 at once, 60 s each, "
                                   "cohort batches of 1000, cache 300 s") for line in srv.banner)
    finally:
        assert stop_server(srv) == 0
    assert limits["enabled"] is True and limits["query_rate"] == 120 and limits["query_period_s"] == 3600
    assert limits["concurrency"] == 3 and limits["concurrency_wait_s"] == 30 and limits["max_execution_s"] == 60
    assert limits["cohort_batch"] == 1000 and limits["max_body_bytes"] == 20 * 1024 * 1024
    assert limits["cache_ttl_s"] == 300


def test_query_rate_is_per_key_with_retry_after(limited: Server) -> None:
    set_limits(limited, enabled=True, query_rate_spec="3/4s")
    for _ in range(3):
        assert post_query(limited, "SELECT 1").status_code == 200
    throttled = post_query(limited, "SELECT 1")
    assert throttled.status_code == 429
    wait = int(throttled.headers["Retry-After"])
    assert 1 <= wait <= 4
    body = throttled.json()
    assert body == {"type": "throttled_error", "code": "throttled", "attr": None,
                    "detail": f"Request was throttled. Expected available in {wait} second{'s' if wait != 1 else ''}."}
    assert post_query(limited, "SELECT 1", key=READONLY_KEY).status_code == 200  # another key, its own budget
    assert limited.session.get(f"{limited.project}/cohorts/", headers=limited.auth(), timeout=5).status_code == 200
    time.sleep(wait)
    assert post_query(limited, "SELECT 1").status_code == 200


def test_refused_and_cached_queries_count_too(limited: Server) -> None:
    set_limits(limited, enabled=True, query_rate_spec="2/30s")
    assert post_query(limited, "SELECT nope(1)").status_code == 400
    assert post_query(limited, "SELECT 1").status_code == 200
    assert post_query(limited, "SELECT 1").status_code == 429


def test_concurrency_limit_is_a_429_without_retry_after(limited: Server) -> None:
    set_limits(limited, enabled=True, concurrency=1, concurrency_wait_s=0.5, max_execution_s=3)
    first: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: first.update(r=post_query(limited, SLOW)))
    runner.start()
    time.sleep(0.5)
    second = post_query(limited, "SELECT 1")
    runner.join(timeout=30)
    assert second.status_code == 429 and "Retry-After" not in second.headers
    assert second.json()["code"] == "throttled"
    assert second.json()["detail"].startswith("Exceeded maximum concurrency limit: 1 for key: api:query:per-org:")
    # ... and the slow one met the execution time limit
    assert first["r"].status_code == 400 and first["r"].json()["code"] == "timeout_exceeded"
    assert post_query(limited, "SELECT 1").status_code == 200  # the slot is free again


def test_cohort_batches_above_the_limit_are_refused_whole(limited: Server) -> None:
    persons = [p["id"] for p in limited.session.get(f"{limited.project}/persons/?limit=1000", headers=limited.auth(),
                                                    timeout=10).json()["results"]]
    cohort = limited.session.post(f"{limited.project}/cohorts/", json={"name": "batch", "is_static": True},
                                  headers=limited.auth(), timeout=5).json()
    add = f"{limited.project}/cohorts/{cohort['id']}/add_persons_to_static_cohort/"
    too_many = limited.session.patch(add, json={"person_ids": persons + [str(uuid.uuid4())]}, headers=limited.auth(), timeout=10)
    assert too_many.status_code == 400 and too_many.json()["detail"] == "List size exceeds limit"
    count = limited.session.get(f"{limited.project}/cohorts/{cohort['id']}/", headers=limited.auth(), timeout=5).json()["count"]
    assert count == 0
    assert limited.session.patch(add, json={"person_ids": persons}, headers=limited.auth(), timeout=10).status_code == 200


def test_body_size_limit(limited: Server) -> None:
    set_limits(limited, max_body_bytes=2000)
    big = post_query(limited, "SELECT 1 -- " + "x" * 3000)
    assert big.status_code == 413 and big.json()["code"] == "request_too_large"


def test_blocking_answers_from_the_cache_and_force_blocking_recomputes(limited: Server) -> None:
    user = f"cache-{uuid.uuid4().hex[:8]}"
    count = f"SELECT count() FROM events WHERE distinct_id = '{user}'"
    first = post_query(limited, count, refresh="blocking").json()
    assert first["results"] == [[0]] and first["is_cached"] is False
    capture = limited.session.post(f"{limited.url}/i/v0/e/", json={"api_key": PROJECT_KEY, "event": "cache_probe",
                                                                    "distinct_id": user, "timestamp": "2025-01-02T00:00:00Z"},
                                   timeout=5)
    assert capture.status_code == 200
    cached = post_query(limited, count).json()  # no refresh: blocking
    assert cached["results"] == [[0]] and cached["is_cached"] is True and cached["last_refresh"]
    fresh = post_query(limited, count, refresh="force_blocking").json()
    assert fresh["results"] == [[1]] and fresh["is_cached"] is False
    set_limits(limited, cache_ttl_s=0.2)
    time.sleep(0.3)
    assert post_query(limited, count, refresh="blocking").json()["is_cached"] is False


def test_async_modes_answer_202_and_the_status_is_polled(limited: Server) -> None:
    started = post_query(limited, "SELECT count() FROM events", refresh="force_async")
    assert started.status_code == 202
    status = started.json()["query_status"]
    assert status["complete"] is False and status["query_async"] is True
    url = f"{limited.project}/query/{status['id']}/"
    for _ in range(100):
        polled = limited.session.get(url, headers=limited.auth(), timeout=10)
        if polled.status_code != 202:
            break
        time.sleep(0.05)
    assert polled.status_code == 200
    answer = polled.json()["query_status"]["results"]
    assert answer["results"][0][0] > 100_000 and answer["columns"] == ["count()"]
    failing = post_query(limited, "SELECT count() FROM no_such_table", refresh="async").json()["query_status"]
    for _ in range(100):
        polled = limited.session.get(f"{limited.project}/query/{failing['id']}/", headers=limited.auth(), timeout=10)
        if polled.status_code != 202:
            break
        time.sleep(0.05)
    assert polled.status_code == 400 and polled.json()["query_status"]["error_message"]
    assert limited.session.get(f"{limited.project}/query/{uuid.uuid4().hex}/", headers=limited.auth(),
                               timeout=5).status_code == 404
    assert post_query(limited, "SELECT 1", refresh="whenever").status_code == 400


def test_sigterm_stops_the_server_within_a_second_even_mid_query(data_dir: Path) -> None:
    srv = start_server(data_dir, "--no-limits", env=ENV)
    done: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: done.update(r=_try(lambda: post_query(srv, SLOW))))
    runner.start()
    time.sleep(0.5)
    srv.process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    try:
        code = srv.process.wait(timeout=10)
    finally:
        if srv.process.poll() is None:
            srv.process.kill()
    elapsed = time.monotonic() - started
    runner.join(timeout=10)
    print(f"stopped {elapsed:.3f} s after SIGTERM")
    assert code == 0 and elapsed < 1.0, f"exit {code} after {elapsed:.2f} s"


def _try(call: Any) -> Any:
    try:
        return call()
    except Exception as err:  # noqa: BLE001 - the connection may be cut by the stopping server
        return err
