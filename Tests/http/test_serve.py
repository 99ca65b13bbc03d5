"""`sandbox-runner serve` on loopback: auth refusals, schemas, a run, one error document for every
4xx, 405 with Allow, body and queue limits, OpenAPI, and graceful shutdown on SIGTERM."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

import jsonschema
import pytest
import requests

from serve_support import AUTH, BINARY, ROOT, TOKEN, start

ERROR_KEYS = {"error", "errorKind", "status"}


def assert_error(r: requests.Response, status: int, kind: str) -> dict:
    """The one error document of every 4xx/5xx, validated against the OpenAPI Error schema."""
    assert r.status_code == status, r.text
    doc = r.json()
    jsonschema.validate(doc, OPENAPI["components"]["schemas"]["Error"])
    assert doc["status"] == status and doc["errorKind"] == kind and ERROR_KEYS <= set(doc)
    assert "success" not in doc and "output" not in doc  # never a result document
    return doc


OPENAPI: dict = {}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    proc, url = start("--demo", "--max-concurrent", "1", "--queue", "0")
    OPENAPI.update(requests.get(f"{url}/openapi.json", timeout=10).json())
    yield url
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_refuses_to_start_without_a_token():
    out = subprocess.run([BINARY, "serve", "--port", "0"], capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k != "SANDBOX_RUNNER_TOKEN"}, timeout=30)
    assert out.returncode == 64 and "SANDBOX_RUNNER_TOKEN" in out.stderr
    out = subprocess.run([BINARY, "serve", "--port", "0", "--host", "0.0.0.0", "--no-auth"], capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k != "SANDBOX_RUNNER_TOKEN"}, timeout=30)
    assert out.returncode == 64 and "loopback" in out.stderr


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}])
def test_auth_refusals(server, headers):
    r = requests.get(f"{server}/v1/templates", headers=headers, timeout=10)
    assert_error(r, 401, "unauthorized")
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert TOKEN not in r.text


def test_health_and_openapi_are_public(server):
    assert requests.get(f"{server}/healthz", timeout=10).json()["ok"] is True
    doc = requests.get(f"{server}/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.1")
    assert {"/v1/templates", "/v1/templates/{name}", "/v1/runs", "/healthz"} <= set(doc["paths"])
    assert "variables_identify_churn_risk" in doc["components"]["schemas"]


def test_templates_with_schemas(server):
    listed = requests.get(f"{server}/v1/templates", headers=AUTH, timeout=10).json()["templates"]
    assert len(listed) == 14
    one = requests.get(f"{server}/v1/templates/identify_churn_risk", headers=AUTH, timeout=10).json()
    assert one["inputSchema"]["properties"]["lookback_days"]["maximum"] == 365
    assert_error(requests.get(f"{server}/v1/templates/nope", headers=AUTH, timeout=10), 404, "notFound")


def test_a_run_and_its_errors(server):
    r = requests.post(f"{server}/v1/runs", headers=AUTH, json={"template": "top_events", "variables": {"days": 7, "limit": 3}}, timeout=60)
    assert r.status_code == 200
    doc = r.json()
    assert doc["success"] is True and len(doc["data"]["events"]) == 3
    # Bad variables are the same error document as every other 4xx, naming the JSON field.
    bad = assert_error(requests.post(f"{server}/v1/runs", headers=AUTH, json={"template": "top_events", "variables": {"days": "seven"}},
                                     timeout=60), 400, "badInput")
    assert bad["field"] == "variables.days" and "variables.days" in bad["error"] and "--var" not in bad["error"]
    bad = assert_error(requests.post(f"{server}/v1/runs", headers=AUTH, json={"template": "user_activity_timeline", "variables": {}},
                                     timeout=60), 400, "badInput")
    assert bad["field"] == "variables.distinct_id" and "Pass it as variables.distinct_id" in bad["error"]
    bad = assert_error(requests.post(f"{server}/v1/runs", headers=AUTH, json={"script": "print(1)", "timeoutSeconds": 0}, timeout=10),
                       400, "badInput")
    assert bad["field"] == "timeoutSeconds"
    assert_error(requests.post(f"{server}/v1/runs", headers=AUTH, json={"template": "nope"}, timeout=10), 404, "notFound")
    assert_error(requests.post(f"{server}/v1/runs", headers=AUTH, json={"template": "top_events", "extra": 1}, timeout=10), 400, "badInput")
    assert_error(requests.post(f"{server}/v1/runs", headers=AUTH, json={}, timeout=10), 400, "badInput")
    assert_error(requests.post(f"{server}/v1/runs", headers=AUTH, json={"script": "print(1)", "backend": ""}, timeout=10), 400, "badInput")
    assert_error(requests.post(f"{server}/v1/runs", headers=AUTH, data="not json", timeout=10), 400, "badInput")
    assert_error(requests.post(f"{server}/v1/runs", headers=AUTH, json={"script": "x" * (2 << 20)}, timeout=30), 413, "tooLarge")
    assert_error(requests.get(f"{server}/no/such/route", headers=AUTH, timeout=10), 404, "notFound")


@pytest.mark.parametrize("method,path,allow", [
    ("PUT", "/v1/runs", "POST"), ("DELETE", "/v1/templates", "GET"), ("TRACE", "/healthz", "GET"),
    ("PATCH", "/v1/templates/top_events", "GET"), ("POST", "/v1/runs/some-id", "GET, DELETE"), ("PUT", "/openapi.json", "GET"),
])
def test_wrong_methods_are_405_with_allow(server, method, path, allow):
    """On main these were 404s."""
    r = requests.request(method, f"{server}{path}", headers=AUTH, timeout=10)
    assert_error(r, 405, "methodNotAllowed")
    assert r.headers["Allow"] == allow


def test_queue_limit_answers_429(server):
    slow = {"script": "import time\ntime.sleep(3)\nprint('{}')"}
    first: dict = {}
    t = threading.Thread(target=lambda: first.update(r=requests.post(f"{server}/v1/runs", headers=AUTH, json=slow, timeout=60)))
    t.start()
    time.sleep(1.0)
    second = requests.post(f"{server}/v1/runs", headers=AUTH, json=slow, timeout=60)
    t.join()
    assert_error(second, 429, "rateLimited")
    assert int(second.headers["Retry-After"]) > 0
    assert first["r"].status_code == 200 and first["r"].json()["success"] is True


def test_sigterm_finishes_running_sandboxes_then_exits():
    proc, url = start("--grace", "1")
    result: dict = {}
    slow = {"script": "import time\ntime.sleep(30)"}
    t = threading.Thread(target=lambda: result.update(r=requests.post(f"{url}/v1/runs", headers=AUTH, json=slow, timeout=60)))
    t.start()
    time.sleep(1.0)
    start_ = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=30)
    t.join(timeout=30)
    assert code == 0 and time.monotonic() - start_ < 15
    # The run was killed after the grace period and still answered.
    assert result["r"].json()["success"] is False and result["r"].json()["errorKind"] == "cancelled"
    access = [json.loads(line) for line in proc.stderr.read().splitlines() if line.startswith("{")]
    assert any(a["path"] == "/v1/runs" and a.get("runId") for a in access)
    assert all(TOKEN not in json.dumps(a) for a in access)
