"""The e2b-local process under test and its /_local control routes."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
KEY = "e2b_local_test_key"


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]
    ca: Optional[str] = None

    def local(self, method: str, path: str, body: Any = None) -> Any:
        """Calls the server's /_local control routes (faults, stats)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        context = ssl.create_default_context(cafile=self.ca) if self.ca else None
        with urllib.request.urlopen(req, timeout=10, context=context) as r:
            return json.loads(r.read() or b"null")

    def stats(self) -> dict[str, Any]:
        return self.local("GET", "/_local/stats")


def binary() -> Path:
    path = Path(os.environ.get("SANDBOX_RUNNER_BIN", ".build/debug/sandbox-runner"))
    return path if path.is_absolute() else REPO / path


def start_server(*args: str) -> Server:
    """Starts `sandbox-runner e2b-local --port 0 ARGS` and reads where it listens."""
    exe = binary()
    if not exe.exists():
        pytest.fail(f"{exe} does not exist: build it (swift build) or set SANDBOX_RUNNER_BIN.")
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2B_")}
    env["E2B_API_KEY"] = KEY
    proc = subprocess.Popen([str(exe), "e2b-local", "--port", "0", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    prefix = "e2b-local listening on "
    if not first.startswith(prefix):
        proc.kill()
        pytest.fail(f"e2b-local did not start: {first!r} {proc.stderr.read() if proc.stderr else ''}")
    lines = [proc.stdout.readline().strip() for _ in range(2)]
    assert KEY not in lines[0] and "e2b_loc" in lines[0], "the key is shown masked"
    ca = None
    if "--tls-dir" in args:
        ca_line = proc.stdout.readline().strip()
        assert ca_line.startswith("ca: "), ca_line
        ca = ca_line[4:]
    return Server(url=first[len(prefix):], process=proc, ca=ca)


def stop_server(srv: Server) -> None:
    srv.process.send_signal(signal.SIGTERM)
    assert srv.process.wait(timeout=30) == 0
