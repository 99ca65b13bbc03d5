"""Helpers shared by the posthog-local tests: keys, and starting/stopping a server process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "tools" / "posthog-local" / "server.py"
PERSONAL_KEY = "phx_test_personal_key_0123456789abcdef"
PROJECT_KEY = "phc_test_project_key_0123456789abcdef"
READONLY_KEY = "phx_test_readonly_key_0123456789abcdef"
PROJECT_ID = 7
NY_PROJECT_ID = 8  # the second demo project: America/New_York, weeks from Sunday
NY_PROJECT_KEY = "phc_test_ny_project_key_0123456789abcdef"


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]
    data_dir: Path
    banner: list[str]
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def project(self) -> str:
        return f"{self.url}/api/projects/{PROJECT_ID}"

    def auth(self, key: str = PERSONAL_KEY) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def query(self, hogql: str, values: dict[str, Any] | None = None,
              key: str = PERSONAL_KEY) -> requests.Response:
        body: dict[str, Any] = {"query": {"kind": "HogQLQuery", "query": hogql}}
        if values is not None:
            body["query"]["values"] = values
        return self.session.post(f"{self.project}/query/", json=body, headers=self.auth(key), timeout=30)

    def rows(self, hogql: str, values: dict[str, Any] | None = None) -> list[list[Any]]:
        response = self.query(hogql, values)
        assert response.status_code == 200, response.text
        return response.json()["results"]

    def truths(self) -> dict[str, Any]:
        return json.loads((self.data_dir / "truths.json").read_text())


def start_server(data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> Server:
    full_env = {**os.environ, **(env or {})}
    stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        [sys.executable, str(SERVER), "--port", "0", "--data", str(data_dir), *extra],
        stdout=subprocess.PIPE, stderr=stderr, text=True, env=full_env)
    assert process.stdout is not None
    first = process.stdout.readline().strip()
    if not first.startswith("posthog-local listening on http://127.0.0.1:"):
        process.kill()
        process.wait(timeout=10)
        stderr.seek(0)
        raise RuntimeError(f"server did not start: {first!r} {stderr.read()[-2000:]}")
    banner = [first]
    while not banner[-1].startswith("data:"):
        banner.append(process.stdout.readline().strip())
    url = first.rsplit(" ", 1)[1]
    return Server(url=url, process=process, data_dir=data_dir, banner=banner)


def stop_server(server: Server) -> int:
    server.session.close()
    server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=15)
    finally:
        if server.process.poll() is None:
            server.process.kill()
        for stream in (server.process.stdout, server.process.stderr):
            if stream is not None:
                stream.close()



ENV = {
    "POSTHOG_PERSONAL_API_KEY": PERSONAL_KEY,
    "POSTHOG_PROJECT_API_KEY": PROJECT_KEY,
    "POSTHOG_PROJECT_ID": str(PROJECT_ID),
    "POSTHOG_LOCAL_READONLY_KEY": READONLY_KEY,
    "POSTHOG_LOCAL_NY_PROJECT_ID": str(NY_PROJECT_ID),
    "POSTHOG_LOCAL_NY_PROJECT_API_KEY": NY_PROJECT_KEY,
}
