"""The `posthog` policy on the E2B backend, against e2b-local (issue 10): the create body's
`network` (allowOut = the PostHog hosts, denyOut = everything else, rules = the Authorization
header) is what keeps the key out and the sandbox in; e2b-local enforces those fields as E2B
does (its own network namespace per sandbox, the same egress proxy bound in: a documented
deviation from E2B's transparent interception). Also through E2B's official SDK, and the local
jail's hardening (seccomp, cgroups) inside e2b-local's sandboxes.

On the code before this change e2b-local shared the host's network with sandboxes that had no
`denyOut` and gave those with one nothing at all, the E2B backend sent the key in `envs`, and
e2b-local's sandboxes ran without seccomp or cgroups: each test below fails there.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterator

import pytest
from e2b import Sandbox

from egress_support import (REBIND, AbstractSocket, E2BLocal, Listener, Upstream, attack_script, fresh_keys, hosts_file, run_cli,
                            start_posthog_local, stop)


class sdk_pointed_at:
    """E2B's SDK configured (through its environment variables) for this e2b-local."""

    def __init__(self, server: E2BLocal) -> None:
        self.env = server.sdk_env()

    def __enter__(self) -> None:
        self.saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)

    def __exit__(self, *exc: object) -> None:
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def posthog() -> Iterator[tuple[str, str, str]]:
    personal, project = fresh_keys()
    proc, url = start_posthog_local(personal, project)
    yield url, personal, project
    stop(proc)


def test_a_run_under_posthog_on_e2b_reaches_posthog_only_and_never_holds_the_key(
        tmp_path: Path, posthog: tuple[str, str, str], listener: Listener, abstract_socket: AbstractSocket, runner_api: int) -> None:
    url, personal, project = posthog
    port = int(url.rsplit(":", 1)[1])
    hosts = hosts_file(tmp_path)
    # The operator lets sandboxes reach this one loopback port (E2B refuses internal addresses).
    server = E2BLocal("--allow-internal-egress", f"127.0.0.1:{port}", env={"SANDBOX_RUNNER_EGRESS_HOSTS": str(hosts)})
    try:
        script = tmp_path / "attack.py"
        script.write_text(attack_script(listener.port, runner_api, abstract_socket.name)
                          .replace('via_proxy("runner api"', f'via_proxy("localhost, another port", get("http://localhost:{listener.port}/"))\nvia_proxy("runner api"'))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTHOG_", "SANDBOX_RUNNER_", "E2B_"))}
        env.update(POSTHOG_API_URL=url, POSTHOG_PERSONAL_API_KEY=personal, POSTHOG_PROJECT_API_KEY=project, POSTHOG_PROJECT_ID="1",
                   SANDBOX_RUNNER_EGRESS_ALLOW=REBIND, E2B_API_URL=server.url, E2B_API_KEY=E2BLocal.KEY,
                   SANDBOX_RUNNER_HOME=str(Path(__file__).resolve().parents[2]))
        code, result = run_cli(["exec", str(script), "--backend", "e2b", "--network", "posthog", "--json", "--timeout", "120"], env)
        assert result["network"] == "posthog", result.get("error")
        assert code == 0 and result["success"], (result.get("error"), result.get("stderr", "")[-2000:])
        found = result["data"]
        assert all(v not in ("connected", "resolved") for v in found["direct"].values()), found["direct"]
        assert listener.accepted == 0 and abstract_socket.accepted == 0
        assert found["proxy"] == {
            "loopback listener": "403", "localhost, another port": "403", "runner api": "403", "not allow-listed": "403",
            "raw ip": "403", "rebinding": "403", "allowed host, plain http on the https port": "403",
            "connect allowed name, other port": "405", "connect allowed name and port": "405",
        }
        # The driver's calls went through e2b-local's egress, which added the key from the rule.
        assert found["events"] > 100_000 and found["project"] == 1 and found["flags"], found
        secret = hashlib.sha256(personal.encode()).hexdigest()
        for where, digests in found["found"].items():
            assert secret not in digests, f"the personal API key is readable in the E2B sandbox: {where}"
        assert {"environment", "memory"} <= set(found["project key seen"])
        log = server.egress_of_run(result["runId"])
        assert any(e["allowed"] and e["host"] == "localhost" and e["port"] == port and e["requests"] >= 3 for e in log), log
        for host, p in [("127.0.0.1", listener.port), ("localhost", listener.port), ("127.0.0.1", runner_api), ("example.com", 443),
                        (REBIND, 443)]:
            assert any(not e["allowed"] and e["host"] == host and e["port"] == p for e in log), f"{host}:{p} not refused: {log}"
    finally:
        server.stop()


def test_the_official_sdk_gets_network_rules_enforced_and_headers_injected(tmp_path: Path) -> None:
    up, other = Upstream(), Upstream()
    secret = "Bearer " + fresh_keys()[0]
    server = E2BLocal("--allow-internal-egress", f"127.0.0.1:{up.port}", "--allow-internal-egress", f"127.0.0.1:{other.port}")
    probe = r'''
import json, os, socket
def ask(url, auth=None):
    s = socket.socket(socket.AF_UNIX); s.settimeout(20); s.connect(os.environ["POSTHOG_EGRESS_SOCKET"])
    extra = "Authorization: %s\r\n" % auth if auth else ""
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n" % (url, extra)).encode())
    data = b""
    while True:
        c = s.recv(65536)
        if not c: break
        data += c
    return data.split(b" ", 2)[1].decode()
print(json.dumps({"allowed": ask("http://localhost:UP/echo", "Bearer forged"), "other": ask("http://127.0.0.1:OTHER/echo"),
                  "unlisted": ask("http://example.com/"), "env": sorted(k for k in os.environ if "KEY" in k or "TOKEN" in k)}))
'''.replace("UP", str(up.port)).replace("OTHER", str(other.port))
    try:
        with sdk_pointed_at(server):
            sandbox = Sandbox.create(network={
                "allow_out": ["localhost", "127.0.0.1"], "deny_out": ["0.0.0.0/0"],
                "rules": {"localhost": [{"transform": {"headers": {"Authorization": secret}}}]}})
            try:
                sandbox.files.write("/home/user/probe.py", probe)
                out = sandbox.commands.run("python3 /home/user/probe.py").stdout
                interfaces = sandbox.commands.run("python3 -c 'import socket; print(len(socket.if_nameindex()))'").stdout
            finally:
                sandbox.kill()
        import json

        answers = json.loads(out)
        assert answers["allowed"] == "200" and answers["other"] == "200" and answers["unlisted"] == "403", answers
        assert answers["env"] == [] and interfaces == "1\n", "the sandbox has its own empty network namespace"
        assert up.requests[-1]["headers"]["authorization"] == secret, "the rule's header replaced the one sent"
        assert "authorization" not in other.requests[-1]["headers"], "a rule for localhost applied to 127.0.0.1"
    finally:
        server.stop()
        up.close()
        other.close()


HARDENING = r'''
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(*args):
    r = libc.syscall(*[ctypes.c_long(a) for a in args])
    return "ok" if r >= 0 else os.strerror(ctypes.get_errno())
params = ctypes.create_string_buffer(120)
print(json.dumps({
    "io_uring_setup": call(425, 8, ctypes.addressof(params)),
    "keyctl join": call(250, 1, 0),
    "ptrace traceme": call(101, 0, 0, 0),
    "personality no-aslr": call(135, 0x0040000),
    "unshare mount ns": call(272, 0x00020000),
}))
'''

HOG = r'''
import os, time
kids = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        b = bytearray(150 << 20)
        for i in range(0, len(b), 4096):
            b[i] = 1
        time.sleep(1)
        os._exit(0)
    kids.append(pid)
survivors = sum(1 for pid in kids if os.waitpid(pid, 0)[1] == 0)
print(survivors)
'''


def test_e2b_local_sandboxes_run_under_the_jails_seccomp_filter() -> None:
    server = E2BLocal()
    try:
        with sdk_pointed_at(server):
            sandbox = Sandbox.create()
            try:
                sandbox.files.write("/home/user/h.py", HARDENING)
                import json

                denied = json.loads(sandbox.commands.run("python3 /home/user/h.py").stdout)
            finally:
                sandbox.kill()
        assert set(denied.values()) == {"Operation not permitted"}, denied
    finally:
        server.stop()


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/sys/fs/cgroup/memory/tasks"),
                    reason="skipped because per-sandbox cgroups need root and a cgroup v1 memory hierarchy")
def test_a_multi_process_memory_hog_is_capped_by_the_sandboxs_cgroup() -> None:
    server = E2BLocal("--memory", "256")
    try:
        with sdk_pointed_at(server):
            sandbox = Sandbox.create()
            try:
                sandbox.files.write("/home/user/hog.py", HOG)
                survivors = sandbox.commands.run("python3 /home/user/hog.py", timeout=60).stdout.strip()
            finally:
                sandbox.kill()
        # 4 × 150 MiB, each under its 256 MiB address-space limit: only the sandbox's memory
        # cgroup (256 MiB for the whole tree) stops them.
        assert survivors != "4", "four processes held 600 MiB in a sandbox of 256 MiB"
    finally:
        server.stop()
