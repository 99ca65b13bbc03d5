"""What the template tests share: the binary, the demo projects, the demo dataset's directory, and
posthog-locals of our own (started by the fixtures in conftest.py). A module of its own, not
conftest.py, so that test files import it by a name no other test directory uses."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "posthog-local"))

from posthog_local import generator  # noqa: E402
from posthog_local.dataset import Dataset  # noqa: E402
from posthog_local.timeutil import parse_iso, to_ms  # noqa: E402

BINARY = os.environ.get("SANDBOX_RUNNER_BIN", str(ROOT / ".build" / "debug" / "sandbox-runner"))
PERSONAL_KEY = "phx_demo_personal_key"
PROJECTS = {  # the two demo projects of posthog-local (tools/posthog-local/posthog_local/config.py)
    "utc": {"id": "1", "key": "phc_demo_project_key", "timezone": "UTC", "week_start_day": 1},
    "new_york": {"id": "2", "key": "phc_demo_ny_project_key", "timezone": "America/New_York", "week_start_day": 0},
}


def demo_data_dir() -> Path:
    """Where `--demo` keeps the default dataset (the generator decides: seed, version)."""
    return generator.default_data_dir(generator.DEFAULT_SEED, generator.DEFAULT_USERS,
                                      to_ms(parse_iso(generator.DEFAULT_NOW)))


class Server:
    """A posthog-local we started: its URL, the environment that points a run at one of its
    projects, its stats."""

    def __init__(self, url: str) -> None:
        self.url = url

    def env(self, project: str = "utc") -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("POSTHOG_")}
        env.update({"POSTHOG_API_URL": self.url, "POSTHOG_INGEST_URL": self.url, "POSTHOG_PERSONAL_API_KEY": PERSONAL_KEY,
                    "POSTHOG_PROJECT_API_KEY": PROJECTS[project]["key"], "POSTHOG_PROJECT_ID": PROJECTS[project]["id"]})
        return env

    def request(self, method: str, path: str, auth: bool = True, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, method=method, data=data,
                                     headers={"Content-Type": "application/json"} if data else {})
        if auth:
            req.add_header("Authorization", f"Bearer {PERSONAL_KEY}")
        with urllib.request.urlopen(req, timeout=30) as answer:
            raw = answer.read()
        return json.loads(raw) if raw else None

    def capture(self, events: list[dict[str, Any]], project: str = "utc") -> None:
        assert self.request("POST", "/batch/", auth=False,
                            body={"api_key": PROJECTS[project]["key"], "batch": events}) == {"status": 1}

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


def _serve(dataset: Dataset, data_dir: Path | None = None) -> Iterator[Server]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTHOG_")}
    # Without PostHog's query budget: these tests make more than 120 queries an hour on purpose
    # (the limits have tests of their own in Tests/posthog-local and Tests/driver).
    proc = subprocess.Popen([sys.executable, str(ROOT / "tools" / "posthog-local" / "server.py"), "--host", "127.0.0.1",
                             "--port", "0", "--data", str(data_dir or demo_data_dir()), "--no-limits"],
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
