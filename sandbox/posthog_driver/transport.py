"""HTTP with keep-alive, retries (exponential backoff, full jitter, Retry-After as a minimum, a
bounded total wait) and typed errors. Logs method, path, status, duration and attempt: never
keys, never bodies."""
from __future__ import annotations

import gzip
import http.client
import json
import logging
import random
import socket
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

from .errors import (AuthenticationError, ConnectionFailedError, NotFoundError, PermissionDeniedError, PostHogError,
                     QueryError, RateLimitError, RequestTimeoutError, ServerError)

log = logging.getLogger("posthog_driver")
RETRY_STATUSES = {408, 429, 500, 502, 503, 504}


class Transport:
    def __init__(self, timeout: float, max_retries: int, max_retry_wait: float, secrets: list[str]) -> None:
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self._secrets = [s for s in secrets if s]
        self._conns: dict[tuple[str, str, int], http.client.HTTPConnection] = {}

    def close(self) -> None:
        for c in self._conns.values():
            c.close()
        self._conns.clear()

    def _conn(self, scheme: str, host: str, port: int) -> http.client.HTTPConnection:
        key = (scheme, host, port)
        conn = self._conns.get(key)
        if conn is None:
            if scheme == "https":
                conn = http.client.HTTPSConnection(host, port, timeout=self.timeout, context=ssl.create_default_context())
            else:
                conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
            self._conns[key] = conn
        return conn

    def _drop(self, scheme: str, host: str, port: int) -> None:
        conn = self._conns.pop((scheme, host, port), None)
        if conn is not None:
            conn.close()

    def scrub(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "[REDACTED]")
        return text

    def request(self, method: str, url: str, *, body: Any = None, headers: dict[str, str] | None = None,
                retry: bool = True, gzip_body: bool = False) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(url)
        scheme = parts.scheme
        port = parts.port or (443 if scheme == "https" else 80)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        data = None
        hdrs = {"Accept": "application/json", "User-Agent": "sandbox-runner-posthog-driver/1"}
        if body is not None:
            data = json.dumps(body, default=str, separators=(",", ":")).encode()
            hdrs["Content-Type"] = "application/json"
            if gzip_body:
                data = gzip.compress(data)
                hdrs["Content-Encoding"] = "gzip"
        hdrs.update(headers or {})
        attempts = 1 + (self.max_retries if retry else 0)
        waited = 0.0
        last_error: PostHogError = ServerError(f"{method} {parts.path} failed.")
        for attempt in range(1, attempts + 1):
            start = time.monotonic()
            retry_after: float | None = None
            try:
                conn = self._conn(scheme, parts.hostname or "", port)
                conn.request(method, path, body=data, headers=hdrs)
                resp = conn.getresponse()
                payload = resp.read()
                status = resp.status
                rh = {k.lower(): v for k, v in resp.getheaders()}
                if rh.get("connection", "").lower() == "close":
                    self._drop(scheme, parts.hostname or "", port)
                log.info("%s %s -> %d in %.0f ms (attempt %d)", method, parts.path, status, (time.monotonic() - start) * 1000, attempt)
                if status < 400:
                    return status, rh, payload
                last_error = self.error_for(status, rh, payload, parts.path)
                if status not in RETRY_STATUSES or attempt == attempts:
                    raise last_error
                if "retry-after" in rh:
                    try:
                        retry_after = float(rh["retry-after"])
                    except ValueError:
                        retry_after = None
            except (socket.timeout, TimeoutError) as exc:
                self._drop(scheme, parts.hostname or "", port)
                log.warning("%s %s timed out (attempt %d)", method, parts.path, attempt)
                last_error = RequestTimeoutError(f"PostHog did not answer {method} {parts.path} within {self.timeout:.0f} s; "
                                                 "raise POSTHOG_TIMEOUT or narrow the query.")
                if attempt == attempts:
                    raise last_error from exc
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                if isinstance(exc, PostHogError):
                    raise
                self._drop(scheme, parts.hostname or "", port)
                log.warning("%s %s connection failed: %s (attempt %d)", method, parts.path, type(exc).__name__, attempt)
                last_error = ConnectionFailedError(f"Cannot reach PostHog at {scheme}://{parts.hostname}:{port} "
                                                   f"({type(exc).__name__}); check POSTHOG_API_URL and the network.")
                if attempt == attempts:
                    raise last_error from exc
            backoff = random.uniform(0, min(30.0, 0.25 * 2 ** (attempt - 1)))
            wait = max(backoff, retry_after or 0.0)
            if waited + wait > self.max_retry_wait:
                raise last_error  # the retry budget would be exceeded: report what PostHog said
            waited += wait
            time.sleep(wait)
        raise last_error  # not reached

    def error_for(self, status: int, headers: dict[str, str], payload: bytes, path: str) -> PostHogError:
        detail = ""
        try:
            doc = json.loads(payload)
            if isinstance(doc, dict):
                detail = str(doc.get("detail") or doc.get("error") or "")
        except ValueError:
            pass
        detail = self.scrub(detail)[:500]
        if status == 401:
            return AuthenticationError("PostHog refused the API key (401): check POSTHOG_PERSONAL_API_KEY "
                                       "(a phx_ personal key) or POSTHOG_PROJECT_API_KEY for capture.", 401)
        if status == 403:
            return PermissionDeniedError(f"PostHog denied access (403){': ' + detail if detail else ''}. "
                                         "Give the key the scope it names, or check POSTHOG_PROJECT_ID.", 403)
        if status == 404:
            return NotFoundError(f"PostHog found nothing at {path} (404): check POSTHOG_PROJECT_ID and the id asked for.", 404)
        if status == 429:
            ra = headers.get("retry-after")
            try:
                wait = float(ra) if ra is not None else None
            except ValueError:
                wait = None
            return RateLimitError("PostHog is rate-limiting this key (429); retry later or make fewer queries.", wait)
        if status == 400 and "/query" in path:
            return QueryError(f"PostHog rejected the query: {detail or 'invalid HogQL'}", 400)
        if status >= 500:
            return ServerError(f"PostHog failed with HTTP {status}; retry later.", status)
        return PostHogError(f"PostHog answered HTTP {status}{': ' + detail if detail else ''}.", status)
