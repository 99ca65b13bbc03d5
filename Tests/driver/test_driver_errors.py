"""Error mapping, retries and backoff, against posthog-local's real answers and injected faults.
Every error message and log record is checked for keys."""
from __future__ import annotations

import logging
import socket
import time
from typing import Any, Callable, Iterator

import pytest
from driver_support import assert_no_key, faults, requests_to, stats
from phl_support import PERSONAL_KEY, PROJECT_ID, PROJECT_KEY, READONLY_KEY, Server

from posthog_driver import (AuthenticationError, BadRequestError, ConnectionFailedError, NotFoundError,
                            PermissionDeniedError, PostHogClient, PostHogError, QueryError, RateLimitError,
                            RequestTimeoutError, ServerError)

QUERY = f"/api/projects/{PROJECT_ID}/query/"
PROJECT = f"/api/projects/{PROJECT_ID}/"
COHORTS = f"/api/projects/{PROJECT_ID}/cohorts/"


@pytest.fixture(autouse=True)
def driver_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every driver record at DEBUG, checked for keys after each test."""
    caplog.set_level(logging.DEBUG, logger="posthog_driver")
    yield caplog
    for record in caplog.records:
        assert_no_key(record.getMessage(), record.args)


def make(server: Server, **kwargs: Any) -> PostHogClient:
    settings: dict[str, Any] = {"api_url": server.url, "personal_api_key": PERSONAL_KEY,
                                "project_api_key": PROJECT_KEY, "project_id": PROJECT_ID,
                                "backoff_base": 0.01, "backoff_cap": 0.05, "max_retry_wait": 10}
    settings.update(kwargs)
    return PostHogClient(**settings)


def raises(kind: type[PostHogError], call: Callable[[], Any]) -> PostHogError:
    with pytest.raises(kind) as info:
        call()
    err = info.value
    assert_no_key(str(err), repr(err), err.args, getattr(err, "detail", None))
    assert str(err).strip() and "\n" not in str(err)
    assert "{" not in str(err) or isinstance(err, QueryError)  # no raw JSON body
    return err


# -- status mapping -------------------------------------------------------------------------------

def test_no_personal_key_fails_before_any_request(local: Server) -> None:
    with make(local, personal_api_key=None) as c:
        c.settings.personal_api_key = None  # the environment of the test process may hold one
        err = raises(AuthenticationError, lambda: c.query("SELECT 1"))
    assert "POSTHOG_PERSONAL_API_KEY" in str(err)
    assert stats(local)["total"] == 0


def test_no_project_key_fails_before_any_request(local: Server) -> None:
    with make(local) as c:
        c.settings.project_api_key = None
        err = raises(AuthenticationError, lambda: c.capture_event("e", "u"))
    assert "POSTHOG_PROJECT_API_KEY" in str(err)
    assert stats(local)["total"] == 0


@pytest.mark.parametrize("key", ["phx_wrong_key_0123456789abcdef", PROJECT_KEY])
def test_wrong_personal_key_is_401(local: Server, key: str) -> None:
    with make(local, personal_api_key=key) as c:
        err = raises(AuthenticationError, lambda: c.query("SELECT 1"))
    assert err.status == 401 and err.code == "authentication_failed" and err.attempts == 1
    assert "POSTHOG_PERSONAL_API_KEY" in str(err)
    assert_no_key(str(err), keys=[key])
    assert requests_to(local, "POST", QUERY) == 1  # 401 is not retried


def test_wrong_project_key_is_401_on_capture_and_flags(local: Server) -> None:
    with make(local, project_api_key="phc_wrong_key_0123456789abcdef") as c:
        err = raises(AuthenticationError, lambda: c.capture_event("e", "u"))
        assert "POSTHOG_PROJECT_API_KEY" in str(err)
        raises(AuthenticationError, lambda: c.evaluate_flag("new-onboarding", "user-00001"))
    assert_no_key(str(err), keys=["phc_wrong_key_0123456789abcdef"])


def test_read_only_key_is_403_naming_the_scope(local: Server) -> None:
    with make(local, personal_api_key=READONLY_KEY) as c:
        assert c.query("SELECT 1")["results"] == [[1]]  # reads work
        err = raises(PermissionDeniedError, lambda: c.create_cohort("not allowed", ["user-00001"]))
    assert err.status == 403 and "cohort:write" in str(err)
    assert requests_to(local, "POST", COHORTS) == 1


def test_other_project_is_403(local: Server) -> None:
    with make(local, project_id=PROJECT_ID + 1000) as c:
        err = raises(PermissionDeniedError, c.get_project_info)
    assert "POSTHOG_PROJECT_ID" in str(err)


def test_missing_resource_is_404(client: PostHogClient) -> None:
    err = raises(NotFoundError, lambda: client.get_cohort(987654))
    assert err.status == 404 and err.path == f"/api/projects/{PROJECT_ID}/cohorts/987654/"


@pytest.mark.parametrize(("hogql", "values", "fragment"), [
    ("SELEC event FROM events", None, ""),
    ("SELECT nope FROM no_such_table", None, "no_such_table"),
    ("SELECT event FROM events WHERE event = {missing}", {"other": 1}, "Unresolved placeholder"),
    ("SELECT event FROM events ORDER BY timestamp LIMIT 10 OFFSET 10", None, "keyset"),
    ("SELECT unknownFunction(event) FROM events", None, "unknownfunction"),
])
def test_bad_hogql_is_a_query_error_with_detail(client: PostHogClient, local: Server, hogql: str,
                                                 values: dict[str, Any] | None, fragment: str) -> None:
    err = raises(QueryError, lambda: client.query(hogql, values))
    assert err.status == 400 and err.detail and fragment.lower() in err.detail.lower()
    assert str(err).startswith("PostHog rejected the HogQL query: ")
    assert requests_to(local, "POST", QUERY) == 1  # a 400 is not retried


def test_query_error_detail_never_carries_a_key(client: PostHogClient) -> None:
    err = raises(QueryError, lambda: client.query(f"SELECT {PERSONAL_KEY} FROM events"))
    assert "[REDACTED]" in str(err) or PERSONAL_KEY not in str(err)


def test_other_400s_keep_the_detail(client: PostHogClient, local: Server) -> None:
    err = raises(BadRequestError, lambda: client._api("POST", "cohorts/", body={"name": ""}, idempotent=False))
    assert err.status == 400 and "required" in (err.detail or "")
    assert not isinstance(err, QueryError)


# -- retries --------------------------------------------------------------------------------------

def test_429_honours_retry_after_then_succeeds(local: Server) -> None:
    faults(local, {"kind": "429", "count": 2, "retry_after": 1, "path": "/api/"})
    with make(local) as c:
        started = time.monotonic()
        assert c.query("SELECT 1")["results"] == [[1]]
        elapsed = time.monotonic() - started
    assert requests_to(local, "POST", QUERY) == 3
    assert stats(local)["by_status"] == {"429": 2, "200": 1}
    assert elapsed >= 2.0  # two waits of at least Retry-After: 1 s


def test_429_retried_even_for_a_create(local: Server) -> None:
    faults(local, {"kind": "429", "count": 1, "retry_after": 0, "path": COHORTS, "method": "POST"})
    with make(local) as c:
        cohort = c.create_cohort("after a 429", ["user-00001"])
    assert cohort["count"] == 1
    assert requests_to(local, "POST", COHORTS) == 2


def test_retry_after_beyond_the_budget_fails_at_once(local: Server, slept: list[float]) -> None:
    faults(local, {"kind": "429", "count": "*", "retry_after": 60, "path": "/api/"})
    with make(local, max_retry_wait=5) as c:
        err = raises(RateLimitError, lambda: c.query("SELECT 1"))
    assert slept == []
    assert err.retry_after == 60 and err.status == 429 and "60" in str(err)
    assert requests_to(local, "POST", QUERY) == 1


@pytest.mark.parametrize("kind", ["500", "502", "503"])
def test_5xx_retried_then_success(client: PostHogClient, local: Server, kind: str) -> None:
    faults(local, {"kind": kind, "count": 2, "path": PROJECT})
    assert client.get_project_info()["id"] == PROJECT_ID
    assert requests_to(local, "GET", PROJECT) == 3


def test_dropped_connection_is_retried(client: PostHogClient, local: Server) -> None:
    faults(local, {"kind": "drop", "count": 2, "path": QUERY})
    assert client.query("SELECT 1")["results"] == [[1]]
    assert requests_to(local, "POST", QUERY) == 3


def test_capture_is_retried_and_stays_deduplicated(client: PostHogClient, local: Server) -> None:
    faults(local, {"kind": "drop", "count": 1, "path": "/i/v0/e/"}, {"kind": "503", "count": 1, "path": "/i/v0/e/"})
    uid = client.capture_event("driver_retry_capture", "retry-user", timestamp="2025-04-01T00:00:00Z")
    assert requests_to(local, "POST", "/i/v0/e/") == 3
    assert client.rows("SELECT count() AS n FROM events WHERE uuid = {u}", {"u": uid}) == [{"n": 1}]


def test_retries_exhausted_give_a_typed_error(local: Server) -> None:
    faults(local, {"kind": "503", "count": "*", "path": QUERY})
    with make(local, max_retries=3) as c:
        err = raises(ServerError, lambda: c.query("SELECT 1"))
    assert err.status == 503 and err.attempts == 4 and "after 4 attempts" in str(err)
    assert requests_to(local, "POST", QUERY) == 4


def test_total_wait_is_bounded(local: Server, slept: list[float]) -> None:
    faults(local, {"kind": "503", "count": "*", "path": QUERY})
    with make(local, max_retries=50, backoff_base=0.2, backoff_cap=0.4, max_retry_wait=1.0) as c:
        raises(ServerError, lambda: c.query("SELECT 1"))
    assert 0 < sum(slept) <= 1.0
    assert requests_to(local, "POST", QUERY) < 50


def test_a_create_is_not_retried_after_a_5xx_or_a_drop(local: Server) -> None:
    faults(local, {"kind": "500", "count": 1, "path": COHORTS, "method": "POST"})
    with make(local) as c:
        raises(ServerError, lambda: c.create_cohort("not retried", ["user-00001"]))
        assert requests_to(local, "POST", COHORTS) == 1
        faults(local, {"kind": "drop", "count": 1, "path": COHORTS, "method": "POST"})
        err = raises(ConnectionFailedError, lambda: c.create_cohort("not retried either", ["user-00001"]))
    assert "may or may not" in str(err)
    assert requests_to(local, "POST", COHORTS) == 2


def test_adding_persons_is_retried_and_failure_names_the_cohort(local: Server) -> None:
    add = f"/api/projects/{PROJECT_ID}/cohorts/"
    with make(local) as c:
        faults(local, {"kind": "503", "count": "*", "method": "PATCH"})
        err = raises(ServerError, lambda: c.create_cohort("half made", ["user-00001"]))
    assert str(err).startswith("Cohort ") and "was created but adding its persons failed" in str(err)
    patches = sum(n for k, n in stats(local)["requests"].items() if k.startswith("PATCH " + add))
    assert patches == 5  # 1 + max_retries (4)


def test_timeout(local: Server) -> None:
    faults(local, {"kind": "slow", "count": 1, "ms": 1500, "path": PROJECT})
    with make(local, timeout=0.3, max_retries=0) as c:
        err = raises(RequestTimeoutError, c.get_project_info)
        assert "POSTHOG_TIMEOUT" in str(err)
        time.sleep(1.3)  # let the slow request finish on the server
        assert c.get_project_info()["id"] == PROJECT_ID  # a fresh connection works


def test_timeout_is_retried_for_reads(local: Server) -> None:
    faults(local, {"kind": "slow", "count": 1, "ms": 800, "path": PROJECT})
    with make(local, timeout=0.3) as c:
        assert c.get_project_info()["id"] == PROJECT_ID
    assert requests_to(local, "GET", PROJECT) == 2


def test_unreachable_host_is_a_connection_error(local: Server) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with make(local, api_url=f"http://127.0.0.1:{port}", max_retries=2) as c:
        err = raises(ConnectionFailedError, c.get_project_info)
        # nothing could have been sent, so even a create may be retried
        raises(ConnectionFailedError, lambda: c._api("POST", "cohorts/", body={"name": "x"}, idempotent=False))
    assert "Cannot connect" in str(err) and "POSTHOG_API_URL" in str(err) and err.attempts == 3


def test_keep_alive_survives_the_server_closing_idle_connections(client: PostHogClient, local: Server) -> None:
    assert client.get_project_info()["id"] == PROJECT_ID
    for conns in client._http._idle.values():  # the server "closes" them while they sit idle
        for conn in conns:
            conn.sock.shutdown(socket.SHUT_RD)
    assert client.create_cohort("after idle close", ["user-00002"])["count"] == 1
    assert requests_to(local, "POST", COHORTS) == 1


def test_logs_say_what_happened_without_keys(local: Server, driver_logs: pytest.LogCaptureFixture) -> None:
    faults(local, {"kind": "503", "count": 1, "path": "/api/"})
    with make(local) as c:
        c.get_persons(search="secret-search-term")
        c.capture_event("driver_log_test", "log-user", timestamp="2025-05-01T00:00:00Z")
    messages = [r.getMessage() for r in driver_logs.records]
    assert any("GET /api/projects/%d/persons/ -> 200" % PROJECT_ID in m for m in messages)
    assert any("HTTP 503; retrying" in m for m in messages)
    assert all("secret-search-term" not in m for m in messages)  # query strings are never logged
    assert any(r.levelno == logging.WARNING for r in driver_logs.records)
