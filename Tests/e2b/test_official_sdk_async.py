"""E2B's official Python SDK, async flavour (AsyncSandbox), against e2b-local."""

from __future__ import annotations

import asyncio

import pytest
from e2b import AsyncSandbox
from e2b.exceptions import SandboxException
from e2b.sandbox.commands.command_handle import CommandExitException
from e2b.sandbox.filesystem.filesystem import FileType
from e2b.sandbox.filesystem.watch_handle import FilesystemEvent, FilesystemEventType

from e2b_support import Server


def run(coro):
    return asyncio.run(coro)


def test_async_files_commands_and_tmp(local: Server) -> None:
    async def body() -> None:
        sandbox = await AsyncSandbox.create()
        try:
            await sandbox.files.write_files([{"path": "/tmp/a/x.txt", "data": "x"}, {"path": "y.txt", "data": "y"}])
            assert [e.name for e in await sandbox.files.list("/tmp/a")] == ["x.txt"]
            assert (await sandbox.files.get_info("y.txt")).type == FileType.FILE
            assert await sandbox.files.exists("/tmp/a/x.txt")
            assert await sandbox.files.make_dir("/tmp/b")
            await sandbox.files.rename("/tmp/a/x.txt", "/tmp/b/x.txt")
            await sandbox.files.remove("/tmp/a")
            assert not await sandbox.files.exists("/tmp/a")
            result = await sandbox.commands.run("cat /tmp/b/x.txt y.txt; echo err >&2")
            assert (result.exit_code, result.stdout, result.stderr) == (0, "xy", "err\n")
            with pytest.raises(CommandExitException) as info:
                await sandbox.commands.run("exit 9")
            assert info.value.exit_code == 9
        finally:
            await sandbox.kill()
    run(body())


def test_async_background_survives_a_new_connect(local: Server) -> None:
    async def body() -> None:
        sandbox = await AsyncSandbox.create()
        try:
            handle = await sandbox.commands.run("echo up; sleep 30", background=True)
            other = await AsyncSandbox.connect(sandbox.sandbox_id)
            assert [p.pid for p in await other.commands.list()] == [handle.pid]
            attached = await other.commands.connect(handle.pid)
            assert await other.commands.kill(handle.pid)
            with pytest.raises(CommandExitException):
                await attached.wait()
            assert await other.commands.list() == []
        finally:
            await sandbox.kill()
    run(body())


def test_async_watch_dir_streams_events(local: Server) -> None:
    async def body() -> None:
        sandbox = await AsyncSandbox.create()
        try:
            await sandbox.files.make_dir("/tmp/w")
            seen: list[FilesystemEvent] = []
            handle = await sandbox.files.watch_dir("/tmp/w", on_event=seen.append)
            await sandbox.files.write("/tmp/w/file.txt", "1")
            for _ in range(40):
                if any(e.name == "file.txt" and e.type == FilesystemEventType.CREATE for e in seen):
                    break
                await asyncio.sleep(0.1)
            await handle.stop()
            assert any(e.name == "file.txt" and e.type == FilesystemEventType.CREATE for e in seen), seen
        finally:
            await sandbox.kill()
    run(body())


def test_async_network_metrics_and_limits(local: Server) -> None:
    async def body() -> None:
        closed = await AsyncSandbox.create(allow_internet_access=False)
        try:
            out = await closed.commands.run("python3 -c 'import socket; print(len(socket.if_nameindex()))'")
            assert out.stdout == "1\n"
            metrics = await closed.get_metrics()
            assert metrics and metrics[-1].mem_used > 0 and metrics[-1].disk_total > 0
        finally:
            await closed.kill()
        with pytest.raises(SandboxException) as info:
            await AsyncSandbox.create(timeout=7200)
        assert "Timeout cannot be greater than 1 hours" in str(info.value)
    run(body())
