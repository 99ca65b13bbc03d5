#!/usr/bin/env python3
"""E2B round trips and wall time per run, measured in one run against e2b-local adding 50 ms to
every request (a network round trip), each flow a CLI process of its own:
  (a) ours, cold : `sandbox-runner exec --backend e2b`: create, then one Start carrying the bundle;
                   the kill after the result is printed
  (b) ours, warm : `sandbox-runner exec --backend e2b --warm-pool 1 --repeat N+1` (runs 2..N+1)
  (c) the official e2b SDK as its docs recommend, in a Python process: Sandbox.create, one
      files.write_files batch (the same files our bundle holds), commands.run, kill
Targets: cold = 2 round trips before the result, warm = 1, the kill after the result (not before
it), and our cold result sooner than the SDK flow's. Exits 1 when one is missed.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

TITLE = "E2B: round trips before the result, ours cold/warm vs the official SDK (e2b-local, +50 ms per request)"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "e2b_local_bench_key"
LATENCY_MS = 50

SDK_FLOW = r"""
import json, os, sys, time
from e2b import Sandbox
root, script = sys.argv[1], sys.argv[2]
files = [{"path": "/home/user/job/run.py", "data": open(os.path.join(root, "sandbox", "run.py"), "rb").read()},
         {"path": "/home/user/job/template.py", "data": open(script, "rb").read()},
         {"path": "/home/user/job/run.json", "data": json.dumps({"template": None, "variables": {}}).encode()}]
driver = os.path.join(root, "sandbox", "posthog_driver")
files += [{"path": f"/home/user/job/posthog_driver/{n}", "data": open(os.path.join(driver, n), "rb").read()}
          for n in sorted(os.listdir(driver)) if n.endswith(".py")]
start = time.perf_counter()
sbx = Sandbox.create()
try:
    sbx.files.write_files(files)
    result = sbx.commands.run("cd /home/user/job && python3 -u -B -s run.py")
    flow_ms = (time.perf_counter() - start) * 1000
    sys.stdout.write(json.dumps({"success": result.exit_code == 0, "output": result.stdout, "flowMs": flow_ms}) + "\n")
    sys.stdout.flush()
finally:
    sbx.kill()
"""


def stats(url: str) -> dict:
    return json.load(urllib.request.urlopen(url + "/_local/stats"))


def routes(url: str) -> dict:
    return stats(url)["requests"]


def delta(after: dict, before: dict, route: str) -> int:
    return after.get(route, 0) - before.get(route, 0)


def timed(cmd: list[str], env: dict) -> tuple[float, float, list[dict]]:
    """Runs a CLI process: milliseconds to its first result line, to its exit, and its results."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    result_ms = (time.perf_counter() - start) * 1000
    rest = proc.stdout.read()
    proc.wait()
    exit_ms = (time.perf_counter() - start) * 1000
    lines = [l for l in (first + rest).splitlines() if l.strip()]
    return result_ms, exit_ms, [json.loads(l) for l in lines]


def main() -> int:
    binary = os.environ.get("SANDBOX_RUNNER_BIN", os.path.join(ROOT, ".build/release/sandbox-runner"))
    if not os.path.exists(binary):
        binary = os.path.join(ROOT, ".build/debug/sandbox-runner")
    runs = int(os.environ.get("BENCH_RUNS", "7"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2B_")}
    env["E2B_API_KEY"] = KEY
    server = subprocess.Popen([binary, "e2b-local", "--port", "0", "--strict", "--fault", f"latency:count=*:ms={LATENCY_MS}"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    misses: list[str] = []
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split("listening on ", 1)[1].strip()
        env.update(E2B_API_URL=url, E2B_SANDBOX_URL=url)
        work = tempfile.mkdtemp(prefix="e2b-bench-")
        script = os.path.join(work, "script.py")
        with open(script, "w") as f:
            f.write("print('ok')\n")
        ours = [binary, "exec", script, "--backend", "e2b", "--json"]

        # (a) cold: a fresh process per run, nothing reused.
        cold_result, cold_exit, cold_trips, cold_after, cold_sandbox = [], [], [], [], []
        for _ in range(runs):
            before = routes(url)
            result_ms, exit_ms, results = timed(ours, env)
            after = routes(url)
            assert results and results[0]["success"], results
            cold_result.append(result_ms)
            cold_exit.append(exit_ms)
            cold_sandbox.append(results[0]["timings"]["sandboxMs"])
            cold_trips.append(delta(after, before, "POST /v2/sandboxes") + delta(after, before, "POST /process.Process/Start")
                              + delta(after, before, "POST /files"))
            cold_after.append(delta(after, before, "DELETE /sandboxes/{id}"))
        # (b) warm: one process, a pool of one; the first run is cold, the rest reuse it.
        before = routes(url)
        _, _, results = timed(ours + ["--warm-pool", "1", "--repeat", str(runs + 1)], env)
        after = routes(url)
        assert len(results) == runs + 1 and all(r["success"] for r in results), results
        creates = delta(after, before, "POST /v2/sandboxes")
        warm_trips = (delta(after, before, "POST /process.Process/Start") + delta(after, before, "POST /files")
                      + creates - 2) / runs  # minus the first run's create and Start
        warm_ms = [r["durationMs"] for r in results[1:]]
        # (c) the official SDK, a Python process per run.
        sdk_result, sdk_exit, sdk_trips, sdk_flow = [], [], [], []
        sdk = [os.path.join(ROOT, ".venv/bin/python"), "-c", SDK_FLOW, ROOT, script]
        for _ in range(runs):
            before = routes(url)
            result_ms, exit_ms, results = timed(sdk, env)
            after = routes(url)
            assert results and results[0]["success"] and results[0]["output"] == "ok\n", results
            sdk_result.append(result_ms)
            sdk_exit.append(exit_ms)
            sdk_flow.append(results[0]["flowMs"])
            sdk_trips.append(sum(after.values()) - sum(before.values()) - delta(after, before, "DELETE /sandboxes/{id}"))
        left = stats(url)["live_sandboxes"]
        key_at_envd = stats(url)["envd_calls_with_api_key"]

        med = statistics.median
        print(f"e2b-local adding {LATENCY_MS} ms to every request; {runs} runs each, medians; each flow a CLI process:")
        print(f"  (a) ours, cold : {med(cold_trips):.0f} round trips before the result, kill after it "
              f"({med(cold_after):.0f});  result at {med(cold_result):6.0f} ms, process exit at {med(cold_exit):6.0f} ms")
        print(f"  (b) ours, warm : {warm_trips:.0f} round trip  before the result ({creates} create for {runs + 1} runs); "
              f"{med(warm_ms):6.0f} ms per run (in-process)")
        print(f"  (c) e2b SDK    : {med(sdk_trips):.0f} round trips before the result (create, write_files, run), kill after it; "
              f"result at {med(sdk_result):6.0f} ms, process exit at {med(sdk_exit):6.0f} ms")
        print(f"  without process start-up: ours {med(cold_sandbox):.0f} ms in the sandbox backend, "
              f"the SDK's create→result {med(sdk_flow):.0f} ms (after importing e2b)")
        print(f"  cold result vs the SDK's: {med(cold_result) / med(sdk_result):.2f}x   "
              f"sandboxes left alive: {left}   envd calls carrying the API key: {key_at_envd}")
        checks = [
            ("cold = 2 round trips before the result", med(cold_trips) == 2),
            ("warm = 1 round trip before the result", warm_trips == 1),
            ("the kill comes after the result (cold exit later than the result by a round trip)",
             med(cold_exit) - med(cold_result) >= LATENCY_MS * 0.8 and med(cold_after) == 1),
            ("cold result sooner than the SDK flow's", med(cold_result) < med(sdk_result)),
            ("no sandbox left alive", left == 0),
            ("no envd call carried the API key", key_at_envd == 0),
        ]
        for name, ok in checks:
            print(f"  target: {name}: {'PASS' if ok else 'MISS'}")
            if not ok:
                misses.append(name)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
