"""The network policy on every surface: `doctor` and results report it, `host` needs the
operator's explicit flag (and `serve`/`mcp` an extra one), and a template that needs PostHog is
refused before any sandbox starts when its settings are unusable."""
from __future__ import annotations

import json
import os
import subprocess

from egress_support import binary, fresh_keys, proxy_env


def run(*args: str, env: dict[str, str] | None = None, timeout: int = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary(), *args], capture_output=True, text=True, env=env or proxy_env(), timeout=timeout)


def test_doctor_reports_the_policy_and_what_it_would_allow() -> None:
    personal, _ = fresh_keys()
    out = run("doctor", "--json", env=proxy_env(POSTHOG_API_URL="eu", POSTHOG_PERSONAL_API_KEY=personal,
                                                SANDBOX_RUNNER_EGRESS_ALLOW="extra.example:8443"))
    doc = json.loads(out.stdout)
    assert doc["network"] == "posthog"
    check = next(c for c in doc["checks"] if c["name"] == "network")
    assert check["ok"] and "https://eu.posthog.com:443, https://eu.i.posthog.com:443, https://extra.example:8443" in check["detail"]
    assert "never enters the sandbox" in check["detail"] and personal not in out.stdout
    bad = json.loads(run("doctor", "--json", env=proxy_env(POSTHOG_API_URL="ftp://nowhere")).stdout)
    check = next(c for c in bad["checks"] if c["name"] == "network")
    assert not check["ok"] and "POSTHOG_API_URL" in check["detail"]


def test_serve_and_mcp_refuse_host_network_without_the_extra_flag() -> None:
    for command in (["serve", "--no-auth", "--port", "0"], ["mcp"]):
        out = run(*command, "--network", "host")
        assert out.returncode == 64, (command, out.stdout, out.stderr)
        assert "--allow-host-network" in out.stderr
    proc = subprocess.Popen([binary(), "serve", "--no-auth", "--port", "0", "--network", "host", "--allow-host-network"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=proxy_env())
    try:
        assert proc.stdout is not None and "listening on" in proc.stdout.readline()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_template_that_needs_posthog_is_refused_before_any_sandbox_without_its_key() -> None:
    out = run("run", "top_events", "--json", env=proxy_env(POSTHOG_PROJECT_ID="1", POSTHOG_API_URL="http://127.0.0.1:9"))
    doc = json.loads(out.stdout)
    assert out.returncode == 64 and doc["errorKind"] == "badInput" and "POSTHOG_PERSONAL_API_KEY" in doc["error"], doc
    assert doc["exitCode"] == -1 and doc.get("bundleSha256") is None, "a sandbox was started"


def test_results_say_which_policy_ran() -> None:
    script = "print('hi')\n"
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"policy-{os.getpid()}.py")
    with open(path, "w") as f:
        f.write(script)
    try:
        assert json.loads(run("exec", path, "--json").stdout)["network"] == "none"
        personal, _ = fresh_keys()
        env = proxy_env(POSTHOG_API_URL="http://127.0.0.1:9", POSTHOG_PERSONAL_API_KEY=personal)
        doc = json.loads(run("exec", path, "--json", "--network", "posthog", env=env).stdout)
        assert doc["network"] == "posthog" and doc["egress"] == [] and doc["success"]
        assert json.loads(run("exec", path, "--json", "--network", "host", env=env).stdout)["network"] == "host"
    finally:
        os.unlink(path)
