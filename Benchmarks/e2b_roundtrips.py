#!/usr/bin/env python3
"""E2B round trips and wall time per run, measured in one run against e2b-local adding 50 ms
to every request:
  (a) our backend, cold  : sandbox-runner exec --backend e2b            (create, upload, start, kill)
  (b) our backend, warm  : sandbox-runner exec --backend e2b --warm-pool 1 --repeat N  (runs 2..N)
  (c) the official e2b SDK doing the prototype's flow (seeds): create, write three driver files,
      run the script, kill.
Targets: cold <= 4 round trips on the critical path, warm <= 2, cold wall time below the SDK flow's.
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "e2b_local_bench_key"
LATENCY_MS = 50


def stats(url: str) -> dict:
    return json.load(urllib.request.urlopen(url + "/_local/stats"))


def total_requests(url: str) -> int:
    return int(stats(url)["total"])


def main() -> int:
    binary = os.environ.get("SANDBOX_RUNNER_BIN", os.path.join(ROOT, ".build/release/sandbox-runner"))
    if not os.path.exists(binary):
        binary = os.path.join(ROOT, ".build/debug/sandbox-runner")
    runs = int(os.environ.get("BENCH_RUNS", "5"))
    env = dict(os.environ, E2B_API_KEY=KEY)
    server = subprocess.Popen([binary, "e2b-local", "--port", "0", "--fault", f"latency:count=*:ms={LATENCY_MS}"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    try:
        line = server.stdout.readline()
        url = line.split("listening on ", 1)[1].strip()
        env.update(E2B_API_URL=url, E2B_SANDBOX_URL=url)
        work = tempfile.mkdtemp(prefix="e2b-bench-")
        script = os.path.join(work, "script.py")
        with open(script, "w") as f:
            f.write("print('ok')\n")

        # (a) cold: a fresh process per run, nothing reused.
        cold_ms, cold_trips = [], []
        for _ in range(runs):
            before = total_requests(url)
            start = time.perf_counter()
            out = subprocess.run([binary, "exec", script, "--backend", "e2b", "--json"], env=env, capture_output=True, text=True)
            cold_ms.append((time.perf_counter() - start) * 1000)
            cold_trips.append(total_requests(url) - before)
            assert json.loads(out.stdout)["success"], out.stdout
        # (b) warm: one process, a pool of one; the first run is cold, the rest reuse it.
        before = total_requests(url)
        out = subprocess.run([binary, "exec", script, "--backend", "e2b", "--warm-pool", "1", "--repeat", str(runs + 1)],
                             env=env, capture_output=True, text=True)
        results = [json.loads(l) for l in out.stdout.splitlines() if l.strip()]
        assert all(r["success"] for r in results), out.stdout
        warm_total = total_requests(url) - before
        # cold first run made create+upload+start; the pool's kill comes at the end (+1).
        warm_trips = (warm_total - 4) / runs
        warm_ms = [r["durationMs"] for r in results[1:]]
        # (c) the official SDK, the prototype's flow.
        sdk_ms, sdk_trips = [], []
        driver_files = [os.path.join(ROOT, "sandbox", "posthog_driver", n) for n in sorted(os.listdir(os.path.join(ROOT, "sandbox", "posthog_driver")))
                        if n.endswith(".py")][:3]
        os.environ.update(E2B_API_URL=url, E2B_SANDBOX_URL=url, E2B_API_KEY=KEY)
        from e2b import Sandbox  # noqa: E402 - configured by the environment above
        for _ in range(runs):
            before = total_requests(url)
            start = time.perf_counter()
            sbx = Sandbox.create()
            try:
                for path in driver_files:
                    with open(path, "rb") as f:
                        sbx.files.write(f"/home/user/posthog_driver/{os.path.basename(path)}", f.read())
                sbx.files.write("/home/user/script.py", b"print('ok')\n")
                result = sbx.commands.run("python3 /home/user/script.py")
                assert result.stdout.strip() == "ok"
            finally:
                sbx.kill()
            sdk_ms.append((time.perf_counter() - start) * 1000)
            sdk_trips.append(total_requests(url) - before)

        med = statistics.median
        print(f"e2b-local adding {LATENCY_MS} ms to every request; {runs} runs each (median):")
        print(f"  (a) ours, cold : {med(cold_trips):4.1f} round trips  {med(cold_ms):7.1f} ms per run (whole CLI process)"
              f"   target <= 4: {'PASS' if med(cold_trips) <= 4 else 'FAIL'}")
        print(f"  (b) ours, warm : {warm_trips:4.1f} round trips  {med(warm_ms):7.1f} ms per run (in-process)"
              f"   target <= 2: {'PASS' if warm_trips <= 2 else 'FAIL'}")
        print(f"  (c) e2b SDK    : {med(sdk_trips):4.1f} round trips  {med(sdk_ms):7.1f} ms per run")
        print(f"  cold vs SDK wall time: {med(cold_ms) / med(sdk_ms):.2f}x   target < 1: {'PASS' if med(cold_ms) < med(sdk_ms) else 'FAIL'}")
        left = stats(url)["live_sandboxes"]
        print(f"  sandboxes left alive: {left}")
    finally:
        server.terminate()
        server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
