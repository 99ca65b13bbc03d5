"""Fixtures of the egress tests: the host-side things a script must not reach."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from egress_support import AbstractSocket, Listener, start_serve, stop  # noqa: E402


@pytest.fixture
def listener() -> Iterator[Listener]:
    srv = Listener()
    yield srv
    srv.close()


@pytest.fixture
def abstract_socket() -> Iterator[AbstractSocket]:
    srv = AbstractSocket()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def runner_api() -> Iterator[int]:
    proc, port = start_serve()
    yield port
    stop(proc)
