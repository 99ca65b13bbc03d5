"""Helpers for the MCP tests: the binary, official-SDK clients over stdio or HTTP, and a view of the
sandboxes a process tree holds (also used by Tests/http)."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import AsyncIterator, Iterator

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

ROOT = Path(__file__).resolve().parents[2]
BINARY = os.environ.get("SANDBOX_RUNNER_BIN", str(ROOT / ".build" / "debug" / "sandbox-runner"))
TOKEN = "test-token-for-mcp-http"


@contextlib.asynccontextmanager
async def connect(transport: str, http_url: str | None = None, token: str = TOKEN) -> AsyncIterator[Client]:
    """An official `mcp` SDK client (mode auto: server/discover first, then initialize)."""
    if transport == "stdio":
        server = StdioServerParameters(command=BINARY, args=["mcp", "--demo"])
        async with Client(server, read_timeout_seconds=120) as client:
            yield client
    else:
        assert http_url
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(120, connect=10))
        async with Client(streamable_http_client(f"{http_url}/mcp", http_client=http), read_timeout_seconds=120) as client:
            yield client


def descendants(root: int) -> list[tuple[int, str]]:
    """Every process below `root`, with its command line."""
    parents: dict[int, int] = {}
    cmds: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
        cmds[int(entry)] = cmd
    out, frontier = [], [root]
    while frontier:
        p = frontier.pop()
        for child, parent in parents.items():
            if parent == p:
                out.append((child, cmds[child]))
                frontier.append(child)
    return out


def sandboxes(root: int) -> list[int]:
    """The live sandboxed scripts under `root` (the jail runs `python3 … run.py`; zombies excluded)."""
    alive = []
    for pid, cmd in descendants(root):
        if "run.py" in cmd:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                alive.append(pid)
    return alive


def wait_for(predicate, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


# Fixtures (imported by the test modules: no conftest.py here, whose module name would clash with the others).
@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def http_server() -> Iterator[tuple[subprocess.Popen, str]]:
    env = {**os.environ, "SANDBOX_RUNNER_TOKEN": TOKEN}
    proc = subprocess.Popen([BINARY, "serve", "--port", "0", "--demo"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env)
    line = proc.stdout.readline()
    assert "listening on " in line
    yield proc, line.split("listening on ", 1)[1].strip()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
