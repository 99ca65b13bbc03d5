"""Helpers for the `serve` tests: start the server, find the sandboxes below it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "Tests" / "mcp"))
from mcp_support import descendants, sandboxes, wait_for  # noqa: E402,F401  (the process-tree view is shared)

BINARY = os.environ.get("SANDBOX_RUNNER_BIN", str(ROOT / ".build" / "debug" / "sandbox-runner"))
TOKEN = "test-token-for-serve"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def start(*args: str, token: str | None = TOKEN, preexec_fn=None, stderr=subprocess.PIPE) -> tuple[subprocess.Popen, str]:
    """Starts `serve`; pass stderr=DEVNULL when nobody reads the access log (a full pipe blocks the server)."""
    env = dict(os.environ)
    env.pop("SANDBOX_RUNNER_TOKEN", None)
    if token:
        env["SANDBOX_RUNNER_TOKEN"] = token
    proc = subprocess.Popen([BINARY, "serve", "--port", "0", *args], stdout=subprocess.PIPE, stderr=stderr, text=True, env=env,
                            preexec_fn=preexec_fn)
    line = proc.stdout.readline()
    assert "listening on " in line, proc.stderr.read() if proc.stderr else line
    return proc, line.split("listening on ", 1)[1].strip()
