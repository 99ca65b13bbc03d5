"""What the extraction tests share: the binary, a posthog-local of their own (it receives captured
events, re-sent ones kept as PostHog's ClickHouse keeps them until a merge), capturing, and running
`sandbox-runner extract`. A module of its own (not conftest.py), named so no other test directory
imports another's by mistake."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "posthog-local"))

from posthog_local import generator  # noqa: E402
from posthog_local.timeutil import parse_iso, to_ms  # noqa: E402

BINARY = os.environ.get("SANDBOX_RUNNER_BIN", str(ROOT / ".build" / "debug" / "sandbox-runner"))
PERSONAL_KEY = "phx_demo_personal_key"
PROJECT_KEY = "phc_demo_project_key"


def demo_data_dir() -> Path:
    return generator.default_data_dir(generator.DEFAULT_SEED, generator.DEFAULT_USERS, to_ms(parse_iso(generator.DEFAULT_NOW)))


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Server:
    """A posthog-local we started."""

    def __init__(self, url: str, process: subprocess.Popen[str]) -> None:
        self.url = url
        self.process = process

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTHOG_", "SANDBOX_RUNNER_"))}
        env.update({"POSTHOG_API_URL": self.url, "POSTHOG_INGEST_URL": self.url, "POSTHOG_PERSONAL_API_KEY": PERSONAL_KEY,
                    "POSTHOG_PROJECT_API_KEY": PROJECT_KEY, "POSTHOG_PROJECT_ID": "1"})
        return env

    def request(self, method: str, path: str, body: Any = None, auth: bool = False) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, method=method, data=data,
                                     headers={"Content-Type": "application/json"} if data else {})
        if auth:
            req.add_header("Authorization", f"Bearer {PERSONAL_KEY}")
        with urllib.request.urlopen(req, timeout=60) as answer:
            raw = answer.read()
        return json.loads(raw) if raw else None

    def capture(self, events: list[dict[str, Any]]) -> None:
        """PostHog's capture API (/batch/), the project key in the body."""
        assert self.request("POST", "/batch/", {"api_key": PROJECT_KEY, "batch": events}) == {"status": 1}

    def hogql(self, query: str, values: dict[str, Any] | None = None) -> list[list[Any]]:
        body = {"query": {"kind": "HogQLQuery", "query": query, "values": values or {}}}
        return self.request("POST", "/api/projects/1/query/", body, auth=True)["results"]

    def limits(self, **changes: Any) -> None:
        self.request("POST", "/_local/limits", changes)

    def restore_limits(self) -> None:
        self.request("DELETE", "/_local/limits")

    def faults(self, specs: list[str]) -> None:
        self.request("DELETE", "/_local/faults")
        if specs:
            self.request("POST", "/_local/faults", specs)


def serve(*extra: str) -> Iterator[Server]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTHOG_")}
    proc = subprocess.Popen([sys.executable, str(ROOT / "tools" / "posthog-local" / "server.py"), "--host", "127.0.0.1",
                             "--port", "0", "--data", str(demo_data_dir()), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert "listening on http://" in line, f"posthog-local did not start: {line!r}"
        yield Server(line.split("listening on ", 1)[1].strip(), proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def event(name: str, when: dt.datetime, **props: Any) -> dict[str, Any]:
    return {"event": name, "uuid": str(uuid.uuid4()), "distinct_id": f"user-{uuid.uuid4().hex[:6]}",
            "timestamp": iso(when), "properties": props}


def extract(server: Server, state: Path, out: Path, *args: str, env: dict[str, str] | None = None,
            timeout: float = 240) -> tuple[int, dict[str, Any], str]:
    """`sandbox-runner extract events --json …`: its exit status, its document and its stderr."""
    cmd = [BINARY, "extract", "events", "--state", str(state), "--out-dir", str(out), "--json", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**server.env(), **(env or {})}, timeout=timeout, cwd=out.parent)
    doc = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, doc, done.stderr


def delivered(out: Path, pattern: str = "events-*.jsonl") -> list[Path]:
    """The data files with their final names: what an operator sees (staging directories are hidden)."""
    return sorted(p for p in out.glob(pattern) if p.is_file())
