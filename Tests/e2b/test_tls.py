"""The official SDK over e2b-local's TLS front: its own CA trusted through SSL_CERT_FILE, as a
user of a self-hosted E2B would configure it. Run in a child process: the SDK's transport reads
the CA file once per process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from e2b_support import KEY, start_server, stop_server

SCRIPT = r"""
import asyncio, os
from e2b import AsyncSandbox, Sandbox
s = Sandbox.create()
try:
    s.files.write("/tmp/t.txt", "over tls")
    print(s.commands.run("cat /tmp/t.txt").stdout)
finally:
    s.kill()
async def main():
    a = await AsyncSandbox.create()
    try:
        print((await a.commands.run("echo async")).stdout.strip())
    finally:
        await a.kill()
asyncio.run(main())
# The client leaves without the interpreter's teardown: once in a loaded CI run the SDK's process
# aborted (SIGABRT, nothing on stderr) after printing everything, inside the teardown of its HTTP
# stack; the exchange under test was complete by then.
import sys
sys.stdout.flush()
os._exit(0)
"""


def test_sdk_over_tls(tmp_path: Path) -> None:
    srv = start_server("--tls-dir", str(tmp_path), "--strict")
    try:
        assert srv.url.startswith("https://127.0.0.1:")
        port = srv.url.rsplit(":", 1)[1]
        url = f"https://localhost:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("E2B_")}
        env.update(E2B_API_URL=url, E2B_SANDBOX_URL=url, E2B_API_KEY=KEY, SSL_CERT_FILE=str(srv.ca))
        out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout == "over tls\nasync\n"
        # Without the CA the certificate is not trusted.
        env.pop("SSL_CERT_FILE")
        refused = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=120)
        assert refused.returncode != 0
        stats = srv.stats()
        assert stats["live_sandboxes"] == 0
        assert stats["envd_calls_with_api_key"] == 0
    finally:
        stop_server(srv)
