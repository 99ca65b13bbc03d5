"""Fixtures: the demo dataset (generated once, as `--demo` does), its true answers, and a
posthog-local of our own for the checks that need to look at the server after a run (API calls
made, the cohort created)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "posthog-local"))

from posthog_local.dataset import Dataset, load_dataset  # noqa: E402

BINARY = os.environ.get("SANDBOX_RUNNER_BIN", str(ROOT / ".build" / "debug" / "sandbox-runner"))
PERSONAL_KEY = "phx_demo_personal_key"
PROJECT_KEY = "phc_demo_project_key"


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


class Server:
    """A posthog-local we started: its URL, the environment that points a run at it, its stats."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("POSTHOG_")}
        self.env.update({"POSTHOG_API_URL": url, "POSTHOG_INGEST_URL": url, "POSTHOG_PERSONAL_API_KEY": PERSONAL_KEY,
                         "POSTHOG_PROJECT_API_KEY": PROJECT_KEY, "POSTHOG_PROJECT_ID": "1"})

    def request(self, method: str, path: str, auth: bool = True) -> Any:
        req = urllib.request.Request(self.url + path, method=method)
        if auth:
            req.add_header("Authorization", f"Bearer {PERSONAL_KEY}")
        with urllib.request.urlopen(req, timeout=30) as answer:
            body = answer.read()
        return json.loads(body) if body else None

    def reset_stats(self) -> None:
        self.request("DELETE", "/_local/stats", auth=False)

    def stats(self) -> dict[str, Any]:
        return self.request("GET", "/_local/stats", auth=False)

    def list_all(self, path: str) -> list[Any]:
        """Every item of a paginated list endpoint (following `next`)."""
        out: list[Any] = []
        page = self.request("GET", path + ("&" if "?" in path else "?") + "limit=1000")
        while True:
            out.extend(page["results"])
            if not page.get("next"):
                return out
            page = self.request("GET", page["next"][len(self.url):])


@pytest.fixture(scope="session")
def server(dataset: Dataset) -> Iterator[Server]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTHOG_")}
    proc = subprocess.Popen([sys.executable, str(ROOT / "tools" / "posthog-local" / "server.py"), "--host", "127.0.0.1",
                             "--port", "0", "--data", str(demo_data_dir())],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert "listening on http://" in line, f"posthog-local did not start: {line!r}"
        yield Server(line.split("listening on ", 1)[1].strip())
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
