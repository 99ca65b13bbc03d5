#!/usr/bin/env python3
"""`sandbox-runner smoke --demo` over every template with --jobs 1 vs --jobs 4, in one run:
wall time of each (median of BENCH_RUNS rounds), their ratio, and per-template median seconds."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

TITLE = "smoke --demo over the templates: --jobs 1 vs --jobs 4"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Four at a time on 2 cores must beat one at a time clearly (the runs wait on I/O and start-up).
TARGET_SPEEDUP = 1.2


def smoke(binary: str, jobs: int) -> tuple[float, dict[str, float]]:
    start = time.perf_counter()
    out = subprocess.run([binary, "smoke", "--demo", "--jobs", str(jobs), "--json"], capture_output=True, text=True)
    wall = time.perf_counter() - start
    doc = json.loads(out.stdout)
    if doc["failed"]:
        raise SystemExit(f"FAIL: {doc['failed']} template(s) failed with --jobs {jobs}: a benchmark of failing runs measures nothing")
    return wall, {r["template"]: r["durationMs"] / 1000 for r in doc["results"]}


def main() -> int:
    binary = os.environ.get("SANDBOX_RUNNER_BIN", os.path.join(ROOT, ".build/release/sandbox-runner"))
    rounds = int(os.environ.get("BENCH_RUNS", "3"))
    walls: dict[int, list[float]] = {1: [], 4: []}
    per: dict[int, dict[str, list[float]]] = {1: {}, 4: {}}
    for _ in range(rounds):
        for jobs in (1, 4):  # interleaved, so drift hits both alike
            wall, times = smoke(binary, jobs)
            walls[jobs].append(wall)
            for name, secs in times.items():
                per[jobs].setdefault(name, []).append(secs)
    w1, w4 = statistics.median(walls[1]), statistics.median(walls[4])
    print(f"smoke --demo over {len(per[1])} templates, median of {rounds} rounds:")
    ok = w1 / w4 >= TARGET_SPEEDUP
    print(f"  --jobs 1: {w1:6.2f} s   --jobs 4: {w4:6.2f} s   speed-up {w1 / w4:.2f}x (2 cores here)   "
          f"target >= {TARGET_SPEEDUP}x: {'PASS' if ok else 'FAIL'}")
    print(f"  {'template':24s} {'jobs 1':>8s} {'jobs 4':>8s}")
    for name in sorted(per[1]):
        print(f"  {name:24s} {statistics.median(per[1][name]):7.2f}s {statistics.median(per[4].get(name, [0])):7.2f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
