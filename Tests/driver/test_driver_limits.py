"""The driver against PostHog's limits as posthog-local reproduces them (see Tests/posthog-local/
test_limits.py for the server's side and sources): waits as long as Retry-After asks within its
total budget, paces itself when told the budget, retries the concurrency limit, adds cohort
members 1,000 at a time, asks for fresh answers by default, and runs long queries in async mode.
"""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from driver_support import ROOT, SANDBOX, faults, requests_to, stats
from phl_support import PERSONAL_KEY, PROJECT_ID, PROJECT_KEY, Server

from posthog_driver import PostHogClient, RateLimitError

QUERY = f"/api/projects/{PROJECT_ID}/query/"
COHORTS = f"/api/projects/{PROJECT_ID}/cohorts/"


def set_limits(server: Server, **limits: Any) -> None:
    response = server.session.post(f"{server.url}/_local/limits", json={**limits, "reset_usage": True}, timeout=5)
    assert response.status_code == 200, response.text


@pytest.fixture
def limited(local: Server) -> Iterator[Server]:
    yield local
    local.session.delete(f"{local.url}/_local/limits", timeout=5)


def make(server: Server, **kwargs: Any) -> PostHogClient:
    settings: dict[str, Any] = {"api_url": server.url, "personal_api_key": PERSONAL_KEY, "project_api_key": PROJECT_KEY,
                                "project_id": PROJECT_ID, "backoff_base": 0.01, "backoff_cap": 0.05}
    settings.update(kwargs)
    return PostHogClient(**settings)


def patches(server: Server) -> int:
    return sum(n for k, n in stats(server)["requests"].items()
               if k.startswith(f"PATCH {COHORTS}") and k.endswith("/add_persons_to_static_cohort/"))


# --- cohorts: 1,000 persons per call ----------------------------------------------------------------

def test_a_1500_person_cohort_is_added_in_1000_person_batches(client: PostHogClient, local: Server) -> None:
    ids = [f"user-{n:05d}" for n in range(1, 1501)]
    cohort = client.create_cohort(f"fifteen hundred {uuid.uuid4().hex[:6]}", ids)
    assert cohort["persons_added"] == 1500 and cohort["unresolved"] == 0
    assert patches(local) == 2  # 1,000 + 500: PostHog refuses more than 1,000 in one call
    stored = local.session.get(f"{local.project}/cohorts/{cohort['id']}/", headers=local.auth(), timeout=5).json()
    assert stored["count"] == 1500


def render(name: str, variables: dict[str, Any]) -> str:
    manifest = json.loads((ROOT / "Templates" / name / "manifest.json").read_text())
    values = {v["name"]: v.get("default") for v in manifest["variables"]}
    values.update(variables)
    source = (ROOT / "Templates" / name / "template.py").read_text()
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: repr(values[m.group(1)]), source)


def test_churn_cohort_of_more_than_1000_users_is_created_whole(local: Server, tmp_path: Path) -> None:
    variables = {"cohort_name": f"big churn {uuid.uuid4().hex[:6]}", "inactive_days": 3, "lookback_days": 60,
                 "min_active_days": 1}
    (tmp_path / "template.py").write_text(render("create_churn_cohort", variables))
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTHOG_")}
    env.update({"POSTHOG_API_URL": local.url, "POSTHOG_PERSONAL_API_KEY": PERSONAL_KEY,
                "POSTHOG_PROJECT_API_KEY": PROJECT_KEY, "POSTHOG_PROJECT_ID": str(PROJECT_ID), "PYTHONPATH": str(SANDBOX)})
    result = subprocess.run(["/usr/bin/python3", "template.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout)
    expected = local.rows(
        "SELECT count() FROM (SELECT distinct_id FROM events WHERE timestamp >= now() - toIntervalDay(60) "
        "AND timestamp < now() GROUP BY distinct_id HAVING countIf(timestamp < now() - toIntervalDay(3)) >= 1 "
        "AND max(timestamp) < now() - toIntervalDay(3))")[0][0]
    assert expected > 1500 and answer["count"] == expected and answer["persons_added"] == expected
    stored = local.session.get(f"{local.project}/cohorts/{answer['cohort_id']}/", headers=local.auth(), timeout=5).json()
    assert stored["count"] == expected
    assert patches(local) == -(-expected // 1000)


# --- rate limit: waiting, pacing, resuming ----------------------------------------------------------

WINDOW = ("2026-10-20T00:00:00Z", "2026-10-22T00:00:00Z")


def _all_uuids(client: PostHogClient) -> list[str]:
    return [e["uuid"] for e in client.export_events(*WINDOW, columns=["uuid"], page_size=50_000)]


def test_export_under_a_small_query_budget_finishes_by_waiting(limited: Server) -> None:
    with make(limited) as c:
        expected = _all_uuids(c)
        limited.session.delete(f"{limited.url}/_local/stats", timeout=5)
        assert len([e for e in c.export_events(*WINDOW, columns=["uuid"], page_size=700)]) == len(expected)
    pages = requests_to(limited, "POST", QUERY)  # the queries of an unthrottled export
    assert len(expected) > 4000 and pages > 6
    limited.session.delete(f"{limited.url}/_local/stats", timeout=5)
    set_limits(limited, enabled=True, query_rate_spec="3/2s")  # compressed time: 3 queries per 2 s
    with make(limited, max_retry_wait=60) as c:
        got = [e["uuid"] for e in c.export_events(*WINDOW, columns=["uuid"], page_size=700)]
    assert got == expected  # every event once, in order: no duplicate, no gap
    by_status = stats(limited)["by_status"]
    assert by_status.get("429", 0) >= 2  # it did run into the limit and waited
    assert by_status.get("200") == pages  # each throttled page was asked again from its key, not from the start


def test_a_client_that_knows_the_budget_paces_itself(limited: Server) -> None:
    with make(limited) as c:
        expected = _all_uuids(c)
    set_limits(limited, enabled=True, query_rate_spec="3/2s")
    with make(limited, query_rate="3/2s", max_retry_wait=60) as c:
        got = [e["uuid"] for e in c.export_events(*WINDOW, columns=["uuid"], page_size=1500)]
    assert got == expected
    assert "429" not in stats(limited)["by_status"]


def test_the_wait_budget_bounds_a_call(limited: Server, slept: list[float]) -> None:
    set_limits(limited, enabled=True, query_rate_spec="1/60s")
    with make(limited, max_retry_wait=2) as c:
        c.query("SELECT 1")
        slept.clear()
        with pytest.raises(RateLimitError) as caught:
            c.query("SELECT 2")
    assert slept == []  # Retry-After (~60 s) is past the budget: no pointless sleep
    assert "2 s this call may wait" in str(caught.value) and caught.value.retry_after is not None


def test_concurrency_limit_without_retry_after_is_retried(limited: Server) -> None:
    set_limits(limited, enabled=True, concurrency=1, concurrency_wait_s=0.2, max_execution_s=2)
    slow = threading.Thread(target=lambda: limited.query(
        "SELECT count() FROM events a CROSS JOIN events b WHERE a.timestamp < b.timestamp"))
    slow.start()
    time.sleep(0.3)
    with make(limited, max_retry_wait=20) as c:
        assert c.query("SELECT 41 + 1 AS n").rows == [{"n": 42}]
    slow.join(timeout=30)
    assert stats(limited)["by_status"].get("429", 0) >= 1


def test_waits_show_at_info_and_as_a_progress_line(local: Server, tmp_path: Path) -> None:
    faults(local, {"kind": "429", "count": 1, "retry_after": 1, "path": QUERY})
    (tmp_path / "script.py").write_text(
        "from posthog_driver import PostHogClient\n"
        "with PostHogClient() as c:\n"
        "    print(c.query('SELECT 1 AS one').rows)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTHOG_")}
    env.update({"POSTHOG_API_URL": local.url, "POSTHOG_PERSONAL_API_KEY": PERSONAL_KEY, "POSTHOG_PROJECT_ID": str(PROJECT_ID),
                "PYTHONPATH": str(SANDBOX), "POSTHOG_LOG_LEVEL": "INFO"})
    result = subprocess.run(["/usr/bin/python3", "script.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[{'one': 1}]", result.stderr
    assert "posthog_driver INFO PostHog is rate-limiting these requests (HTTP 429 on POST" in result.stderr
    assert "posthog_driver: PostHog is rate-limiting these requests" in result.stderr  # the progress line
    assert PERSONAL_KEY not in result.stderr


def test_progress_lines_for_the_runner_only_when_asked(local: Server, tmp_path: Path) -> None:
    """SANDBOX_RUNNER_PROGRESS=1 (issue 16): the driver reports queries answered, rows exported and
    each rate-limit wait as `sandbox-runner-progress: {json}` lines on stderr; without it, none."""
    faults(local, {"kind": "429", "count": 1, "retry_after": 1, "path": QUERY})
    (tmp_path / "script.py").write_text(
        "from posthog_driver import PostHogClient, progress\n"
        "with PostHogClient() as c:\n"
        "    c.query('SELECT 1 AS one')\n"
        "    rows = sum(1 for _ in c.export_events('2026-10-25T00:00:00Z', '2026-10-25T02:00:00Z', page_size=3))\n"
        "progress('done', files=2)\n"
        "print(rows)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTHOG_", "SANDBOX_RUNNER_"))}
    env.update({"POSTHOG_API_URL": local.url, "POSTHOG_PERSONAL_API_KEY": PERSONAL_KEY, "POSTHOG_PROJECT_ID": str(PROJECT_ID),
                "PYTHONPATH": str(SANDBOX)})
    quiet = subprocess.run(["/usr/bin/python3", "script.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0, quiet.stderr
    assert "sandbox-runner-progress" not in quiet.stderr
    faults(local, {"kind": "429", "count": 1, "retry_after": 1, "path": QUERY})
    env["SANDBOX_RUNNER_PROGRESS"] = "1"
    result = subprocess.run(["/usr/bin/python3", "script.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = int(result.stdout)
    docs = [json.loads(line.split(": ", 1)[1]) for line in result.stderr.splitlines() if line.startswith("sandbox-runner-progress: ")]
    waits = [d for d in docs if d.get("waitSeconds", 0) > 0]
    assert waits and waits[0]["note"] == "PostHog's rate limit" and waits[0]["waitSeconds"] == 1
    assert any(d.get("waitSeconds") == 0 for d in docs)  # the wait's end
    assert docs[-1] == {**docs[-1], "note": "done", "files": 2}
    # Totals only grow; the export's rows and pages are all counted by the end.
    assert max(d.get("rows", 0) for d in docs) == rows > 6
    assert max(d.get("queries", 0) for d in docs) >= 1 + rows // 3
    assert PERSONAL_KEY not in result.stderr


# --- freshness and the async mode -----------------------------------------------------------------

def test_queries_ask_for_fresh_answers_unless_told_otherwise(client: PostHogClient, local: Server) -> None:
    user = f"fresh-{uuid.uuid4().hex[:8]}"
    hogql = "SELECT count() AS n FROM events WHERE distinct_id = {u}"
    # someone else's query filled PostHog's cache (refresh: blocking, PostHog's default)
    warm = local.session.post(f"{local.project}/query/", headers=local.auth(), timeout=10, json={
        "query": {"kind": "HogQLQuery", "query": hogql, "values": {"u": user}}})
    assert warm.json()["results"] == [[0]]
    client.capture_event("freshness_probe", user, timestamp="2025-02-03T00:00:00Z")
    assert client.query(hogql, {"u": user}).rows == [{"n": 1}]  # force_blocking: recomputed
    assert client.query(hogql, {"u": user}, refresh="blocking").rows == [{"n": 1}]  # now the cache holds 1
    client.capture_event("freshness_probe", user, timestamp="2025-02-03T00:00:01Z")
    cached = client.query(hogql, {"u": user}, refresh="blocking")  # a template that opts into the cache
    assert cached.rows == [{"n": 1}] and cached["is_cached"] is True
    assert client.query(hogql, {"u": user}).rows == [{"n": 2}]
    refreshes = [q["refresh"] for q in local.session.get(f"{local.url}/_local/queries", timeout=5).json()["queries"][-4:]]
    assert refreshes == ["force_blocking", "blocking", "blocking", "force_blocking"]


def test_a_query_that_may_outlive_the_gateway_runs_async_and_is_polled(client: PostHogClient, local: Server) -> None:
    answer = client.query("SELECT count() AS n FROM events", timeout=300)
    assert answer.rows[0]["n"] > 100_000
    sent = local.session.get(f"{local.url}/_local/queries", timeout=5).json()["queries"][-1]
    assert sent["refresh"] == "force_async"
    assert sum(n for k, n in stats(local)["requests"].items() if k.startswith(f"GET {QUERY}")) >= 1


def test_a_short_query_stays_synchronous(client: PostHogClient, local: Server) -> None:
    client.query("SELECT 1", timeout=30)
    assert local.session.get(f"{local.url}/_local/queries", timeout=5).json()["queries"][-1]["refresh"] == "force_blocking"
    assert not any(k.startswith(f"GET {QUERY}") for k in stats(local)["requests"])


def test_driver_logs_no_wait_below_info(local: Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="posthog_driver")
    faults(local, {"kind": "429", "count": 2, "retry_after": 0, "path": QUERY})
    with make(local) as c:
        assert c.query("SELECT 1 AS x").rows == [{"x": 1}]
    waits = [r for r in caplog.records if "rate-limiting" in r.getMessage()]
    assert len(waits) == 2 and all(r.levelno == logging.INFO for r in waits)
    assert requests_to(local, "POST", QUERY) == 3


def test_pacing_never_sleeps_past_the_wait_budget(local: Server, slept: list[float]) -> None:
    with make(local, query_rate="1/60s", max_retry_wait=2) as c:
        c.query("SELECT 1")
        slept.clear()
        with pytest.raises(RateLimitError) as caught:
            c.query("SELECT 2")
    assert sum(slept) <= 2 and "budget (1 per 60 s) is spent" in str(caught.value)
    assert requests_to(local, "POST", QUERY) == 1  # the second query was never sent
