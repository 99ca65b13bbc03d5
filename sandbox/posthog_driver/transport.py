"""HTTP for the driver: keep-alive connections per host, retries, typed errors.

- One idle keep-alive connection pool per (scheme, host, port); a pooled connection the server has
  closed meanwhile is noticed (readable while idle) and replaced before it is used.
- Waiting for PostHog's limits: a 429 is always retried (PostHog refused before doing any work),
  after the wait `Retry-After` asks for (without one, the concurrency limit: exponential backoff
  with full jitter). 429s are not counted against `max_retries`: they are bounded by
  `max_retry_wait`, the total seconds one call may spend waiting (15 minutes by default, so an
  export under PostHog's 120 queries/hour finishes by waiting). A wait that would pass that total
  fails at once with RateLimitError. Every wait is logged at INFO, and a wait of a second or more
  prints a progress line on stderr (repeated every 10 s while it lasts).
- Other retries, at most `max_retries` (4), with exponential backoff and full jitter
  (`uniform(0, min(cap, base * 2**n))`), also within `max_retry_wait`:
    408, 500, 502, 503, 504    only idempotent requests (GETs, read-only POSTs like the query,
                               capture whose events carry a uuid PostHog deduplicates on)
    connection failures        idempotent requests; others only when the connection could not
                               even be opened (nothing was sent)
    timeouts                   idempotent requests
- Logs method, path, status, duration and attempt; never a key, a body or a query string.
- With an egress socket (POSTHOG_EGRESS_SOCKET, sandbox-runner's `posthog` policy) every
  connection is a Unix socket to the runner's egress proxy, each request carries its absolute URL
  (`GET https://us.posthog.com/api/… HTTP/1.1`) in plain HTTP, and the proxy speaks TLS to
  PostHog. Its own answers carry `X-Sandbox-Runner-Egress`: `refused` and `cap` fail at once
  (EgressRefusedError), `unreachable`, `timeout` and `broken` count as connection failures.

`http.client` (~17 ms to import, ssl included) loads on the first request, not on import.
"""
from __future__ import annotations

import os
import time

from . import _log, _progress
from .errors import (AuthenticationError, BadRequestError, ConnectionFailedError, EgressRefusedError, NotFoundError,
                     PermissionDeniedError, PostHogError, QueryError, RateLimitError, RequestTimeoutError,
                     ServerError, clean_detail)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Mapping

RETRY_IF_IDEMPOTENT = frozenset({408, 500, 502, 503, 504})
USER_AGENT = "sandbox-runner-posthog-driver/1.0"
_MAX_IDLE_PER_HOST = 4


class Response:
    __slots__ = ("status", "headers", "body", "attempts")

    def __init__(self, status: int, headers: dict[str, str], body: bytes, attempts: int) -> None:
        self.status = status
        self.headers = headers  # lower-cased names
        self.body = body
        self.attempts = attempts

    def json(self) -> Any:
        import json

        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise PostHogError("PostHog answered with something that is not JSON; check that "
                               "POSTHOG_API_URL points at PostHog.", self.status) from None


class _EgressFailure(OSError):
    """Internal: the egress proxy could not reach PostHog (its sentence, never a key)."""


class _EgressTimeout(_EgressFailure, TimeoutError):
    pass


class _NetworkFailure(Exception):
    """Internal: a request failed below HTTP. `sent` is False when nothing reached the server."""

    def __init__(self, cause: BaseException, sent: bool) -> None:
        super().__init__(type(cause).__name__)
        self.cause = cause
        self.sent = sent
        self.timeout = isinstance(cause, TimeoutError)
        # a certificate that does not verify will not verify on the next attempt either
        self.permanent = type(cause).__name__ == "SSLCertVerificationError"


def _host_port(hostport: str, scheme: str) -> tuple[str, int]:
    default = 443 if scheme == "https" else 80
    if hostport.startswith("["):  # [v6]:port
        host, _, rest = hostport[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = hostport.partition(":")
    try:
        return host, int(port) if port else default
    except ValueError:
        raise PostHogError("The PostHog URL has a port that is not a number; check POSTHOG_API_URL.") from None


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from email.utils import parsedate_to_datetime

        when = parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


class _Proxy:
    __slots__ = ("host", "port", "headers")

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port, self.headers = host, port, headers


def _proxy_for(scheme: str, host: str) -> _Proxy | None:
    """HTTPS_PROXY / HTTP_PROXY unless NO_PROXY (or loopback) says otherwise."""
    env = os.environ
    raw = env.get(f"{scheme}_proxy") or env.get(f"{scheme.upper()}_PROXY") or ""
    if not raw.strip() or host in ("localhost", "::1") or host.startswith("127."):
        return None
    for entry in (env.get("no_proxy") or env.get("NO_PROXY") or "").split(","):
        entry = entry.strip().lower().lstrip(".")
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return None
    raw = raw.strip()
    if "://" not in raw:
        raw = "http://" + raw
    proxy_scheme, _, rest = raw.partition("://")
    rest = rest.split("/", 1)[0]
    headers: dict[str, str] = {}
    if "@" in rest:
        import base64
        from urllib.parse import unquote

        userinfo, rest = rest.rsplit("@", 1)
        token = base64.b64encode(unquote(userinfo).encode()).decode()
        headers["Proxy-Authorization"] = f"Basic {token}"
    phost, pport = _host_port(rest, proxy_scheme.lower())
    return _Proxy(phost, pport, headers)


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _unix_connection(path: str, timeout: float) -> Any:
    """An HTTPConnection over the Unix socket at `path` (the runner's egress proxy)."""
    import http.client
    import socket

    class _EgressConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(path)
            except OSError:
                sock.close()
                raise
            self.sock = sock

    conn = _EgressConnection("egress-proxy", timeout=timeout)
    conn._posthog_absolute = True  # type: ignore[attr-defined]
    conn._posthog_unix = True  # type: ignore[attr-defined]
    return conn


def _quickack(sock: Any) -> None:
    """Linux: acknowledge the answer's first segment at once. A server that writes headers and
    body separately without TCP_NODELAY otherwise waits for our delayed ACK: ~40 ms per small
    answer on a kept-alive connection (posthog-local does this)."""
    import socket

    option = getattr(socket, "TCP_QUICKACK", None)
    if option is not None and sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, option, 1)
        except OSError:
            pass


def _dropped(conn: Any) -> bool:
    """True when an idle pooled connection was closed by the server (readable while idle)."""
    sock = getattr(conn, "sock", None)
    if sock is None:
        return True
    import select

    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class Transport:
    def __init__(self, *, timeout: float, max_retries: int, max_retry_wait: float,
                 backoff_base: float = 0.5, backoff_cap: float = 8.0, secrets: list[str] | None = None,
                 egress_socket: str | None = None) -> None:
        import _thread

        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._secrets = [s for s in (secrets or []) if s]
        self._idle: dict[tuple[str, str, int], list[Any]] = {}
        self._lock = _thread.allocate_lock()
        self._ssl_context: Any = None
        self.egress_socket = egress_socket

    # -- connections -----------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    def _context(self) -> Any:
        if self._ssl_context is None:
            import ssl

            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _new_connection(self, scheme: str, host: str, port: int) -> Any:
        import http.client

        if self.egress_socket:
            return _unix_connection(self.egress_socket, self.timeout)
        proxy = _proxy_for(scheme, host)
        if scheme == "https":
            if proxy is not None:
                conn = http.client.HTTPSConnection(proxy.host, proxy.port, timeout=self.timeout,
                                                   context=self._context())
                conn.set_tunnel(host, port, headers=proxy.headers)
            else:
                conn = http.client.HTTPSConnection(host, port, timeout=self.timeout, context=self._context())
            conn._posthog_absolute = False  # type: ignore[attr-defined]
        else:
            if proxy is not None:
                conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=self.timeout)
                conn._posthog_proxy_headers = proxy.headers  # type: ignore[attr-defined]
            else:
                conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
            conn._posthog_absolute = proxy is not None  # type: ignore[attr-defined]
        return conn

    def _checkout(self, key: tuple[str, str, int]) -> tuple[Any, bool]:
        while True:
            with self._lock:
                pool = self._idle.get(key)
                conn = pool.pop() if pool else None
            if conn is None:
                return self._new_connection(*key), False
            if _dropped(conn):
                conn.close()
                continue
            return conn, True

    def _checkin(self, key: tuple[str, str, int], conn: Any) -> None:
        with self._lock:
            pool = self._idle.setdefault(key, [])
            if len(pool) < _MAX_IDLE_PER_HOST:
                pool.append(conn)
                return
        conn.close()

    def _once(self, method: str, scheme: str, host: str, port: int, target: str, body: bytes | None,
              headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        import http.client

        key = (scheme, host, port)
        conn, _ = self._checkout(key)
        if conn.sock is None:
            try:
                conn.connect()
            except OSError as err:  # refused, unreachable, DNS, TLS, proxy: nothing was sent
                conn.close()
                raise _NetworkFailure(err, sent=False) from err
        if getattr(conn, "_posthog_absolute", False):
            target = f"{scheme}://{_authority(host, port)}{target}"
            headers = {**headers, **getattr(conn, "_posthog_proxy_headers", {})}
        try:
            conn.request(method, target, body=body, headers=headers)
            if not getattr(conn, "_posthog_unix", False):
                _quickack(conn.sock)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as err:
            conn.close()
            raise _NetworkFailure(err, sent=True) from err
        response_headers = {k.lower(): v for k, v in response.getheaders()}
        if response.will_close:
            conn.close()
        else:
            self._checkin(key, conn)
        egress = response_headers.get("x-sandbox-runner-egress") if self.egress_socket else None
        if egress:
            self._egress_answer(egress, data, method)
        encoding = response_headers.get("content-encoding", "").lower()
        if encoding in ("gzip", "deflate") and data:
            import zlib

            try:
                data = zlib.decompress(data, 47)  # 32 + 15: gzip or zlib header, detected
            except zlib.error:
                raise _NetworkFailure(ValueError("undecodable compressed body"), sent=True) from None
        return response.status, response_headers, data

    @staticmethod
    def _egress_answer(kind: str, data: bytes, method: str) -> None:
        """An answer the egress proxy made itself (not PostHog's): a refusal fails at once; a
        failure to reach PostHog is a connection failure, retried as those are."""
        import json

        try:
            doc = json.loads(data)
            message = str(doc.get("error") or "").strip() if isinstance(doc, dict) else ""
        except (ValueError, UnicodeDecodeError):
            message = ""
        message = message[:300] or "no reason given"
        if kind in ("refused", "cap"):
            raise EgressRefusedError(f"The sandbox's egress proxy refused the request: {message}", kind=kind)
        if kind == "timeout":
            raise _NetworkFailure(_EgressTimeout(message), sent=True)
        raise _NetworkFailure(_EgressFailure(message), sent=kind == "broken")

    # -- requests --------------------------------------------------------------------------------
    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform(0, min(cap, base * 2**(attempt-1)))."""
        import random

        return random.uniform(0.0, min(self.backoff_cap, self.backoff_base * (2 ** (attempt - 1))))

    def request(self, method: str, base_url: str, path: str, *, params: Mapping[str, Any] | None = None,
                body: bytes | None = None, headers: Mapping[str, str] | None = None, idempotent: bool,
                kind: str = "api", max_retries: int | None = None, accept: tuple[int, ...] = (),
                max_wait: float | None = None) -> Response:
        """One logical request, retried as the module docstring says. `path` is absolute (starts
        with /) and is what errors and logs show; `params` go to the query string, never to logs.
        Statuses in `accept` are returned like successes (their body is the caller's to read)."""
        scheme, _, rest = base_url.partition("://")
        hostport, _, prefix = rest.partition("/")
        host, port = _host_port(hostport, scheme)
        shown = path
        target = ("/" + prefix.strip("/") if prefix.strip("/") else "") + path
        if params:
            from urllib.parse import urlencode

            query = urlencode([(k, _param(v)) for k, v in params.items() if v is not None])
            if query:
                target += "?" + query
        all_headers = {"Accept": "application/json", "Accept-Encoding": "gzip", "User-Agent": USER_AGENT,
                       "Host": hostport}
        if body is not None:
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        retries_left = self.max_retries if max_retries is None else max_retries
        budget = self.max_retry_wait if max_wait is None else max_wait
        waited = 0.0
        attempt = throttles = failures = 0
        while True:
            attempt += 1
            started = time.monotonic()
            failure: _NetworkFailure | None = None
            status, response_headers, data, retry_after = 0, {}, b"", None
            try:
                status, response_headers, data = self._once(method, scheme, host, port, target, body, all_headers)
            except _NetworkFailure as err:
                failure = err
            elapsed = (time.monotonic() - started) * 1000
            if failure is None:
                _log.log(_log.DEBUG, "%s %s -> %d in %.0f ms (attempt %d)", method, shown, status, elapsed, attempt)
                if status < 400 or status in accept:
                    return Response(status, response_headers, data, attempt)
                if status == 429:
                    retry_after = _retry_after(response_headers.get("retry-after"))
                    throttles += 1
                    delay = retry_after if retry_after is not None else self.backoff(throttles)
                    if waited + delay > budget:
                        _log.log(_log.WARNING, "%s %s: HTTP 429; giving up after %.0f s of waiting (the next wait, "
                                 "%.0f s, would pass the %g s this call may wait)", method, shown, waited, delay, budget)
                        raise self._http_error(status, response_headers, data, method, shown, kind, attempt,
                                               retry_after, waited, budget)
                    why = (f"PostHog is rate-limiting these requests (HTTP 429 on {method} {shown}); waiting {delay:.0f} s "
                           f"as Retry-After asks") if retry_after is not None else \
                        (f"PostHog has too many queries running at once (HTTP 429 on {method} {shown}); waiting "
                         f"{delay:.1f} s")
                    self._wait(delay, why, waited, budget, attempt)
                    waited += delay
                    continue
                retryable = idempotent and status in RETRY_IF_IDEMPOTENT
                what = f"HTTP {status}"
            else:
                _log.log(_log.INFO, "%s %s failed after %.0f ms (attempt %d): %s", method, shown, elapsed,
                         attempt, type(failure.cause).__name__)
                retryable = (idempotent or not failure.sent) and not failure.permanent
                what = type(failure.cause).__name__
            delay = 0.0
            if retryable and failures < retries_left:
                delay = self.backoff(failures + 1)
                if waited + delay > budget:
                    _log.log(_log.WARNING, "%s %s: %s; giving up after %d attempts (the next wait, %.1f s, would "
                             "pass max_retry_wait %g s)", method, shown, what, attempt, delay, budget)
                    retryable = False
            if not retryable or failures >= retries_left:
                if failure is not None:
                    raise self._network_error(failure, method, shown, base_url, attempt, idempotent) from failure.cause
                raise self._http_error(status, response_headers, data, method, shown, kind, attempt, retry_after)
            failures += 1
            _log.log(_log.WARNING, "%s %s: %s; retrying in %.2f s (attempt %d of %d)", method, shown, what, delay,
                     attempt + 1, retries_left + 1)
            time.sleep(delay)
            waited += delay

    def _wait(self, delay: float, why: str, waited: float, budget: float, attempt: int) -> None:
        """Sleeps `delay` seconds; logged at INFO, and a progress line on stderr for a wait of a
        second or more (then every 10 s), so a script that waits is never silent."""
        _log.log(_log.INFO, "%s (attempt %d; %.0f s waited so far, at most %g s)", why, attempt, waited, budget)
        if delay < 1.0:
            time.sleep(delay)
            return
        import sys

        end = time.monotonic() + delay
        sys.stderr.write(f"posthog_driver: {why} ({waited:.0f} s waited so far, at most {budget:g} s).\n")
        sys.stderr.flush()
        _progress.waiting(delay, "PostHog's rate limit" if "HTTP 429" in why else why)
        while True:
            left = end - time.monotonic()
            if left <= 0:
                _progress.waiting(0)
                return
            time.sleep(min(left, 10.0))
            left = end - time.monotonic()
            if left >= 1.0:
                sys.stderr.write(f"posthog_driver: still waiting for PostHog's limit: {left:.0f} s left.\n")
                sys.stderr.flush()

    # -- errors ----------------------------------------------------------------------------------
    def _network_error(self, failure: _NetworkFailure, method: str, path: str, base_url: str,
                       attempts: int, idempotent: bool) -> PostHogError:
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        where = base_url.split("://", 1)[-1].split("/", 1)[0]
        if isinstance(failure.cause, _EgressFailure) and not failure.timeout:
            return ConnectionFailedError(
                f"The egress proxy could not complete {method} {path} with PostHog{tries}: {failure.cause}",
                method=method, path=path, attempts=attempts)
        if failure.timeout:
            return RequestTimeoutError(
                f"PostHog did not answer {method} {path} within {self.timeout:g} s{tries}; raise "
                f"POSTHOG_TIMEOUT or ask for less data at once.", method=method, path=path, attempts=attempts)
        if failure.permanent:
            return ConnectionFailedError(
                f"The TLS certificate of {where} could not be verified; check POSTHOG_API_URL (or SSL_CERT_FILE "
                f"for a private certificate authority).", method=method, path=path, attempts=attempts)
        if not failure.sent:
            return ConnectionFailedError(
                f"Cannot connect to PostHog at {where}{tries} ({type(failure.cause).__name__}); check "
                f"POSTHOG_API_URL and the network.", method=method, path=path, attempts=attempts)
        hint = ("" if idempotent else " It may or may not have been carried out: check before trying again.")
        return ConnectionFailedError(
            f"The connection to PostHog at {where} broke before it answered {method} {path}{tries} "
            f"({type(failure.cause).__name__}).{hint}", method=method, path=path, attempts=attempts)

    def _http_error(self, status: int, headers: dict[str, str], data: bytes, method: str, path: str,
                    kind: str, attempts: int, retry_after: float | None, waited: float = 0.0,
                    budget: float | None = None) -> PostHogError:
        doc: Any = None
        if data[:1] in (b"{", b"["):
            import json

            try:
                doc = json.loads(data)
            except (ValueError, UnicodeDecodeError):
                doc = None
        detail = clean_detail(doc.get("detail"), self._secrets) if isinstance(doc, dict) else None
        code = doc.get("code") if isinstance(doc, dict) and isinstance(doc.get("code"), str) else None
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        info = {"code": code, "method": method, "path": path, "attempts": attempts}
        ingest = kind in ("capture", "flags")
        if status == 401:
            if ingest:
                return AuthenticationError("PostHog rejected the project API key (HTTP 401): check "
                                           "POSTHOG_PROJECT_API_KEY (the phc_ key of this project).", 401, **info)
            if code == "not_authenticated":
                return AuthenticationError("PostHog received no personal API key (HTTP 401): set "
                                           "POSTHOG_PERSONAL_API_KEY (a phx_ key).", 401, **info)
            return AuthenticationError("PostHog rejected the personal API key (HTTP 401): check "
                                       "POSTHOG_PERSONAL_API_KEY (a phx_ personal key, not the phc_ project key).",
                                       401, **info)
        if status == 403:
            scope = _scope_in(detail)
            if scope:
                return PermissionDeniedError(f"The personal API key lacks the scope '{scope}' (HTTP 403): add "
                                             f"it to the key in PostHog, or use a key that has it.", 403, **info)
            return PermissionDeniedError("The personal API key may not access this project (HTTP 403): check "
                                         "POSTHOG_PROJECT_ID and the key's project access.", 403, **info)
        if status == 404:
            return NotFoundError(f"PostHog found nothing at {path} (HTTP 404): check POSTHOG_PROJECT_ID and "
                                 f"the id asked for.", 404, **info)
        if status == 429:
            wait = f" and asks to wait {retry_after:g} s more" if retry_after is not None else ""
            spent = f" after waiting {waited:.0f} s" if waited else ""
            limit = (f", past the {budget:g} s this call may wait in all (max_retry_wait, POSTHOG_MAX_WAIT)"
                     if budget is not None else "")
            return RateLimitError(f"PostHog is rate-limiting these requests (HTTP 429){wait}{spent}{limit}; try again "
                                  f"later, make fewer requests or allow a longer wait.", retry_after,
                                  **{**info, "code": code or "throttled"})
        if status >= 500:
            return ServerError(f"PostHog failed with HTTP {status} on {method} {path}{tries}; try again later.",
                               status, **info)
        if kind == "query" and status == 400:
            return QueryError(f"PostHog rejected the HogQL query: {detail or 'it is not valid HogQL'}",
                              400, detail=detail, **info)
        if status == 405:
            return BadRequestError(f"PostHog does not allow {method} on {path} (HTTP 405).", 405, detail=detail,
                                   **info)
        if status == 413:
            return BadRequestError("The request was too large for PostHog (HTTP 413): send less at once.",
                                   413, detail=detail, **info)
        if kind == "capture":
            # capture answers in plain text: never shown
            return BadRequestError(f"PostHog refused the events (HTTP {status}): each needs an event name, a "
                                   f"distinct_id, and a valid timestamp and uuid when given.", status, **info)
        if detail:
            return BadRequestError(f"PostHog refused {method} {path} (HTTP {status}): {detail}", status,
                                   detail=detail, **info)
        return BadRequestError(f"PostHog refused {method} {path} (HTTP {status}).", status, **info)


def _scope_in(detail: str | None) -> str | None:
    if not detail or "scope" not in detail:
        return None
    import re

    match = re.search(r"scope '([a-z_]+:(?:read|write))'", detail)
    return match.group(1) if match else None


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
