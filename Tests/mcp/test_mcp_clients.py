"""The MCP servers driven by the official `mcp` Python SDK (2.3), over stdio (`sandbox-runner mcp
--demo`) and over Streamable HTTP (`sandbox-runner serve --demo`, /mcp): every tool listed with
schemas, outputs validated against output schemas (the SDK checks structuredContent against the
tool's outputSchema and raises on a mismatch), every tool's bad arguments as `isError` results,
progress, timeouts with the CLI's exit semantics, and cancellation that kills the sandbox."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import jsonschema
import pytest
from mcp.shared.exceptions import MCPError

from mcp_support import anyio_backend, http_server  # noqa: F401 (fixtures)
from mcp_support import BINARY, ROOT, connect, sandboxes, wait_for

sys.path.insert(0, str(ROOT / "tools" / "posthog-local"))
pytestmark = pytest.mark.anyio
TRANSPORTS = ["stdio", "http"]


@pytest.fixture(params=TRANSPORTS)
def transport(request, http_server) -> tuple[str, str, int]:
    """(transport, http url, pid whose process tree holds the sandboxes)."""
    proc, url = http_server
    return request.param, url, (os.getpid() if request.param == "stdio" else proc.pid)


async def test_tools_with_schemas(transport):
    kind, url, _ = transport
    async with connect(kind, url) as client:
        assert client.server_info.name == "sandbox-runner"
        tools = {t.name: t for t in (await client.list_tools()).tools}
    templates = json.loads(subprocess.run([BINARY, "list", "--json"], capture_output=True, text=True, check=True).stdout)["templates"]
    assert set(tools) == {t["name"] for t in templates} | {"run_script", "list_templates"}
    for t in tools.values():
        assert t.output_schema is not None, t.name
        jsonschema.Draft202012Validator.check_schema(t.input_schema)
        jsonschema.Draft202012Validator.check_schema(t.output_schema)
    churn = tools["identify_churn_risk"]
    assert churn.input_schema["additionalProperties"] is False
    assert churn.input_schema["properties"]["timeoutSeconds"]["maximum"] == 3600
    assert churn.annotations.read_only_hint is True
    assert tools["create_churn_cohort"].annotations.read_only_hint is False
    # The one definition of the result document: the same as `show --json` publishes.
    shown = json.loads(subprocess.run([BINARY, "show", "identify_churn_risk", "--json"], capture_output=True, text=True,
                                      check=True).stdout)
    assert churn.output_schema == shown["resultSchema"]


async def test_template_call_is_the_truth_and_matches_its_output_schema(transport):
    from posthog_local import truths
    from posthog_local.dataset import load_dataset

    kind, url, _ = transport
    async with connect(kind, url) as client:
        result = await client.call_tool("identify_churn_risk", {"limit": 3})  # the SDK validates it against outputSchema
        listed = await client.call_tool("list_templates", {})
    assert not result.is_error
    doc = result.structured_content
    assert doc["success"] is True and doc["template"] == "identify_churn_risk" and doc.get("errorKind") is None
    assert json.loads(result.content[-1].text) == doc
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    truth = truths.identify_churn_risk(load_dataset(base / "sandbox-runner/posthog-local/seed-42"), limit=3)
    assert doc["data"]["at_risk_count"] == truth["at_risk_count"]
    assert [u["distinct_id"] for u in doc["data"]["users"]] == [u["distinct_id"] for u in truth["users"]]
    assert len(listed.structured_content["templates"]) == 14


async def test_every_tools_bad_arguments_are_tool_errors(transport):
    """On main, run_script's bad arguments were JSON-RPC -32602 errors and messages named CLI flags."""
    kind, url, _ = transport
    async with connect(kind, url) as client:
        names = [t.name for t in (await client.list_tools()).tools]
        for name in names:
            r = await client.call_tool(name, {"no_such_argument": 1, **({"script": "print(1)"} if name == "run_script" else {})})
            assert r.is_error is True, name
            first = r.content[0].text
            assert "'no_such_argument'" in first and first.endswith("."), (name, first)
            assert r.structured_content["errorKind"] == "badInput", name
        cases = [
            ("run_script", {}, "Argument 'script'"),
            ("run_script", {"script": ""}, "Argument 'script'"),
            ("run_script", {"script": 5}, "Argument 'script'"),
            ("run_script", {"script": "print(1)", "timeoutSeconds": 0}, "Argument 'timeoutSeconds'"),
            ("run_script", {"script": "x" * (128 * 1024 + 1)}, "Argument 'script'"),
            ("top_events", {"days": "seven"}, "Argument 'days'"),
            ("user_activity_timeline", {}, "Argument 'distinct_id'"),
        ]
        for name, args, mentions in cases:
            r = await client.call_tool(name, args)
            text = r.content[0].text
            assert r.is_error is True and text.startswith(mentions), (name, args, text)
            assert "--var" not in text and "--timeout" not in text, text
            assert r.structured_content["errorKind"] == "badInput"
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("no_such_tool", {})
        assert unknown.value.error.code == -32602


async def test_progress_and_a_timeout_with_the_clis_exit_semantics(transport):
    kind, url, _ = transport
    seen: list[float] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        seen.append(value)

    async with connect(kind, url) as client:
        r = await client.call_tool("run_script", {"script": "import time\ntime.sleep(2.5)\nprint('{\"done\": true}')"},
                                   progress_callback=progress)
        assert r.structured_content["data"] == {"done": True}
        assert len(seen) >= 2 and seen == sorted(seen)
        t = await client.call_tool("run_script", {"script": "import time\nprint('tick', flush=True)\ntime.sleep(30)",
                                                  "timeoutSeconds": 1})
    assert t.is_error is True
    doc = t.structured_content
    assert doc["errorKind"] == "timeout" and doc["exitCode"] == 124 and doc["timedOut"] is True
    assert doc["output"] == "tick\n"
    assert "timeoutSeconds" in t.content[0].text and "--timeout" not in t.content[0].text


async def test_cancelling_a_call_kills_its_sandbox(transport):
    kind, url, root = transport
    async with connect(kind, url) as client:
        assert sandboxes(root) == []
        async with anyio.create_task_group() as tg:
            async def call() -> None:
                await client.call_tool("run_script", {"script": "import time\ntime.sleep(60)"})
            tg.start_soon(call)
            assert await anyio.to_thread.run_sync(lambda: wait_for(lambda: sandboxes(root) != [], 15)), "sandbox never started"
            tg.cancel_scope.cancel()  # the SDK sends notifications/cancelled
        start = time.monotonic()
        assert await anyio.to_thread.run_sync(lambda: wait_for(lambda: sandboxes(root) == [], 10)), "sandbox outlived the call"
        assert time.monotonic() - start < 10
        # The connection is still good after a cancellation.
        r = await client.call_tool("run_script", {"script": "print('{\"ok\": 1}')"})
        assert r.structured_content["data"] == {"ok": 1}
