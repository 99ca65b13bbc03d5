"""`sandbox-runner mcp --demo` driven by a JSON-RPC client over stdio: initialize, tools/list,
tools/call of a template against the demo data (checked against the true answer), a validation
error, an unknown tool, progress, and a cancelled run that kills its sandbox."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
BINARY = os.environ.get("SANDBOX_RUNNER_BIN", str(ROOT / ".build" / "debug" / "sandbox-runner"))
sys.path.insert(0, str(ROOT / "tools" / "posthog-local"))


class Client:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([BINARY, "mcp", "--demo"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.notifications: list[dict[str, Any]] = []
        self.next_id = 0

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"jsonrpc": "2.0", **message}) + "\n")
        self.proc.stdin.flush()

    def request(self, method: str, params: dict[str, Any] | None = None) -> int:
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params or {}})
        return self.next_id

    def answer(self, request_id: int) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            assert line, f"server closed stdout; stderr: {self.proc.stderr.read() if self.proc.stderr else ''}"
            message = json.loads(line)  # every stdout line must be a protocol message
            if message.get("id") == request_id and ("result" in message or "error" in message):
                return message
            if "method" in message:
                self.notifications.append(message)

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.answer(self.request(method, params))


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    c = Client()
    init = c.call("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}})
    assert init["result"]["serverInfo"]["name"] == "sandbox-runner"
    assert "tools" in init["result"]["capabilities"]
    c.send({"method": "notifications/initialized"})
    yield c
    assert c.proc.stdin is not None
    c.proc.stdin.close()
    assert c.proc.wait(timeout=20) == 0


def test_tools_list_has_every_template_and_run_script(client):
    tools = {t["name"]: t for t in client.call("tools/list")["result"]["tools"]}
    templates = json.loads(subprocess.run([BINARY, "list", "--json"], capture_output=True, text=True, check=True).stdout)["templates"]
    assert set(tools) == {t["name"] for t in templates} | {"run_script", "list_templates"}
    assert len(templates) == 14
    churn = tools["identify_churn_risk"]
    assert churn["inputSchema"]["additionalProperties"] is False
    assert churn["inputSchema"]["properties"]["inactive_days"]["minimum"] == 1
    assert churn["outputSchema"]["properties"]["data"]["properties"]["at_risk_count"]["type"] == "integer"
    assert churn["annotations"]["readOnlyHint"] is True
    assert tools["create_churn_cohort"]["annotations"]["readOnlyHint"] is False
    assert tools["run_script"]["inputSchema"]["required"] == ["script"]


def test_call_a_template_against_the_demo_data(client):
    from posthog_local import truths
    from posthog_local.dataset import load_dataset

    answer = client.call("tools/call", {"name": "identify_churn_risk", "arguments": {"limit": 3}, "_meta": {"progressToken": "t1"}})
    result = answer["result"]
    assert result.get("isError") in (None, False)
    doc = result["structuredContent"]
    assert doc["success"] is True and doc["template"] == "identify_churn_risk"
    assert json.loads(result["content"][-1]["text"]) == doc
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    truth = truths.identify_churn_risk(load_dataset(base / "sandbox-runner/posthog-local/seed-42"), limit=3)
    assert doc["data"]["at_risk_count"] == truth["at_risk_count"]
    assert [u["distinct_id"] for u in doc["data"]["users"]] == [u["distinct_id"] for u in truth["users"]]


def test_validation_error_is_a_tool_error_naming_the_variable(client):
    result = client.call("tools/call", {"name": "top_events", "arguments": {"days": 0}})["result"]
    assert result["isError"] is True
    assert "'days'" in result["content"][0]["text"]
    assert result["structuredContent"]["errorKind"] == "badInput"
    result = client.call("tools/call", {"name": "top_events", "arguments": {"days": 7, "bogus": 1}})["result"]
    assert result["isError"] is True and "'bogus'" in result["content"][0]["text"]


def test_unknown_tool_is_a_protocol_error(client):
    answer = client.call("tools/call", {"name": "no_such_tool", "arguments": {}})
    assert answer["error"]["code"] == -32602


def test_progress_while_running(client):
    script = "import time\ntime.sleep(2.5)\nprint('{\"done\": true}')"
    result = client.call("tools/call", {"name": "run_script", "arguments": {"script": script}, "_meta": {"progressToken": "p2"}})["result"]
    assert result["structuredContent"]["data"] == {"done": True}
    progress = [n for n in client.notifications if n["method"] == "notifications/progress" and n["params"]["progressToken"] == "p2"]
    assert len(progress) >= 2


def test_cancelled_run_stops_its_sandbox(client):
    rid = client.request("tools/call", {"name": "run_script", "arguments": {"script": "import time\ntime.sleep(60)"}})
    time.sleep(1.5)
    start = time.monotonic()
    client.send({"method": "notifications/cancelled", "params": {"requestId": rid, "reason": "test"}})
    answer = client.answer(rid)
    assert time.monotonic() - start < 10
    assert answer["result"]["isError"] is True
    # bubblewrap's command line names the run's workspace (sandbox-runner-<run id prefix>-…):
    # once the pid namespace is torn down, nothing of this run is left.
    run_id = answer["result"]["structuredContent"]["runId"]
    deadline = time.monotonic() + 5
    while True:
        left = subprocess.run(["pgrep", "-f", f"sandbox-runner-{run_id[:8]}-"], capture_output=True, text=True)
        assert left.returncode in (0, 1), left.stderr
        if not left.stdout.strip() or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert left.stdout.strip() == ""
