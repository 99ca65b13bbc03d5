"""A posthog-local that a pytest suite starts for itself, and a small client for it (its API with
the demo keys, the capture endpoint): what Tests/extract and Tests/templates share. Each suite's
own support module builds on it (`extract_support`, `templates_support`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools" / "posthog-local"))

from posthog_local import generator  # noqa: E402
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


class PostHogLocal:
    """A posthog-local we started: its URL and process."""

    def __init__(self, url: str, process: subprocess.Popen[str]) -> None:
        self.url = url
        self.process = process

    def env(self, project: str = "utc", drop: tuple[str, ...] = ("POSTHOG_",)) -> dict[str, str]:
        """This environment without the variables named by `drop`, pointing a run at `project`."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
        env.update({"POSTHOG_API_URL": self.url, "POSTHOG_INGEST_URL": self.url, "POSTHOG_PERSONAL_API_KEY": PERSONAL_KEY,
                    "POSTHOG_PROJECT_API_KEY": PROJECTS[project]["key"], "POSTHOG_PROJECT_ID": PROJECTS[project]["id"]})
        return env

    def request(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        """One JSON request; `auth` sends the personal API key (PostHog's private API)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, method=method, data=data,
                                     headers={"Content-Type": "application/json"} if data else {})
        if auth:
            req.add_header("Authorization", f"Bearer {PERSONAL_KEY}")
        with urllib.request.urlopen(req, timeout=60) as answer:
            raw = answer.read()
        return json.loads(raw) if raw else None

    def capture(self, events: list[dict[str, Any]], project: str = "utc") -> None:
        """PostHog's capture API (/batch/), the project key in the body."""
        assert self.request("POST", "/batch/", {"api_key": PROJECTS[project]["key"], "batch": events},
                            auth=False) == {"status": 1}


def serve(*extra: str, data_dir: Path | None = None,
          make: Callable[[str, subprocess.Popen[str]], PostHogLocal] = PostHogLocal) -> Iterator[PostHogLocal]:
    """Starts posthog-local on a free loopback port over `data_dir` (the demo dataset by default)
    with the EXTRA flags, yields `make(url, process)`, stops it when the generator is closed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTHOG_")}
    proc = subprocess.Popen([sys.executable, str(ROOT / "tools" / "posthog-local" / "server.py"), "--host", "127.0.0.1",
                             "--port", "0", "--data", str(data_dir or demo_data_dir()), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert "listening on http://" in line, f"posthog-local did not start: {line!r}"
        yield make(line.split("listening on ", 1)[1].strip(), proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
