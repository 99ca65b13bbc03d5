"""Helpers for the driver tests: posthog-local faults and stats, key scanning, data locations."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from phl_support import PERSONAL_KEY, PROJECT_KEY, READONLY_KEY, Server

BULK_EVENTS = 1_000_000
KEYS = (PERSONAL_KEY, PROJECT_KEY, READONLY_KEY)
ROOT = Path(__file__).resolve().parents[2]
SANDBOX = ROOT / "sandbox"


def cache_dir(name: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "sandbox-runner" / "posthog-local" / name


def faults(server: Server, *specs: Any) -> None:
    response = server.session.post(f"{server.url}/_local/faults", json=list(specs), timeout=5)
    assert response.status_code == 200, response.text


def stats(server: Server) -> dict[str, Any]:
    return server.session.get(f"{server.url}/_local/stats", timeout=5).json()


def requests_to(server: Server, method: str, path: str) -> int:
    return int(stats(server)["requests"].get(f"{method} {path}", 0))


def clear(server: Server) -> None:
    server.session.delete(f"{server.url}/_local/faults", timeout=5)
    server.session.delete(f"{server.url}/_local/stats", timeout=5)


def assert_no_key(*texts: Any, keys: Iterable[str] = KEYS) -> None:
    """No API key (nor a long fragment of one) in any of the texts."""
    for text in texts:
        s = str(text)
        for key in keys:
            assert key not in s, f"a key leaked into: {s[:200]}"
            assert key[4:20] not in s, f"part of a key leaked into: {s[:200]}"
