"""The MCP protocol edges, as raw JSON-RPC: nothing runs before `initialize` (stdio and HTTP),
`server/discover` answers with the revisions this server speaks, MCP over HTTP needs the token."""
from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any

import requests

from mcp_support import anyio_backend, http_server  # noqa: F401 (fixtures)
from mcp_support import BINARY, TOKEN, sandboxes, wait_for

SLOW = "import time\ntime.sleep(5)\nprint('{}')"


class Stdio:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([BINARY, "mcp"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def send(self, message: dict[str, Any]) -> None:
        self.proc.stdin.write(json.dumps({"jsonrpc": "2.0", **message}) + "\n")
        self.proc.stdin.flush()

    def answer(self, rid: int) -> dict[str, Any]:
        while True:
            line = self.proc.stdout.readline()
            assert line, "server closed stdout"
            message = json.loads(line)
            if message.get("id") == rid:
                return message

    def close(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(timeout=20) == 0


def test_nothing_runs_before_initialize_on_stdio():
    """On main, tools/call before initialize ran the script."""
    s = Stdio()
    try:
        s.send({"id": 1, "method": "tools/call", "params": {"name": "run_script", "arguments": {"script": SLOW}}})
        answer = s.answer(1)
        assert answer["error"]["code"] == -32600 and "initialize" in answer["error"]["message"]
        s.send({"id": 2, "method": "tools/list", "params": {}})
        assert "error" in s.answer(2)
        assert not wait_for(lambda: sandboxes(s.proc.pid) != [], 1.0), "a sandbox started before initialize"
        s.send({"id": 3, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                                                            "clientInfo": {"name": "t", "version": "1"}}})
        assert s.answer(3)["result"]["protocolVersion"] == "2025-11-25"
        s.send({"method": "notifications/initialized"})
        s.send({"id": 4, "method": "tools/call", "params": {"name": "run_script", "arguments": {"script": "print('{}')"}}})
        assert s.answer(4)["result"]["structuredContent"]["success"] is True
    finally:
        s.close()


def test_discover_names_the_handshake_revisions():
    """The newest revision's probe gets an answer, not "method not found" (as on main)."""
    s = Stdio()
    try:
        s.send({"id": 1, "method": "server/discover", "params": {"_meta": {}}})
        result = s.answer(1)["result"]
        assert set(result["supportedVersions"]) == {"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"}
        assert "tools" in result["capabilities"]
    finally:
        s.close()


def test_mcp_over_http_needs_the_token_and_a_session(http_server):
    proc, url = http_server
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    r = requests.post(f"{url}/mcp", json=init, headers=headers, timeout=10)
    assert r.status_code == 401 and r.json()["errorKind"] == "unauthorized"
    auth = {**headers, "Authorization": f"Bearer {TOKEN}"}
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "run_script", "arguments": {"script": SLOW}}}
    r = requests.post(f"{url}/mcp", json=call, headers=auth, timeout=10)
    assert r.status_code == 400
    assert not wait_for(lambda: sandboxes(proc.pid) != [], 1.0), "a sandbox started without a session"
    r = requests.post(f"{url}/mcp", json={"jsonrpc": "2.0", "id": 3, "method": "server/discover", "params": {}}, headers=auth, timeout=10)
    assert r.status_code == 200 and "2025-11-25" in r.json()["result"]["supportedVersions"]
