"""Fixtures for the MCP tests: an anyio backend and a `serve --demo` for MCP over Streamable HTTP."""
from __future__ import annotations

import os
import signal
import subprocess
from typing import Iterator

import pytest

from mcp_support import BINARY, TOKEN


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def http_server() -> Iterator[tuple[subprocess.Popen, str]]:
    env = {**os.environ, "SANDBOX_RUNNER_TOKEN": TOKEN}
    proc = subprocess.Popen([BINARY, "serve", "--port", "0", "--demo"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env)
    line = proc.stdout.readline()
    assert "listening on " in line
    yield proc, line.split("listening on ", 1)[1].strip()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
