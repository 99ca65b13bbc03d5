"""The driver under sandbox-runner's `posthog` network policy: every request over the egress
proxy's Unix socket (POSTHOG_EGRESS_SOCKET) with its absolute URL, no personal key on its side
(POSTHOG_AUTH=egress), the proxy's refusals and failures told apart from PostHog's answers.
The proxy is the real one (`sandbox-runner egress-proxy`), in front of posthog-local."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

import posthog_driver
from driver_support import requests_to
from phl_support import PERSONAL_KEY, PROJECT_ID, PROJECT_KEY, Server

ROOT = Path(__file__).resolve().parents[2]


class Proxy:
    def __init__(self, env: dict[str, str]) -> None:
        binary = Path(os.environ.get("SANDBOX_RUNNER_BIN", ".build/debug/sandbox-runner"))
        binary = binary if binary.is_absolute() else ROOT / binary
        if not binary.exists():
            pytest.fail(f"{binary} does not exist: build it (swift build) or set SANDBOX_RUNNER_BIN.")
        self.proc = subprocess.Popen([str(binary), "egress-proxy"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("egress-proxy listening on "), line + (self.proc.stderr.read() if self.proc.stderr else "")
        self.path = line.split(" on ", 1)[1].strip()

    def stop(self) -> list[dict]:
        out, _ = self.proc.communicate(input="", timeout=60)
        return json.loads(out.strip().splitlines()[-1])["egress"]


@pytest.fixture
def proxy(local: Server) -> Iterator[Proxy]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTHOG_", "SANDBOX_RUNNER_"))}
    env.update(POSTHOG_API_URL=local.url, POSTHOG_PERSONAL_API_KEY=PERSONAL_KEY)
    p = Proxy(env)
    yield p
    if p.proc.poll() is None:
        p.stop()


def egress_client(url: str, socket_path: str, **kwargs: object) -> posthog_driver.PostHogClient:
    env = {"POSTHOG_API_URL": url, "POSTHOG_PROJECT_API_KEY": PROJECT_KEY, "POSTHOG_PROJECT_ID": str(PROJECT_ID),
           "POSTHOG_EGRESS_SOCKET": socket_path, "POSTHOG_AUTH": "egress"}
    saved = {k: os.environ.get(k) for k in list(os.environ) if k.startswith("POSTHOG_")}
    for k in saved:
        del os.environ[k]
    os.environ.update(env)
    try:
        return posthog_driver.PostHogClient(backoff_base=0.01, backoff_cap=0.05, **kwargs)  # type: ignore[arg-type]
    finally:
        for k in env:
            del os.environ[k]
        os.environ.update({k: v for k, v in saved.items() if v is not None})


def test_every_call_goes_through_the_socket_without_a_key(local: Server, proxy: Proxy) -> None:
    with egress_client(local.url, proxy.path) as client:
        assert client.settings.personal_api_key is None and client.settings.key_at_egress
        assert "egress" in repr(client.settings) and PERSONAL_KEY not in repr(client.settings)
        assert client.query("select count() from events")["results"][0][0] > 100_000
        assert client.get_project_info()["id"] == PROJECT_ID
        assert client.evaluate_flags("user-1") is not None
        rows = list(client.export_events("2024-01-01T00:00:00Z", "2100-01-01T00:00:00Z", event_names=["signed_up"], page_size=500))
        assert len(rows) > 500
    assert requests_to(local, "POST", f"/api/projects/{PROJECT_ID}/query/") >= 3
    log = proxy.stop()
    assert len(log) == 1 and log[0]["allowed"] and log[0]["requests"] >= 6, log


def test_a_refusal_fails_at_once_and_is_not_retried(local: Server, proxy: Proxy) -> None:
    # The proxy allows only posthog-local's port: another port on the same host is refused.
    other = local.url.rsplit(":", 1)[0] + ":1"
    with egress_client(other, proxy.path, max_retries=4) as client:
        with pytest.raises(posthog_driver.EgressRefusedError) as info:
            client.query("select 1")
    assert "egress proxy refused" in str(info.value) and ":1 is not allowed" in str(info.value)
    assert PERSONAL_KEY not in str(info.value)
    refused = [e for e in proxy.stop() if not e["allowed"]]
    assert len(refused) == 1 and refused[0]["requests"] == 1, "a refusal was retried"


def test_posthog_unreachable_behind_the_proxy_is_a_connection_failure_retried(local: Server, tmp_path: Path) -> None:
    # An allowed host where nothing listens: the proxy answers 502 `unreachable`.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTHOG_", "SANDBOX_RUNNER_"))}
    env.update(POSTHOG_API_URL="http://127.0.0.1:9", POSTHOG_PERSONAL_API_KEY=PERSONAL_KEY)
    p = Proxy(env)
    try:
        with egress_client("http://127.0.0.1:9", p.path, max_retries=2) as client:
            with pytest.raises(posthog_driver.ConnectionFailedError) as info:
                client.get_project_info()
        assert not isinstance(info.value, posthog_driver.EgressRefusedError)
        assert "egress proxy could not complete" in str(info.value) and "after 3 attempts" in str(info.value)
    finally:
        log = p.stop()
    assert log[0]["allowed"] and log[0]["requests"] == 3 and "could not be reached" in log[0]["reason"]


def test_with_the_key_at_the_egress_and_no_socket_the_driver_sends_none(local: Server) -> None:
    """E2B: the sandbox calls PostHog directly and E2B's network rules add the key; the driver
    must neither refuse for want of a key nor send one."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("POSTHOG_")}
    os.environ.update(POSTHOG_AUTH="egress", POSTHOG_PROJECT_ID=str(PROJECT_ID))
    try:
        with posthog_driver.PostHogClient(api_url=local.url, max_retries=0) as client:
            with pytest.raises(posthog_driver.AuthenticationError) as info:
                client.get_project_info()
    finally:
        for k in ("POSTHOG_AUTH", "POSTHOG_PROJECT_ID"):
            os.environ.pop(k, None)
        os.environ.update(saved)
    assert info.value.status == 401, "the request went out (without a key) and PostHog refused it"
    assert "received no personal API key" in str(info.value)
