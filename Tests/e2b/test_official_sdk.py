"""E2B's official Python SDK, unchanged, against e2b-local: the server is faithful when these pass."""

from __future__ import annotations

import time

import pytest
from e2b import Sandbox
from e2b.exceptions import SandboxException, TimeoutException
from e2b.sandbox.commands.command_handle import CommandExitException

from e2b_support import Server


def test_create_write_read_run_kill(local: Server) -> None:
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


def test_nothing_left(server: Server) -> None:
    assert Sandbox.list().next_items() == []
    assert server.stats()["live_sandboxes"] == 0
