"""Fixtures: the driver (imported from sandbox/) against posthog-local over real loopback HTTP.

One server per session (the seed-42 dataset, generated once into the user cache unless
POSTHOG_LOCAL_TEST_DATA names a directory), with test keys including a read-only one; a second
server with 1,000,000 bulk events starts only for the export-memory test.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "sandbox"))
sys.path.insert(0, str(ROOT / "Tests" / "posthog-local"))
sys.path.insert(0, str(HERE))

from driver_support import BULK_EVENTS, cache_dir, clear  # noqa: E402
from phl_support import ENV, PERSONAL_KEY, PROJECT_ID, PROJECT_KEY, Server, start_server, stop_server  # noqa: E402

import posthog_driver  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: exports a million events (about a minute); deselect with -m 'not slow'")


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    data = Path(os.environ["POSTHOG_LOCAL_TEST_DATA"]) if os.environ.get("POSTHOG_LOCAL_TEST_DATA") \
        else cache_dir("seed-42-v2")
    srv = start_server(data, "--no-limits", env=ENV)  # tests that need the limits switch them on
    yield srv
    assert stop_server(srv) == 0


@pytest.fixture(scope="session")
def bulk_server() -> Iterator[Server]:
    srv = start_server(cache_dir(f"bulk-{BULK_EVENTS}-seed-42-v2"), "--bulk-events", str(BULK_EVENTS), "--no-limits", env=ENV)
    yield srv
    assert stop_server(srv) == 0


@pytest.fixture
def local(server: Server) -> Iterator[Server]:
    """The server with faults and request stats cleared before and after the test."""
    clear(server)
    yield server
    clear(server)


@pytest.fixture
def client(local: Server) -> Iterator[posthog_driver.PostHogClient]:
    """A client of the local server; retries wait at most 0.05 s each unless a test says otherwise."""
    with posthog_driver.PostHogClient(api_url=local.url, personal_api_key=PERSONAL_KEY,
                                      project_api_key=PROJECT_KEY, project_id=PROJECT_ID, max_retry_wait=10,
                                      backoff_base=0.01, backoff_cap=0.05) as c:
        yield c


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every time.sleep the driver asks for during the test (still slept): "no pointless wait" is
    then checked on what the driver decided, not on a wall clock that a loaded machine stretches."""
    import time

    calls: list[float] = []
    real = time.sleep

    def recording(seconds: float) -> None:
        calls.append(seconds)
        real(seconds)

    monkeypatch.setattr(time, "sleep", recording)
    return calls
