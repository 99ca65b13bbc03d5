"""What the egress tests share: the binary, a loopback listener that counts who reaches it, the
runner's own HTTP API, an abstract Unix socket of the host, and the attack script a run under
the `posthog` policy executes. A module of its own (not conftest.py) so test files import it by
a name no other test directory uses."""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
REBIND = "rebind.sandbox-runner.test"


def binary() -> str:
    """The CLI under test (SANDBOX_RUNNER_BIN points at another build, e.g. main's, to see these
    tests fail on the code before the egress proxy)."""
    path = Path(os.environ.get("SANDBOX_RUNNER_BIN", ".build/debug/sandbox-runner"))
    path = path if path.is_absolute() else ROOT / path
    if not path.exists():
        pytest.fail(f"{path} does not exist: build it (swift build) or set SANDBOX_RUNNER_BIN.")
    return str(path)


def fresh_keys() -> tuple[str, str]:
    """A personal and a project key no file, module or earlier run holds."""
    return "phx_" + secrets.token_hex(20), "phc_" + secrets.token_hex(20)


class _Recorder:
    """Accepts connections on `sock` on a thread of its own and counts them; answers each with
    `reply` (nothing when empty) and closes it."""

    def __init__(self, sock: socket.socket, reply: bytes = b"") -> None:
        self.sock = sock
        self.reply = reply
        self.accepted = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            try:
                if self.reply:
                    conn.sendall(self.reply)
            finally:
                conn.close()

    def close(self) -> None:
        self.sock.close()


class Listener(_Recorder):
    """A TCP listener on the host's loopback that records every connection it accepts."""

    def __init__(self) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        self.port = sock.getsockname()[1]
        super().__init__(sock, b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\nhost secrets")


class AbstractSocket(_Recorder):
    """A Unix socket in the host's abstract namespace (no file: only a network namespace hides it)."""

    def __init__(self) -> None:
        self.name = "sandbox-runner-egress-test-" + secrets.token_hex(6)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind("\0" + self.name)
        sock.listen(4)
        super().__init__(sock)


def start_serve() -> tuple[subprocess.Popen[str], int]:
    """The runner's own HTTP API on loopback (what a script must never reach)."""
    proc = subprocess.Popen([binary(), "serve", "--no-auth", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env={k: v for k, v in os.environ.items() if k != "SANDBOX_RUNNER_TOKEN"})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "listening on http://127.0.0.1:" in line, line
    return proc, int(line.rsplit(":", 1)[1].strip().rstrip("/"))


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def hosts_file(tmp: Path) -> Path:
    """A name the operator allow-listed that resolves to private and loopback addresses: a DNS
    rebinding of an allowed name onto the host's network."""
    path = tmp / "hosts"
    path.write_text(f"10.20.30.40 {REBIND}\n127.0.0.1 {REBIND}\n")
    return path


# The script: every way out it can think of, directly and through the proxy, then the driver's
# real calls with its own traffic recorded, then a search for the personal key everywhere it
# can read. It prints what it found; the test judges.
ATTACK = r'''
import json, os, re, socket

LISTENER, API, ABSTRACT, REBIND = {listener}, {api}, {abstract!r}, {rebind!r}
SOCK = os.environ.get("POSTHOG_EGRESS_SOCKET")
out = {{"direct": {{}}, "proxy": {{}}, "found": {{}}}}

def direct(name, host, port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        out["direct"][name] = "connected"
    except OSError as e:
        out["direct"][name] = type(e).__name__

direct("loopback listener", "127.0.0.1", LISTENER)
direct("runner api", "127.0.0.1", API)
direct("raw ip", "1.1.1.1", 443)
try:
    socket.getaddrinfo("example.com", 443)
    out["direct"]["dns"] = "resolved"
except OSError as e:
    out["direct"]["dns"] = type(e).__name__
try:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(3)
    s.connect("\0" + ABSTRACT)
    out["direct"]["abstract socket"] = "connected"
except OSError as e:
    out["direct"]["abstract socket"] = type(e).__name__

def via_proxy(name, raw):
    if not SOCK:
        out["proxy"][name] = "no proxy"
        return
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(SOCK)
    s.sendall(raw)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    out["proxy"][name] = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/1.1 ") else "no answer"

def get(url):
    return ("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % url).encode()

hostport = os.environ["POSTHOG_API_URL"].split("://", 1)[1].split("/", 1)[0]
via_proxy("loopback listener", get("http://127.0.0.1:%d/" % LISTENER))
via_proxy("runner api", get("http://127.0.0.1:%d/healthz" % API))
via_proxy("not allow-listed", get("https://example.com/"))
via_proxy("raw ip", get("http://93.184.216.34/"))
via_proxy("rebinding", get("https://%s/" % REBIND))
via_proxy("allowed host, plain http on the https port", get("http://%s:443/" % hostport.split(":")[0]))
via_proxy("connect allowed name, other port", ("CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (LISTENER, LISTENER)).encode())
via_proxy("connect allowed name and port", ("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (hostport, hostport)).encode())

# The driver's own calls, every byte it sends and receives recorded.
traffic = []
class Recording(socket.socket):
    def sendall(self, data, *a):
        traffic.append(bytes(data))
        return super().sendall(data, *a)
    def send(self, data, *a):
        traffic.append(bytes(data))
        return super().send(data, *a)
    def recv_into(self, buffer, *a):
        n = super().recv_into(buffer, *a)
        traffic.append(bytes(buffer[:n]))
        return n
    def recv(self, *a):
        data = super().recv(*a)
        traffic.append(data)
        return data
socket.socket = Recording

from posthog_driver import PostHogClient
with PostHogClient() as client:
    out["events"] = client.query("select count() from events")["results"][0][0]
    out["project"] = client.get_project_info().get("id")
    out["flags"] = sorted(client.evaluate_flags("user-1"))[:3]
out["traffic bytes"] = sum(len(t) for t in traffic)
out["traffic has requests"] = any(b"/api/projects/" in t for t in traffic)

# Keys found are reported as sha256 digests: the runner redacts a key it sees in the output, and
# the test must see the truth, not the redaction.
import hashlib
TOKEN = re.compile(rb"ph[xc]_[A-Za-z0-9]{{8,}}")
def tokens(blob):
    return sorted({{hashlib.sha256(m).hexdigest() for m in TOKEN.findall(blob)}})
project_digest = hashlib.sha256(os.environ["POSTHOG_PROJECT_API_KEY"].encode()).hexdigest()

out["found"]["environment"] = tokens("\n".join(os.environ.values()).encode())
out["found"]["/proc/self/environ"] = tokens(open("/proc/self/environ", "rb").read())
try:
    out["found"]["/proc/1/environ"] = tokens(open("/proc/1/environ", "rb").read())
except OSError as e:
    out["found"]["/proc/1/environ"] = [type(e).__name__]
out["found"]["traffic"] = tokens(b"".join(traffic))
memory = []
with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
    for line in maps:
        fields = line.split()
        if "r" not in fields[1] or (len(fields) > 5 and fields[5] in ("[vvar]", "[vsyscall]", "[vvar_vclock]")):
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        try:
            mem.seek(start)
            memory.append(mem.read(end - start))
        except (OSError, ValueError, OverflowError):
            pass
out["memory regions"] = len(memory)
out["found"]["memory"] = tokens(b"".join(memory))
# The search works: the project key (which may travel) is found in the environment and in memory.
out["project key seen"] = [w for w, found in out["found"].items() if project_digest in found]
print(json.dumps(out))
'''


def attack_script(listener: int, api: int, abstract: str) -> str:
    return ATTACK.format(listener=listener, api=api, abstract=abstract, rebind=REBIND)


def run_cli(args: list[str], env: dict[str, str], timeout: int = 180) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run([binary(), *args], capture_output=True, text=True, env=env, timeout=timeout)
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"no result document (exit {proc.returncode}): {proc.stdout[:500]} {proc.stderr[:500]}")
    return proc.returncode, doc


def refused(result: dict[str, Any], host: str, port: int) -> list[dict[str, Any]]:
    """The result's egress entries that refused host:port."""
    return [e for e in result.get("egress") or [] if e["host"] == host and e["port"] == port and not e["allowed"]]


class EgressProxy:
    """`sandbox-runner egress-proxy`: the proxy a `posthog` run gets, on its own, configured by
    `env`; `stop()` returns its log."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([binary(), "egress-proxy"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("egress-proxy listening on "):
            self.proc.kill()
            pytest.fail(f"egress-proxy did not start: {line!r} {self.proc.stderr.read() if self.proc.stderr else ''}")
        self.path = line.split(" on ", 1)[1].strip()

    def connection(self, timeout: float = 30) -> Any:
        """An http.client connection over the proxy's socket (requests take absolute URLs)."""
        import http.client

        path = self.path

        class Conn(http.client.HTTPConnection):
            def connect(self) -> None:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(self.timeout)
                s.connect(path)
                self.sock = s

        return Conn("egress", timeout=timeout)

    def raw(self, data: bytes, timeout: float = 10) -> bytes:
        """Sends bytes as they are and returns everything until the proxy closes."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(self.path)
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        s.close()
        return out

    def peak_rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> list[dict[str, Any]]:
        out, _ = self.proc.communicate(input="", timeout=60)
        return json.loads(out.strip().splitlines()[-1])["egress"]


class Upstream:
    """A plain HTTP/1.1 server on loopback standing for PostHog: it records what reaches it
    (headers, bodies, connections) and answers /echo, /big (a length or chunks) and /slow."""

    def __init__(self) -> None:
        import hashlib
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        owner = self
        self.requests: list[dict[str, Any]] = []
        self.connections = 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                owner.connections += 1

            def _body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or ""):
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(parts)
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _answer(self) -> None:
                body = self._body()
                owner.requests.append({"method": self.command, "path": self.path,
                                       "headers": {k.lower(): v for k, v in self.headers.items()},
                                       "body_len": len(body), "body_sha256": hashlib.sha256(body).hexdigest()})
                path, _, query = self.path.partition("?")
                params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
                if path == "/big":
                    n = int(params["n"])
                    block = bytes(range(256)) * 256
                    self.send_response(200)
                    if params.get("mode") == "chunked":
                        self.send_header("Transfer-Encoding", "chunked")
                        self.end_headers()
                        sent = 0
                        while sent < n:
                            part = block[: min(len(block), n - sent)]
                            self.wfile.write(b"%x\r\n" % len(part) + part + b"\r\n")
                            sent += len(part)
                        self.wfile.write(b"0\r\n\r\n")
                    else:
                        self.send_header("Content-Length", str(n))
                        self.end_headers()
                        sent = 0
                        while sent < n:
                            part = block[: min(len(block), n - sent)]
                            self.wfile.write(part)
                            sent += len(part)
                    return
                if path == "/slow":
                    import time

                    self.send_response(200)
                    self.send_header("Content-Length", "100")
                    self.end_headers()
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(float(params.get("s", "30")))
                    return
                doc = json.dumps(owner.requests[-1]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(doc)))
                self.end_headers()
                self.wfile.write(doc)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def proxy_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTHOG_", "SANDBOX_RUNNER_"))}
    env.update(extra)
    return env


class E2BLocal:
    """`sandbox-runner e2b-local` with ARGS; `env` adds to its environment."""

    KEY = "e2b_local_egress_test_key"

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        full = {k: v for k, v in os.environ.items() if not k.startswith("E2B_")}
        full.update(env or {})
        full["E2B_API_KEY"] = self.KEY
        self.proc = subprocess.Popen([binary(), "e2b-local", "--port", "0", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=full)
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().strip()
        if not first.startswith("e2b-local listening on "):
            self.proc.kill()
            pytest.fail(f"e2b-local did not start: {first!r} {self.proc.stderr.read() if self.proc.stderr else ''}")
        self.url = first.split(" on ", 1)[1]

    def local(self, path: str) -> Any:
        import urllib.request

        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return json.loads(r.read())

    def egress_of_run(self, run_id: str) -> list[dict[str, Any]]:
        logs = [x for x in self.local("/_local/egress") if x["metadata"].get("sandbox-runner-run") == run_id]
        assert len(logs) == 1, logs
        return logs[0]["egress"]

    def sdk_env(self) -> dict[str, str]:
        return {"E2B_API_URL": self.url, "E2B_SANDBOX_URL": self.url, "E2B_API_KEY": self.KEY}

    def stop(self) -> None:
        stop(self.proc)


def start_posthog_local(personal: str, project: str) -> tuple[subprocess.Popen[str], str]:
    """posthog-local on loopback with these keys (the demo dataset)."""
    python = ROOT / ".venv" / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTHOG_")}
    env.update(POSTHOG_PERSONAL_API_KEY=personal, POSTHOG_PROJECT_API_KEY=project, POSTHOG_PROJECT_ID="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([str(python), str(ROOT / "tools/posthog-local/server.py"), "--host", "127.0.0.1", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert proc.stdout is not None
    for _ in range(200):
        line = proc.stdout.readline()
        if "listening on " in line:
            return proc, line[line.index("http://"):].strip()
        if not line and proc.poll() is not None:
            break
    proc.kill()
    pytest.fail("posthog-local did not start")
