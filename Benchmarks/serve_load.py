#!/usr/bin/env python3
"""`serve` under 50 concurrent POST /v1/runs of a trivial template on the local backend, against
running the CLI 50 times in parallel, in one run: runs per second, p50 and p99 latency."""
from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TITLE = "serve: 50 concurrent POST /v1/runs vs 50 CLI runs in parallel"
ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "Tests" / "SandboxRunnerTests" / "Fixtures" / "templates"
N = int(os.environ.get("BENCH_RUNS", "50"))
TOKEN = "bench-token"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def report(label: str, latencies: list[float], wall: float) -> None:
    print(f"  {label:8s} {N / wall:6.1f} runs/s   p50 {statistics.median(latencies) * 1000:7.1f} ms   "
          f"p99 {pct(latencies, 0.99) * 1000:7.1f} ms   wall {wall:5.2f} s")


def main() -> int:
    binary = os.environ.get("SANDBOX_RUNNER_BIN", str(ROOT / ".build/release/sandbox-runner"))
    env = dict(os.environ, SANDBOX_RUNNER_TOKEN=TOKEN)
    server = subprocess.Popen([binary, "serve", "--port", "0", "--templates-dir", str(FIXTURES), "--max-concurrent", "8",
                               "--queue", str(N)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    url = server.stdout.readline().split("listening on ", 1)[1].strip()
    body = json.dumps({"template": "echo_vars", "variables": {"who": "bench"}}).encode()

    def post(_: int) -> float:
        start = time.perf_counter()
        req = urllib.request.Request(f"{url}/v1/runs", data=body, headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        doc = json.load(urllib.request.urlopen(req, timeout=120))
        assert doc["success"], doc
        return time.perf_counter() - start

    def cli(_: int) -> float:
        start = time.perf_counter()
        out = subprocess.run([binary, "run", "echo_vars", "--templates-dir", str(FIXTURES), "--var", "who=bench", "--json"],
                             capture_output=True, text=True)
        assert json.loads(out.stdout)["success"], out.stdout
        return time.perf_counter() - start

    try:
        post(0)  # warm
        print(f"{N} runs of a trivial template on the local backend, all started at once:")
        for label, fn in (("serve", post), ("cli", cli)):
            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=N) as pool:
                latencies = list(pool.map(fn, range(N)))
            report(label, latencies, time.perf_counter() - start)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
