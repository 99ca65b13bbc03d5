#!/usr/bin/env python3
"""What the `posthog` network policy's egress proxy costs, measured in one run:

1. Per-request latency it adds on a kept-alive connection: the driver's queries to posthog-local
   directly vs through `sandbox-runner egress-proxy` (the proxy every `posthog` run gets), the
   two interleaved query by query, median of BENCH_QUERIES (>= 200) each. Target: <= 1 ms.
2. The 14-template `smoke --demo` under `--network posthog` (the default) vs `--network host`,
   rounds interleaved, median wall time of BENCH_RUNS rounds. Target: no more than 5 % slower.
Exits 1 when a target is missed."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

TITLE = "egress proxy: added latency per request, and smoke under posthog vs host"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "sandbox"))
TARGET_ADDED_MS = 1.0
TARGET_SMOKE_RATIO = 1.05
PERSONAL, PROJECT = "phx_bench_personal_key_0123456789", "phc_bench_project_key_0123456789"


def start(args: list[str], env: dict[str, str], marker: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert proc.stdout is not None
    for _ in range(2000):
        line = proc.stdout.readline()
        if marker in line:
            return proc, line.split(marker, 1)[1].strip()
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"FAIL: {args[0]} did not start")


def latency(binary: str, queries: int) -> tuple[float, float]:
    from posthog_driver import PostHogClient

    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTHOG_", "SANDBOX_RUNNER_"))}
    env.update(POSTHOG_PERSONAL_API_KEY=PERSONAL, POSTHOG_PROJECT_API_KEY=PROJECT, POSTHOG_PROJECT_ID="1", PYTHONUNBUFFERED="1")
    phl, url = start([os.path.join(ROOT, ".venv/bin/python"), os.path.join(ROOT, "tools/posthog-local/server.py"), "--host", "127.0.0.1",
                      "--port", "0", "--no-limits"], env, "listening on ")
    url = url[url.index("http://"):]
    proxy, socket_path = start([binary, "egress-proxy"], {**env, "POSTHOG_API_URL": url}, "egress-proxy listening on ")
    try:
        direct = PostHogClient(api_url=url, personal_api_key=PERSONAL, project_api_key=PROJECT, project_id=1, max_retries=0)
        os.environ.update(POSTHOG_EGRESS_SOCKET=socket_path, POSTHOG_AUTH="egress")
        try:
            proxied = PostHogClient(api_url=url, project_api_key=PROJECT, project_id=1, max_retries=0)
        finally:
            del os.environ["POSTHOG_EGRESS_SOCKET"], os.environ["POSTHOG_AUTH"]
        times: dict[str, list[float]] = {"direct": [], "proxy": []}
        for client in (direct, proxied):  # warm both connections and posthog-local's caches
            for _ in range(20):
                client.query("select 1")
        for _ in range(queries):
            for name, client in (("direct", direct), ("proxy", proxied)):
                t = time.perf_counter()
                client.query("select 1")
                times[name].append((time.perf_counter() - t) * 1000)
        direct.close()
        proxied.close()
        return statistics.median(times["direct"]), statistics.median(times["proxy"])
    finally:
        proxy.communicate(input="", timeout=60)
        phl.terminate()
        phl.wait(timeout=30)


def smoke(binary: str, network: str) -> tuple[float, float]:
    t = time.perf_counter()
    out = subprocess.run([binary, "smoke", "--demo", "--json", "--network", network], capture_output=True, text=True)
    wall = time.perf_counter() - t
    doc = json.loads(out.stdout)
    if doc["failed"]:
        raise SystemExit(f"FAIL: {doc['failed']} template(s) failed under --network {network}: a benchmark of failing runs measures nothing")
    return wall, sum(r["durationMs"] for r in doc["results"]) / 1000


def main() -> int:
    binary = os.environ.get("SANDBOX_RUNNER_BIN", os.path.join(ROOT, ".build/release/sandbox-runner"))
    queries = max(200, int(os.environ.get("BENCH_QUERIES", "300")))
    rounds = int(os.environ.get("BENCH_RUNS", "9"))
    ok = True

    d, p = latency(binary, queries)
    added = p - d
    passed = added <= TARGET_ADDED_MS
    ok &= passed
    print(f"driver -> posthog-local, kept-alive, median of {queries} queries each (interleaved):")
    print(f"  direct {d:6.2f} ms   through the egress proxy {p:6.2f} ms   added {added:+.2f} ms   "
          f"target <= {TARGET_ADDED_MS} ms: {'PASS' if passed else 'FAIL'}")

    walls: dict[str, list[float]] = {"host": [], "posthog": []}
    sums: dict[str, list[float]] = {"host": [], "posthog": []}
    smoke(binary, "posthog")  # the dataset and caches warm, outside the measure
    for _ in range(rounds):
        for network in ("host", "posthog"):
            wall, total = smoke(binary, network)
            walls[network].append(wall)
            sums[network].append(total)
    wh, wp = statistics.median(walls["host"]), statistics.median(walls["posthog"])
    ratio = wp / wh
    passed = ratio <= TARGET_SMOKE_RATIO
    ok &= passed
    print(f"smoke --demo (14 templates), median of {rounds} rounds (interleaved):")
    print(f"  --network host {wh:6.2f} s   --network posthog {wp:6.2f} s   ratio {ratio:.3f}   "
          f"target <= {TARGET_SMOKE_RATIO}: {'PASS' if passed else 'FAIL'}")
    print(f"  sum of run durations: host {statistics.median(sums['host']):6.2f} s, posthog {statistics.median(sums['posthog']):6.2f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
