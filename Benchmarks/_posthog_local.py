"""What the benchmarks share: a posthog-local of their own, started and stopped. A module, not a
benchmark (Benchmarks/run skips names that start with an underscore)."""
from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "tools" / "posthog-local" / "server.py"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"


class NotStarted(Exception):
    """posthog-local printed something else than its address."""


@contextlib.contextmanager
def posthog_local(*args: str, env: dict[str, str] | None = None, wait_for_data: bool = True) -> Iterator[str]:
    """Starts `server.py --port 0 ARGS` and yields its URL (after its dataset is loaded when
    `wait_for_data`); stops it with SIGTERM (SIGKILL after 30 s) however the block ends."""
    python = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable
    server = subprocess.Popen([python, str(SERVER), "--port", "0", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert server.stdout is not None
        first = server.stdout.readline().strip()
        if not first.startswith("posthog-local listening on "):
            raise NotStarted(f"posthog-local did not start: {first!r}")
        line = first
        while wait_for_data and line and not line.startswith("data:"):
            line = server.stdout.readline().strip()
        yield first.rsplit(" ", 1)[1]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
