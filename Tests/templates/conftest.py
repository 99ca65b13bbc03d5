"""Fixtures: the demo dataset (generated once, as `--demo` does), and posthog-locals of our own:
`server` over the demo dataset (both demo projects: UTC with Monday weeks, and New York with Sunday
weeks) for the checks that need to look at the server after a run, and `scenario` for hand-built
cases whose answers are worked out by hand (it receives captured events, so it is kept apart from
the server whose answers must stay the dataset's)."""
from __future__ import annotations

import subprocess
import sys
from typing import Iterator

import pytest
from templates_support import ROOT, Server, _serve, demo_data_dir

from posthog_local.dataset import Dataset, load_dataset


@pytest.fixture(scope="session")
def dataset() -> Dataset:
    target = demo_data_dir()
    if not (target / "meta.json").exists():
        subprocess.run([sys.executable, str(ROOT / "tools" / "posthog-local" / "server.py"), "generate", str(target)],
                       check=True, capture_output=True, timeout=300)
    return load_dataset(target)


@pytest.fixture(scope="session")
def server(dataset: Dataset) -> Iterator[Server]:
    yield from _serve(dataset)


@pytest.fixture(scope="module")
def scenario(dataset: Dataset) -> Iterator[Server]:
    yield from _serve(dataset)
