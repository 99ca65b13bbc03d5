"""The socket layer: a ThreadingHTTPServer speaking HTTP/1.1 (keep-alive), fault injection."""

from __future__ import annotations

import contextlib
import socket
import sys
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from .app import CAPTURE_PATHS, FLAG_PATHS, App, Request, Response
from .faults import Fault


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    app: App
    verbose: bool = False


class _Server6(_Server):
    address_family = socket.AF_INET6


def _fault_response(fault: Fault, path: str) -> Response:
    bare = path.rstrip("/")
    plain = bare in CAPTURE_PATHS
    if fault.kind == "429":
        headers = {"Retry-After": str(fault.retry_after)}
        if plain:
            return Response.text(429, "too many requests", headers)
        return Response.json(429, {"type": "throttled_error", "code": "throttled",
                                   "detail": f"Request was throttled. Expected available in "
                                             f"{fault.retry_after} seconds.", "attr": None}, headers)
    status = int(fault.kind)
    if plain:
        return Response.text(status, "service unavailable" if status == 503 else "internal error")
    if bare in FLAG_PATHS or path.startswith("/api/"):
        return Response.json(status, {"type": "server_error", "code": "error",
                                      "detail": "A server error occurred.", "attr": None})
    return Response.text(status, "server error")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY each small answer waits
    # ~40 ms for the client's delayed ACK on a kept-alive connection.
    disable_nagle_algorithm = True
    server_version = "posthog-local"
    sys_version = ""
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
        if self.server.verbose:
            # the request line may carry personal_api_key in its query: log the path only
            path = urlsplit(getattr(self, "path", "")).path
            sys.stderr.write(f"{self.address_string()} {self.command} {path} {args[1] if len(args) > 1 else ''}\n")

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            total = 0
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > self.server.app.limits.max_body_bytes:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.server.app.limits.max_body_bytes:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _dispatch(self) -> None:
        app = self.server.app
        split = urlsplit(self.path)
        path = split.path or "/"
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self._send(Response.text(400, "bad request body"))
            return
        if body is None:
            self.close_connection = True
            self._send(Response.text(413, "request body too large") if not path.startswith("/api/")
                       else Response.json(413, {"type": "invalid_request", "code": "request_too_large",
                                                "detail": "Request body too large.", "attr": None}))
            return
        request = Request(method=self.command, path=path, query=parse_qs(split.query),
                          headers={k.lower(): v for k, v in self.headers.items()},
                          body=body, client_ip=self.client_address[0])
        local = path.startswith("/_local/")
        if not local:
            app.stats.record(self.command, path)
        fault = None if local else app.faults.take(self.command, path)
        if fault is not None:
            if fault.kind == "drop":
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault.kind == "slow":
                time.sleep(fault.ms / 1000.0)
            else:
                response = _fault_response(fault, path)
                app.stats.record_status(response.status)
                self._send(response)
                return
        try:
            response = app.handle(request)
        except Exception as err:  # noqa: BLE001 - the last line of defence: answer, never a trace
            app.log(f"internal error on {self.command} {path}: {type(err).__name__}")
            if self.server.verbose:
                traceback.print_exc(file=sys.stderr)
            response = Response.json(500, {"type": "server_error", "code": "error",
                                           "detail": "A server error occurred.", "attr": None})
        if not local:
            app.stats.record_status(response.status)
        self._send(response)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_OPTIONS = do_HEAD = _dispatch


def make_server(host: str, port: int, app: App, verbose: bool = False) -> _Server:
    cls = _Server6 if ":" in host else _Server
    server = cls((host, port), Handler)
    server.app = app
    server.verbose = verbose
    return server

