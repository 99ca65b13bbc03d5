"""Fault injection (runtime and CLI), request statistics, /_local/ endpoints, clean shutdown."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
from phl_support import ENV, PROJECT_KEY, Server, start_server, stop_server


def arm(server: Server, *specs: object) -> None:
    response = server.session.post(f"{server.url}/_local/faults", json=list(specs), timeout=5)
    assert response.status_code == 200, response.text


def stats(server: Server) -> dict:
    return server.session.get(f"{server.url}/_local/stats", timeout=5).json()


def test_429_then_success_with_retry_after(local: Server) -> None:
    arm(local, "429:count=2:retry_after=3:path=/api/")
    codes = []
    for _ in range(3):
        response = local.session.get(f"{local.project}/insights/", headers=local.auth(), timeout=10)
        codes.append(response.status_code)
        if response.status_code == 429:
            assert response.headers["Retry-After"] == "3"
            body = response.json()
            assert body["type"] == "throttled_error" and body["code"] == "throttled"
            assert "3 seconds" in body["detail"]
    assert codes == [429, 429, 200]
    assert stats(local)["requests"]["GET /api/projects/7/insights/"] == 3


def test_5xx_on_capture_is_plain_text_and_path_scoped(local: Server) -> None:
    arm(local, {"kind": "503", "count": 1, "path": "/batch/"})
    event = {"api_key": PROJECT_KEY, "batch": [{"event": "test_fault", "distinct_id": "f",
                                                "timestamp": "2026-11-03T00:00:00Z"}]}
    assert local.session.get(f"{local.project}/insights/", headers=local.auth(), timeout=10).status_code == 200
    failed = local.session.post(f"{local.url}/batch/", json=event, timeout=10)
    assert failed.status_code == 503 and failed.headers["Content-Type"].startswith("text/plain")
    assert local.session.post(f"{local.url}/batch/", json=event, timeout=10).status_code == 200
    assert stats(local)["by_path"]["/batch/"] == 2


@pytest.mark.parametrize("kind", ["500", "502"])
def test_5xx_on_api_is_json(local: Server, kind: str) -> None:
    arm(local, f"{kind}:path=/api/")
    response = local.query("SELECT 1")
    assert response.status_code == int(kind) and response.json()["type"] == "server_error"
    assert local.query("SELECT 1").status_code == 200


def test_slow_and_drop(local: Server) -> None:
    arm(local, "slow:ms=400:path=/api/")
    started = time.monotonic()
    assert local.query("SELECT 1").status_code == 200
    assert time.monotonic() - started >= 0.4
    arm(local, "drop:count=1:path=/api/")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(f"{local.project}/query/", headers=local.auth(), timeout=10,
                      json={"query": {"kind": "HogQLQuery", "query": "SELECT 1"}})
    assert local.query("SELECT 1").status_code == 200
    assert stats(local)["requests"]["POST /api/projects/7/query/"] == 3


def test_fault_list_clear_and_bad_spec(local: Server) -> None:
    arm(local, "429:count=*:path=/nowhere/")
    listed = local.session.get(f"{local.url}/_local/faults", timeout=5).json()["faults"]
    assert listed[0]["kind"] == "429" and listed[0]["count"] is None
    local.session.delete(f"{local.url}/_local/faults", timeout=5)
    assert local.session.get(f"{local.url}/_local/faults", timeout=5).json()["faults"] == []
    bad = local.session.post(f"{local.url}/_local/faults", json=["418:count=1"], timeout=5)
    assert bad.status_code == 400 and "unknown fault kind" in bad.json()["detail"]


def test_truths_endpoint(local: Server) -> None:
    truths = local.session.get(f"{local.url}/_local/truths", timeout=5).json()
    assert truths["reference_time"] == "2026-11-01T00:00:00.000000Z"
    assert truths == local.truths()


def test_cli_fault_flag_and_sigterm(data_dir: Path) -> None:
    server = start_server(data_dir, "--fault", "503:count=1:path=/flags", env=ENV)
    try:
        body = {"api_key": PROJECT_KEY, "distinct_id": "user-00001"}
        assert server.session.post(f"{server.url}/flags?v=2", json=body, timeout=10).status_code == 503
        assert server.session.post(f"{server.url}/flags?v=2", json=body, timeout=10).status_code == 200
    finally:
        assert stop_server(server) == 0
