"""Fixtures: the demo dataset (generated once, as `--demo` does) and its true answers."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "posthog-local"))

from posthog_local.dataset import Dataset, load_dataset  # noqa: E402

BINARY = os.environ.get("SANDBOX_RUNNER_BIN", str(ROOT / ".build" / "debug" / "sandbox-runner"))


def demo_data_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "sandbox-runner" / "posthog-local" / "seed-42"


@pytest.fixture(scope="session")
def dataset() -> Dataset:
    target = demo_data_dir()
    if not (target / "meta.json").exists():
        subprocess.run([sys.executable, str(ROOT / "tools" / "posthog-local" / "server.py"), "generate", str(target)],
                       check=True, capture_output=True, timeout=300)
    return load_dataset(target)
