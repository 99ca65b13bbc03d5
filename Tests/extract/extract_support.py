"""What the extraction tests share: the binary, a posthog-local of their own (it receives captured
events, re-sent ones kept as PostHog's ClickHouse keeps them until a merge), capturing, and running
`sandbox-runner extract`. A module of its own (not conftest.py), named so no other test directory
imports another's by mistake."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "Tests"))

from posthog_local_client import BINARY, PostHogLocal  # noqa: E402
from posthog_local_client import serve as serve_posthog_local  # noqa: E402


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Server(PostHogLocal):
    """A posthog-local we started, for extraction: its runs see no SANDBOX_RUNNER_ settings of ours."""

    def env(self) -> dict[str, str]:  # type: ignore[override]
        return super().env(drop=("POSTHOG_", "SANDBOX_RUNNER_"))

    def hogql(self, query: str, values: dict[str, Any] | None = None) -> list[list[Any]]:
        body = {"query": {"kind": "HogQLQuery", "query": query, "values": values or {}}}
        return self.request("POST", "/api/projects/1/query/", body)["results"]

    def limits(self, **changes: Any) -> None:
        self.request("POST", "/_local/limits", changes, auth=False)

    def restore_limits(self) -> None:
        self.request("DELETE", "/_local/limits", auth=False)

    def faults(self, specs: list[str]) -> None:
        self.request("DELETE", "/_local/faults", auth=False)
        if specs:
            self.request("POST", "/_local/faults", specs, auth=False)


def serve(*extra: str) -> Iterator[Server]:
    yield from serve_posthog_local(*extra, make=Server)  # type: ignore[misc]


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
