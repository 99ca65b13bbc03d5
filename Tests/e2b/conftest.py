"""Fixtures: `sandbox-runner e2b-local` driven by E2B's official SDK (sync and async).

The binary is SANDBOX_RUNNER_BIN (default .build/debug/sandbox-runner under the repo root); the
SDK reaches it through E2B_API_URL and E2B_SANDBOX_URL, both the server's one URL. One plain-HTTP
server serves the session; the TLS tests start their own (`start_server`).
"""

from __future__ import annotations

import os
from typing import Iterator

import pytest
from e2b_support import KEY, Server, start_server, stop_server

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
