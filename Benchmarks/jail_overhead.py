#!/usr/bin/env python3
"""Runner overhead over the bare floor, measured in one run.

Times, over >= 20 runs each (median), a trivial script run three ways:
  plain   python3 script.py
  bwrap   bwrap <the runner's own bind set> python3 script.py
  runner  sandbox-runner exec script.py   (validate, bundle, extract, limits, jail, result)
and the runner's peak RSS while a script prints 1 GiB.
Target: runner - bwrap <= 15 ms median; runner peak RSS <= 64 MiB during the flood.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(argv: list[str], cwd: str | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return (time.perf_counter() - start) * 1000


def peak_rss_kib(argv: list[str]) -> tuple[int, float, dict]:
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        out.seek(0)
        result = json.loads(out.read())
    return usage.ru_maxrss, time.perf_counter() - start, result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=25)
    ap.add_argument("--binary", default=os.path.join(ROOT, ".build/release/sandbox-runner"))
    args = ap.parse_args()
    binary = args.binary
    if not os.path.exists(binary):
        print(f"build first: {binary} is missing (make release)", file=sys.stderr)
        return 2

    work = tempfile.mkdtemp(prefix="jail-bench-")
    try:
        script = os.path.join(work, "script.py")
        with open(script, "w") as f:
            f.write("print('ok')\n")
        flood = os.path.join(work, "flood.py")
        with open(flood, "w") as f:
            f.write("import sys\nb = b'y' * 65536\nfor _ in range(16384):\n    sys.stdout.buffer.write(b)\n")
        bwrap_args = json.loads(subprocess.check_output([binary, "doctor", "--print-bubblewrap-arguments", work]))
        floor = ["/usr/bin/bwrap", *bwrap_args, "/usr/bin/python3", "-u", "-B", "-s", "script.py"]
        plain = ["/usr/bin/python3", "-u", "-B", "-s", script]
        runner = [binary, "exec", script, "--json"]

        for argv in (plain, floor, runner):  # warm caches
            timed(argv, cwd=work)
        samples: dict[str, list[float]] = {"plain": [], "bwrap": [], "runner": []}
        for _ in range(args.runs):  # interleaved so drift hits all three alike
            samples["plain"].append(timed(plain, cwd=work))
            samples["bwrap"].append(timed(floor, cwd=work))
            samples["runner"].append(timed(runner, cwd=work))
        med = {k: statistics.median(v) for k, v in samples.items()}
        overhead = med["runner"] - med["bwrap"]
        print(f"trivial script, median of {args.runs} runs each:")
        for k in ("plain", "bwrap", "runner"):
            print(f"  {k:7s} {med[k]:7.1f} ms")
        print(f"  runner over bare bwrap: {overhead:+.1f} ms  ({med['runner'] / med['bwrap']:.2f}x)  target <= 15 ms: "
              f"{'PASS' if overhead <= 15 else 'FAIL'}")
        print(f"  bwrap over plain python: {med['bwrap'] - med['plain']:+.1f} ms  ({med['bwrap'] / med['plain']:.2f}x)")

        rss, secs, result = peak_rss_kib([binary, "exec", flood, "--json", "--timeout", "120"])
        if not (result["success"] and result["truncated"]):
            print(f"  the flood run did not complete: {result['error']}", file=sys.stderr)
            return 1
        print(f"1 GiB of output: runner peak RSS {rss / 1024:.1f} MiB in {secs:.1f} s (kept {len(result['output'])} bytes, "
              f"truncated)  target <= 64 MiB: {'PASS' if rss <= 64 * 1024 else 'FAIL'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
