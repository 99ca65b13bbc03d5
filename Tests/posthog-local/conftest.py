"""Fixtures: one posthog-local server per test session, over real loopback HTTP.

The dataset is generated once per session into a temporary directory (about 3 s), unless
POSTHOG_LOCAL_TEST_DATA names a directory to reuse (it is generated there when absent).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
from phl_support import ENV, SERVER, Server, start_server, stop_server


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shared = os.environ.get("POSTHOG_LOCAL_TEST_DATA")
    target = Path(shared) if shared else tmp_path_factory.mktemp("posthog-local") / "seed-42"
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(SERVER), "generate", str(target)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    print(f"dataset ready in {time.monotonic() - started:.1f}s")
    return target


@pytest.fixture(scope="session")
def server(data_dir: Path) -> Iterator[Server]:
    srv = start_server(data_dir, "--no-limits", env=ENV)  # tests that need the limits switch them on
    yield srv
    assert stop_server(srv) == 0


@pytest.fixture
def local(server: Server) -> Iterator[Server]:
    """The server with faults and stats cleared before and after the test."""
    server.session.delete(f"{server.url}/_local/faults", timeout=5)
    server.session.delete(f"{server.url}/_local/stats", timeout=5)
    yield server
    server.session.delete(f"{server.url}/_local/faults", timeout=5)
