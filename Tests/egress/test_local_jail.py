"""The `posthog` network policy in the local jail, attacked from inside (issue 10).

A script run as a template that talks to PostHog would be (`exec --demo`: policy posthog) tries
every way out: the host's loopback (a listener of this test), the runner's own HTTP API, an
abstract Unix socket of the host, a raw IP, a name that is not allow-listed, DNS rebinding of an
allow-listed name onto private and loopback addresses, plain http to the https port of the
allowed host, CONNECT tunnels; then uses the driver for real and searches for the personal API
key in its environment, /proc (environ, every readable memory mapping) and its own traffic.
On the code before the egress proxy (the jail shared the host's network and held the key) the
direct connections succeed and the key is everywhere: every assertion below fails there.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from egress_support import REBIND, AbstractSocket, Listener, attack_script, fresh_keys, hosts_file, refused, run_cli


def test_a_script_under_posthog_reaches_posthog_only_and_never_holds_the_key(
        tmp_path: Path, listener: Listener, abstract_socket: AbstractSocket, runner_api: int) -> None:
    personal, project = fresh_keys()
    script = tmp_path / "attack.py"
    script.write_text(attack_script(listener.port, runner_api, abstract_socket.name))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTHOG_", "SANDBOX_RUNNER_"))}
    env.update(POSTHOG_PERSONAL_API_KEY=personal, POSTHOG_PROJECT_API_KEY=project,
               SANDBOX_RUNNER_EGRESS_ALLOW=REBIND, SANDBOX_RUNNER_EGRESS_HOSTS=str(hosts_file(tmp_path)))
    code, result = run_cli(["exec", str(script), "--demo", "--json", "--timeout", "120"], env)

    assert result["network"] == "posthog", result.get("error")
    assert code == 0 and result["success"], (result.get("error"), result.get("stderr", "")[-2000:])
    found = result["data"]

    # Directly: an empty network namespace (no route, no name service, no host abstract sockets).
    assert all(v != "connected" and v != "resolved" for v in found["direct"].values()), found["direct"]
    assert listener.accepted == 0, "the script reached a listener on the host's loopback"
    assert abstract_socket.accepted == 0, "the script reached an abstract Unix socket of the host"

    # Through the proxy: each refused (403; CONNECT 405), and each refusal in the result's egress log.
    assert found["proxy"] == {
        "loopback listener": "403", "runner api": "403", "not allow-listed": "403", "raw ip": "403", "rebinding": "403",
        "allowed host, plain http on the https port": "403",
        "connect allowed name, other port": "405", "connect allowed name and port": "405",
    }
    for host, port in [("127.0.0.1", listener.port), ("127.0.0.1", runner_api), ("example.com", 443), ("93.184.216.34", 80),
                       (REBIND, 443)]:
        assert refused(result, host, port), f"no refusal of {host}:{port} in the egress log: {result['egress']}"
    rebinding = refused(result, REBIND, 443)[0]["reason"]
    assert "private address (10.20.30.40)" in rebinding or "loopback address" in rebinding, rebinding
    connects = [e for e in result["egress"] if not e["allowed"] and "CONNECT" in (e.get("reason") or "")]
    assert len(connects) == 2, result["egress"]

    # The driver's calls went through, and were logged with their bytes.
    assert found["events"] > 100_000 and found["project"] == 1 and found["flags"], found
    allowed = [e for e in result["egress"] if e["allowed"]]
    assert len(allowed) == 1 and allowed[0]["host"] == "127.0.0.1" and allowed[0]["requests"] >= 3
    assert allowed[0]["bytesIn"] > 1000 and allowed[0]["bytesOut"] > 50 and allowed[0].get("reason") is None

    # No personal key anywhere the script can look; the search itself works (it finds the
    # project key, which may travel, in the environment and in memory).
    assert found["traffic has requests"] and found["traffic bytes"] > 1000 and found["memory regions"] > 10
    secret = hashlib.sha256(personal.encode()).hexdigest()
    for where, digests in found["found"].items():
        assert secret not in digests, f"the personal API key is readable in the sandbox: {where}"
    assert {"environment", "/proc/self/environ", "memory"} <= set(found["project key seen"]), found["project key seen"]
    # Nothing was left for redaction (the second line of defence) to catch.
    assert "[REDACTED]" not in result["output"]
