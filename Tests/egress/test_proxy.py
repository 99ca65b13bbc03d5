"""The egress proxy itself (`sandbox-runner egress-proxy`, the proxy every `posthog` run gets),
driven over its Unix socket against real loopback HTTP servers standing for PostHog."""
from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

from egress_support import EgressProxy, Upstream, fresh_keys, proxy_env


def test_the_key_goes_to_the_api_host_only_and_the_scripts_own_authorization_is_removed() -> None:
    api, other = Upstream(), Upstream()
    personal, _ = fresh_keys()
    proxy = EgressProxy(proxy_env(POSTHOG_API_URL=api.url, POSTHOG_PERSONAL_API_KEY=personal,
                                  SANDBOX_RUNNER_EGRESS_ALLOW=other.url))
    try:
        c = proxy.connection()
        stolen = {"Authorization": "Bearer phx_stolen_elsewhere", "Proxy-Authorization": "Basic eDp5"}
        c.request("GET", f"{api.url}/echo?x=1", headers=stolen)
        r = c.getresponse()
        seen = r.read() and api.requests[-1]
        assert r.status == 200
        assert seen["headers"]["authorization"] == f"Bearer {personal}"
        assert "proxy-authorization" not in seen["headers"] and seen["path"] == "/echo?x=1"
        c.request("POST", f"{other.url}/echo", body=b'{"a": 1}', headers=stolen)
        r = c.getresponse()
        r.read()
        assert r.status == 200 and "authorization" not in other.requests[-1]["headers"], "the key went to a host that is not the API"
        # The answer the script gets never carries the key either.
        assert personal.encode() not in r.read() and all(personal not in v for _, v in r.getheaders())
    finally:
        log = proxy.stop()
        api.close()
        other.close()
    assert {(e["port"], e["allowed"], e["requests"]) for e in log} == {(api.port, True, 1), (other.port, True, 1)}


def test_the_proxy_connects_only_to_the_address_it_checked(tmp_path: Path) -> None:
    """DNS rebinding: the proxy resolves a name, checks the answer, and hands libcurl that very
    address (CURLOPT_RESOLVE). `pinned.invalid` resolves nowhere but in the operator's hosts
    file: a second lookup by libcurl would fail; the request arrives only if the pin holds."""
    up = Upstream()
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 pinned.invalid\n")
    proxy = EgressProxy(proxy_env(POSTHOG_API_URL=f"http://pinned.invalid:{up.port}", SANDBOX_RUNNER_EGRESS_HOSTS=str(hosts),
                                  SANDBOX_RUNNER_EGRESS_PRIVATE="pinned.invalid"))
    try:
        c = proxy.connection()
        c.request("GET", f"http://pinned.invalid:{up.port}/echo")
        r = c.getresponse()
        assert r.status == 200, r.read()
        assert up.requests[-1]["headers"]["host"] == f"pinned.invalid:{up.port}"
    finally:
        proxy.stop()
        up.close()


def test_a_name_resolving_to_a_private_address_is_refused_unless_the_operator_vouches(tmp_path: Path) -> None:
    up = Upstream()
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 posthog.corp.test\n")
    base = dict(POSTHOG_API_URL=f"http://posthog.corp.test:{up.port}", SANDBOX_RUNNER_EGRESS_HOSTS=str(hosts))
    for vouched, status in ((False, 403), (True, 200)):
        proxy = EgressProxy(proxy_env(**base, **({"SANDBOX_RUNNER_EGRESS_PRIVATE": "posthog.corp.test"} if vouched else {})))
        try:
            c = proxy.connection()
            c.request("GET", f"http://posthog.corp.test:{up.port}/echo")
            r = c.getresponse()
            body = r.read()
            assert r.status == status, body
            if status == 403:
                assert r.getheader("X-Sandbox-Runner-Egress") == "refused" and b"loopback address (127.0.0.1)" in body
        finally:
            proxy.stop()
    assert len(up.requests) == 1
    up.close()


def test_requests_two_servers_could_frame_differently_are_refused() -> None:
    up = Upstream()
    proxy = EgressProxy(proxy_env(POSTHOG_API_URL=up.url))
    target = f"{up.url}/echo"
    shapes = {
        "length and chunked": f"POST {target} HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "two lengths": f"POST {target} HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        "bare LF": f"GET {target} HTTP/1.1\nHost: x\n\n",
        "folded header": f"GET {target} HTTP/1.1\r\nX-A: 1\r\n  folded\r\n\r\n",
        "other coding": f"POST {target} HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        "origin form": "GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "credentials in URL": f"GET http://user:pw@127.0.0.1:{up.port}/echo HTTP/1.1\r\n\r\n",
        "not HTTP": "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + "A" * 40 + "\r\n\r\n",
    }
    try:
        for name, raw in shapes.items():
            answer = proxy.raw(raw.encode("latin-1"))
            assert answer.startswith(b"HTTP/1.1 400 "), (name, answer[:200])
    finally:
        log = proxy.stop()
        up.close()
    assert up.requests == [], "a malformed request reached the host"
    assert sum(e["requests"] for e in log if not e["allowed"]) == len(shapes), log


def test_bodies_stream_both_ways_with_flat_memory() -> None:
    up = Upstream()
    proxy = EgressProxy(proxy_env(POSTHOG_API_URL=up.url))
    try:
        c = proxy.connection(timeout=120)
        body = os.urandom(1 << 20) * 8  # 8 MiB, sent in chunks
        c.request("POST", f"{up.url}/echo", body=iter([body[i:i + 65536] for i in range(0, len(body), 65536)]),
                  encode_chunked=True)
        r = c.getresponse()
        r.read()
        assert r.status == 200 and up.requests[-1]["body_len"] == len(body)
        assert up.requests[-1]["body_sha256"] == hashlib.sha256(body).hexdigest()
        expected = hashlib.sha256((bytes(range(256)) * 256) * 3200).hexdigest()  # 200 MiB
        for mode in ("length", "chunked"):
            c.request("GET", f"{up.url}/big?n={200 << 20}&mode={mode}")
            r = c.getresponse()
            digest, n = hashlib.sha256(), 0
            while chunk := r.read(1 << 20):
                digest.update(chunk)
                n += len(chunk)
            assert r.status == 200 and n == 200 << 20 and digest.hexdigest() == expected, mode
        assert up.connections == 1, "the kept-alive connection did not carry every request upstream"
        # 400 MiB went through; the proxy never held more than a few buffers of it.
        assert proxy.peak_rss_kib() < 64 << 10, f"the proxy grew to {proxy.peak_rss_kib()} KiB"
    finally:
        log = proxy.stop()
        up.close()
    assert log[0]["bytesIn"] > 400 << 20 and log[0]["bytesOut"] == 8 << 20


def test_the_runs_byte_cap_ends_a_transfer_and_is_logged() -> None:
    up = Upstream()
    proxy = EgressProxy(proxy_env(POSTHOG_API_URL=up.url, SANDBOX_RUNNER_EGRESS_MAX_BYTES_IN="1000000"))
    try:
        c = proxy.connection()
        c.request("GET", f"{up.url}/big?n=5000000")
        r = c.getresponse()
        got = 0
        try:
            while chunk := r.read(65536):
                got += len(chunk)
        except Exception:  # noqa: BLE001 - the proxy cuts the answer: IncompleteRead
            pass
        assert got < 1_100_000
    finally:
        log = proxy.stop()
        up.close()
    assert any("byte cap" in (e.get("reason") or "") for e in log), log


def test_too_many_open_connections_are_refused_and_stop_ends_transfers_in_flight() -> None:
    up = Upstream()
    proxy = EgressProxy(proxy_env(POSTHOG_API_URL=up.url))
    held = []
    try:
        for _ in range(16):  # EgressLimits.maxOpenConnections
            s = socket.socket(socket.AF_UNIX)
            s.connect(proxy.path)
            held.append(s)
        c = proxy.connection()
        c.request("GET", f"{up.url}/echo")
        r = c.getresponse()
        assert r.status == 503 and r.getheader("X-Sandbox-Runner-Egress") == "cap"
        held[0].sendall(f"GET {up.url}/slow?s=60 HTTP/1.1\r\n\r\n".encode())
        assert held[0].recv(100).startswith(b"HTTP/1.1 200")
    finally:
        log = proxy.stop()  # does not wait the 60 s: the transfer is aborted
        up.close()
    assert not os.path.exists(proxy.path) and not os.path.exists(os.path.dirname(proxy.path))
    assert any("too many connections" in (e.get("reason") or "") for e in log), log
    for s in held:
        s.close()
