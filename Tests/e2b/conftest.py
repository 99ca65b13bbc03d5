"""Fixtures: `sandbox-runner e2b-local` driven by E2B's official SDK (sync and async).

The binary is SANDBOX_RUNNER_BIN (default .build/debug/sandbox-runner under the repo root); the
SDK reaches it through E2B_API_URL and E2B_SANDBOX_URL, both the server's one URL. One plain-HTTP
server serves the session; the TLS tests start their own (`start_server`).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
from e2b_support import Server

REPO = Path(__file__).resolve().parents[2]
KEY = "e2b_local_test_key"


def binary() -> Path:
    path = Path(os.environ.get("SANDBOX_RUNNER_BIN", ".build/debug/sandbox-runner"))
    return path if path.is_absolute() else REPO / path


def start_server(*args: str) -> Server:
    exe = binary()
    if not exe.exists():
        pytest.fail(f"{exe} does not exist: build it (swift build) or set SANDBOX_RUNNER_BIN.")
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2B_")}
    env["E2B_API_KEY"] = KEY
    proc = subprocess.Popen([str(exe), "e2b-local", "--port", "0", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    prefix = "e2b-local listening on "
    if not first.startswith(prefix):
        proc.kill()
        pytest.fail(f"e2b-local did not start: {first!r} {proc.stderr.read() if proc.stderr else ''}")
    lines = [proc.stdout.readline().strip() for _ in range(2)]
    assert KEY not in lines[0] and "e2b_loc" in lines[0], "the key is shown masked"
    ca = None
    if "--tls-dir" in args:
        ca_line = proc.stdout.readline().strip()
        assert ca_line.startswith("ca: "), ca_line
        ca = ca_line[4:]
    return Server(url=first[len(prefix):], process=proc, ca=ca)


def stop_server(srv: Server) -> None:
    srv.process.send_signal(signal.SIGTERM)
    assert srv.process.wait(timeout=30) == 0


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    srv = start_server()
    saved = {k: v for k, v in os.environ.items() if k.startswith("E2B_")}
    for k in saved:
        del os.environ[k]
    os.environ.update({"E2B_API_URL": srv.url, "E2B_SANDBOX_URL": srv.url, "E2B_API_KEY": KEY})
    try:
        yield srv
    finally:
        for k in ("E2B_API_URL", "E2B_SANDBOX_URL", "E2B_API_KEY"):
            os.environ.pop(k, None)
        os.environ.update(saved)
        stop_server(srv)


@pytest.fixture
def local(server: Server) -> Iterator[Server]:
    """The server with faults cleared around the test; no sandbox may outlive the test."""
    server.local("DELETE", "/_local/faults")
    yield server
    server.local("DELETE", "/_local/faults")
    assert server.stats()["live_sandboxes"] == 0, "the test left a sandbox alive"
