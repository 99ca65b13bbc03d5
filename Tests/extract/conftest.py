"""Fixtures: a posthog-local that keeps re-sent events (as PostHog does until a merge)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from extract_support import Server, serve  # noqa: E402


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    yield from serve("--no-limits", "--keep-duplicate-uuids")
