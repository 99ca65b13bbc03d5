"""E2B's official Python SDK (sync), unchanged, against e2b-local: the server is faithful when
these pass. Where a rule comes from E2B's own source, the test names the file (e2b-dev/infra)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from e2b import Sandbox
from e2b.exceptions import InvalidArgumentException, NotFoundException, SandboxException, TimeoutException
from e2b.sandbox.commands.command_handle import CommandExitException
from e2b.sandbox.filesystem.filesystem import FileType
from e2b.sandbox.filesystem.watch_handle import FilesystemEventType

from e2b_support import Server


def test_create_write_read_run_kill(local: Server) -> None:
    before = local.stats()["envd_calls_with_api_key"]
    sandbox = Sandbox.create()
    try:
        assert sandbox.is_running()
        info = sandbox.files.write("/home/user/in/data.txt", "one\ntwo\n")
        assert info.path == "/home/user/in/data.txt" and info.name == "data.txt"
        assert sandbox.files.read("in/data.txt") == "one\ntwo\n"
        sandbox.files.write("blob.bin", bytes(range(256)))
        assert bytes(sandbox.files.read("blob.bin", format="bytes")) == bytes(range(256))

        result = sandbox.commands.run("wc -l < in/data.txt; echo warn >&2")
        assert result.exit_code == 0
        assert result.stdout == "2\n"
        assert result.stderr == "warn\n"

        sandbox.commands.run("echo made > out.txt")
        assert sandbox.files.read("/home/user/out.txt") == "made\n"
    finally:
        sandbox.kill()
    assert not sandbox.is_running()
    assert local.stats()["envd_calls_with_api_key"] == before, "the SDK keeps the API key to the control plane"


@pytest.mark.parametrize("code", [1, 3, 42])
def test_nonzero_exit_raises_command_exit_exception(local: Server, code: int) -> None:
    sandbox = Sandbox.create()
    try:
        with pytest.raises(CommandExitException) as info:
            sandbox.commands.run(f"echo partial; echo bad >&2; exit {code}")
        assert info.value.exit_code == code
        assert info.value.stdout == "partial\n"
        assert info.value.stderr == "bad\n"
    finally:
        sandbox.kill()


def test_envs_and_cwd(local: Server) -> None:
    sandbox = Sandbox.create(envs={"FROM_SANDBOX": "s", "BOTH": "sandbox"})
    try:
        sandbox.files.write("work/.keep", "")
        result = sandbox.commands.run("echo $FROM_SANDBOX $BOTH $ONLY; pwd",
                                      envs={"BOTH": "command", "ONLY": "x"}, cwd="/home/user/work")
        assert result.stdout == "s command x\n/home/user/work\n"
    finally:
        sandbox.kill()


def test_metadata_and_list(local: Server) -> None:
    tagged = Sandbox.create(metadata={"purpose": "conformance", "run": "7"})
    other = Sandbox.create(metadata={"purpose": "other"})
    try:
        listed = Sandbox.list().next_items()
        assert {s.sandbox_id for s in listed} == {tagged.sandbox_id, other.sandbox_id}
        mine = next(s for s in listed if s.sandbox_id == tagged.sandbox_id)
        assert mine.metadata == {"purpose": "conformance", "run": "7"}
        assert mine.template_id == "base"

        from e2b.sandbox.sandbox_api import SandboxQuery
        found = Sandbox.list(query=SandboxQuery(metadata={"purpose": "conformance"})).next_items()
        assert [s.sandbox_id for s in found] == [tagged.sandbox_id]

        info = tagged.get_info()
        assert info.metadata["run"] == "7"
        tagged.set_timeout(120)
        assert tagged.get_info().end_at > info.end_at
    finally:
        tagged.kill()
        other.kill()
    assert Sandbox.list().next_items() == []


def test_background_command_killed(local: Server) -> None:
    sandbox = Sandbox.create()
    try:
        handle = sandbox.commands.run("echo up; sleep 30", background=True)
        assert any(p.pid == handle.pid for p in sandbox.commands.list())
        assert handle.kill()
        with pytest.raises(CommandExitException) as info:
            handle.wait()
        assert info.value.exit_code == -1
        assert sandbox.commands.list() == []
    finally:
        sandbox.kill()


def test_command_timeout(local: Server) -> None:
    sandbox = Sandbox.create()
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutException):
            sandbox.commands.run("sleep 20", timeout=1)
        assert time.monotonic() - started < 10
    finally:
        sandbox.kill()


def test_sandbox_lifetime_ends_it(local: Server) -> None:
    sandbox = Sandbox.create(timeout=1)
    deadline = time.monotonic() + 10
    while sandbox.is_running() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not sandbox.is_running()
    assert not Sandbox.kill(sandbox.sandbox_id), "a sandbox past its end is gone (404 → False)"


def test_sdk_retries_a_429_create(local: Server) -> None:
    before = local.stats()["requests"].get("POST /v2/sandboxes", 0)
    local.local("POST", "/_local/faults", ["create-429:count=1:retry_after=0"])
    sandbox = Sandbox.create()
    sandbox.kill()
    assert local.stats()["requests"]["POST /v2/sandboxes"] == before + 2


def test_upload_fault_raises(local: Server) -> None:
    sandbox = Sandbox.create()
    try:
        local.local("POST", "/_local/faults", ["upload-5xx:status=500"])
        with pytest.raises(SandboxException):
            sandbox.files.write("a.txt", "x")
        sandbox.files.write("a.txt", "x")
    finally:
        sandbox.kill()


def test_stream_cut_is_an_error_not_a_result(local: Server) -> None:
    sandbox = Sandbox.create()
    try:
        local.local("POST", "/_local/faults", ["stream-cut:after=1"])
        with pytest.raises(Exception) as info:
            sandbox.commands.run("for i in 1 2 3; do echo $i; sleep 0.2; done")
        assert not isinstance(info.value, CommandExitException)
        assert sandbox.commands.run("echo again").stdout == "again\n"
    finally:
        sandbox.kill()


def test_files_service(local: Server) -> None:
    sandbox = Sandbox.create()
    try:
        written = sandbox.files.write_files([
            {"path": "/home/user/pkg/a.py", "data": "A = 1\n"},
            {"path": "pkg/b.py", "data": b"B = 2\n"},
            {"path": "/tmp/scratch/c.txt", "data": "c"},
        ])
        assert [w.path for w in written] == ["/home/user/pkg/a.py", "/home/user/pkg/b.py", "/tmp/scratch/c.txt"]
        listed = sandbox.files.list("/home/user/pkg")
        assert [(e.name, e.type, e.size) for e in listed] == [("a.py", FileType.FILE, 6), ("b.py", FileType.FILE, 6)]
        assert sandbox.files.exists("/tmp/scratch/c.txt") and not sandbox.files.exists("/tmp/nope")
        info = sandbox.files.get_info("/tmp/scratch")
        assert info.type == FileType.DIR and info.path == "/tmp/scratch" and info.owner == "user"
        assert sandbox.files.make_dir("/tmp/made/deep") is True
        assert sandbox.files.make_dir("/tmp/made/deep") is False, "already exists"
        moved = sandbox.files.rename("/tmp/scratch/c.txt", "/tmp/made/deep/c.txt")
        assert moved.path == "/tmp/made/deep/c.txt"
        assert sandbox.files.read("/tmp/made/deep/c.txt") == "c"
        deep = sandbox.files.list("/tmp/made", depth=2)
        assert [e.path for e in deep] == ["/tmp/made/deep", "/tmp/made/deep/c.txt"]
        sandbox.files.remove("/tmp/made")
        assert not sandbox.files.exists("/tmp/made")
        with pytest.raises(NotFoundException):
            sandbox.files.read("/tmp/made/deep/c.txt")
        # The sandbox's own /tmp, not the host's; its root is read-only as a non-root user's would be.
        assert sandbox.commands.run("cat /home/user/pkg/a.py; ls /tmp").stdout == "A = 1\nscratch\n"
        with pytest.raises(SandboxException):
            sandbox.files.write("/usr/lib/evil", "x")
    finally:
        sandbox.kill()


def test_watch_dir(local: Server) -> None:
    sandbox = Sandbox.create()
    try:
        sandbox.files.make_dir("/tmp/w")
        handle = sandbox.files.watch_dir("/tmp/w")
        sandbox.files.write("/tmp/w/new.txt", "x")
        sandbox.commands.run("rm /tmp/w/new.txt; touch /tmp/w/other")
        events = {(e.name, e.type) for e in handle.get_new_events()}
        assert ("other", FilesystemEventType.CREATE) in events
        handle.stop()
    finally:
        sandbox.kill()


def test_background_process_survives_its_client_and_a_new_connect(local: Server) -> None:
    """A command started with background=True by one program lives on after that program ends;
    another finds it with Sandbox.connect, lists it, attaches to it and kills it."""
    sandbox = Sandbox.create(timeout=120)
    try:
        starter = (
            "from e2b import Sandbox\n"
            f"s = Sandbox.connect({sandbox.sandbox_id!r})\n"
            "h = s.commands.run('for i in $(seq 1 200); do echo tick $i; sleep 0.1; done', background=True, timeout=0)\n"
            "print(h.pid)\n"
        )
        out = subprocess.run([sys.executable, "-c", starter], capture_output=True, text=True, env=dict(os.environ), timeout=60)
        assert out.returncode == 0, out.stderr
        pid = int(out.stdout.strip())
        again = Sandbox.connect(sandbox.sandbox_id)
        assert [p.pid for p in again.commands.list()] == [pid]
        seen: list[str] = []
        handle = again.commands.connect(pid)
        time.sleep(0.5)
        assert again.commands.kill(pid)
        with pytest.raises(CommandExitException) as info:
            handle.wait(on_stdout=seen.append)
        assert info.value.exit_code == -1
        assert any(line.startswith("tick") for line in "".join(seen).splitlines())
        assert again.commands.list() == []
    finally:
        sandbox.kill()


def test_stdin(local: Server) -> None:
    sandbox = Sandbox.create()
    try:
        handle = sandbox.commands.run("tr a-z A-Z", background=True, stdin=True)
        sandbox.commands.send_stdin(handle.pid, "shout\n")
        sandbox.commands.close_stdin(handle.pid)
        assert handle.wait().stdout == "SHOUT\n"
    finally:
        sandbox.kill()


def test_network_options(local: Server) -> None:
    count = "python3 -c 'import socket; print(len(socket.if_nameindex()))'"
    closed = Sandbox.create(allow_internet_access=False)
    allowed = Sandbox.create(network={"allow_out": ["api.posthog.com"], "deny_out": ["0.0.0.0/0"],
                                      "rules": {"api.posthog.com": [{"transform": {"headers": {"X-Test": "1"}}}]}})
    open_ = Sandbox.create()
    try:
        assert closed.commands.run(count).stdout == "1\n", "only loopback without internet access"
        assert allowed.commands.run(count).stdout == "1\n", "its own namespace: only the egress proxy's socket leads out"
        assert open_.commands.run(count).stdout != "1\n"
        # infra packages/api/internal/handlers/sandbox_create.go, validateEgressRules.
        with pytest.raises(SandboxException) as info:
            Sandbox.create(network={"allow_out": ["example.com"]})
        assert "ALL_TRAFFIC" in str(info.value)
        with pytest.raises(SandboxException) as info:
            Sandbox.create(network={"deny_out": ["example.com"]})
        assert "invalid denied CIDR example.com" in str(info.value)
    finally:
        for s in (closed, allowed, open_):
            s.kill()


def test_metrics(local: Server) -> None:
    sandbox = Sandbox.create()
    try:
        sandbox.commands.run("head -c 5000000 /dev/urandom > /tmp/blob; python3 -c 'import time\nt=time.time()\nwhile time.time()-t < 1.2: pass'")
        metrics = sandbox.get_metrics()
        assert metrics, "at least one sample"
        last = metrics[-1]
        assert last.cpu_count >= 1
        assert last.cpu_used_pct > 5, last
        assert last.mem_used > 1 << 20
        assert last.disk_used >= 5_000_000
        assert last.disk_total == (256 + 64 + 16) << 20
    finally:
        sandbox.kill()


def test_plan_limits_and_unknown_templates_refused_like_e2b(local: Server) -> None:
    # infra packages/api/internal/handlers/timeout_helper.go; cache/templates/errors.go.
    with pytest.raises(SandboxException) as info:
        Sandbox.create(timeout=3601)
    assert "Timeout cannot be greater than 1 hours" in str(info.value)
    with pytest.raises(SandboxException) as info:
        Sandbox.create(template="no-such-template")
    assert "template 'no-such-template' not found" in str(info.value)
    assert local.stats()["live_sandboxes"] == 0


def test_idempotency_key(local: Server) -> None:
    first = Sandbox.create(idempotency_key="sdk-retry-1")
    again = Sandbox.create(idempotency_key="sdk-retry-1")
    try:
        assert again.sandbox_id == first.sandbox_id
        with pytest.raises(InvalidArgumentException):
            Sandbox.create(idempotency_key="Not Valid")
    finally:
        first.kill()


def test_nothing_left(server: Server) -> None:
    assert Sandbox.list().next_items() == []
    assert server.stats()["live_sandboxes"] == 0
