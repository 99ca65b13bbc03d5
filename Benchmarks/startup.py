#!/usr/bin/env python3
"""What the runner costs on top of what it starts, measured in one run (issue 17).

  libraries     the shared libraries the binary needs at start (libcurl, libarchive, OpenSSL and
                libseccomp are loaded on first use instead)
  --version     `sandbox-runner --version` against a static Swift hello-world built here
                (Foundation imported, prints a URL; swiftc -O -static-stdlib): target <= 2x
  exec          `sandbox-runner exec` of a trivial script against bare bubblewrap with the run's
                exact options (seccomp filter, rlimits, uid; jail_overhead.Floor): target <= 10 ms
                over the floor, median of >= 20 interleaved runs
  serve         the same script through a warm `serve` (POST /v1/runs), one at a time: target
                <= 5 ms over the floor; then 50 at once against the CPU bound measured here (50
                bare bubblewrap + python runs, as many in parallel as there are CPUs): target
                >= 0.7 x its runs per second

`--baseline BINARY` measures an older binary in the same run (before/after). Exits 1 when a
target is missed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from jail_overhead import Floor, timed  # noqa: E402  (the same floor as the jail benchmark)

TITLE = "start-up: --version vs static hello-world; exec and serve vs bare bubblewrap"
ROOT = Path(__file__).resolve().parents[1]
LAZY = ("libcurl", "libarchive", "libssl", "libcrypto", "libseccomp")
TOKEN = "bench-token"
HELLO = 'import Foundation\nprint(URL(fileURLWithPath: "/tmp/hello").absoluteString)\n'


def needed(binary: str) -> list[str]:
    out = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True, check=True).stdout
    return [line.split("[", 1)[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]


def loaded_at_start(binary: str) -> int:
    """Shared objects the dynamic loader maps before main (ldd: NEEDED and theirs)."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    return sum(1 for line in out.splitlines() if line.strip() and "linux-vdso" not in line)


def build_hello(work: str) -> str:
    src = os.path.join(work, "main.swift")
    with open(src, "w") as f:
        f.write(HELLO)
    out = os.path.join(work, "hello")
    subprocess.run(["swiftc", "-O", "-static-stdlib", src, "-o", out], check=True, capture_output=True)
    return out


def median_interleaved(cases: dict, runs: int) -> dict[str, float]:
    for run in cases.values():  # warm caches
        run()
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(runs):
        for k, run in cases.items():
            samples[k].append(run())
    return {k: statistics.median(v) for k, v in samples.items()}


class Serve:
    def __init__(self, binary: str, concurrency: int, env: dict):
        env = dict(env, SANDBOX_RUNNER_TOKEN=TOKEN)
        self.proc = subprocess.Popen([binary, "serve", "--port", "0", "--max-concurrent", str(concurrency), "--queue", "100"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        self.url = self.proc.stdout.readline().split("listening on ", 1)[1].strip()

    def post(self, script: str) -> float:
        body = json.dumps({"script": script}).encode()
        start = time.perf_counter()
        req = urllib.request.Request(f"{self.url}/v1/runs", data=body,
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        doc = json.load(urllib.request.urlopen(req, timeout=120))
        elapsed = (time.perf_counter() - start) * 1000
        assert doc["success"] and doc["output"] == "ok\n", doc
        return elapsed

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


def throughput(fn, n: int, workers: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda _: fn(), range(n)))
    return n / (time.perf_counter() - start)


def floor_throughput(floor: Floor, n: int, workers: int) -> float:
    """Floors in parallel from separate processes (Floor places descriptors at fixed numbers)."""
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_floor_once, [floor] * workers))  # start the workers first
        start = time.perf_counter()
        list(pool.map(_floor_once, [floor] * n))
        return n / (time.perf_counter() - start)


def _floor_once(floor: Floor) -> float:
    return floor.run()


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def over_the_floor(med: dict[str, float], case: str, title: str, target_ms: float) -> bool:
    """Prints `case after` over the bubblewrap floor (and `case before`'s when measured) against
    its target; True when met."""
    over = med[f"{case} after"] - med["bwrap floor"]
    ok = over <= target_ms
    extra = f" (before {med[f'{case} before'] - med['bwrap floor']:+.1f} ms)" if f"{case} before" in med else ""
    print(f"  {title}: {over:+.1f} ms{extra}  target <= {target_ms:g} ms: {verdict(ok)}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=25)
    ap.add_argument("--binary", default=os.environ.get("SANDBOX_RUNNER_BIN", str(ROOT / ".build/release/sandbox-runner")))
    ap.add_argument("--baseline", help="an older sandbox-runner binary, measured alongside (before/after)")
    ap.add_argument("--concurrent", type=int, default=50)
    args = ap.parse_args()
    binary = args.binary
    if not os.path.exists(binary):
        print(f"build first: {binary} is missing (make release)", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("run as root: the floor drops to an unprivileged uid the way the runner does", file=sys.stderr)
        return 2
    binaries = {"after": binary} | ({"before": args.baseline} if args.baseline else {})
    env = dict(os.environ, SANDBOX_RUNNER_HOME=os.environ.get("SANDBOX_RUNNER_HOME", str(ROOT)))
    failed = False
    work = tempfile.mkdtemp(prefix="startup-bench-")
    os.chmod(work, 0o755)
    try:
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; median of {args.runs} interleaved runs each")

        # Libraries mapped at start.
        for label, b in binaries.items():
            lazy = [n for n in needed(b) if n.startswith(LAZY)]
            print(f"  libraries at start ({label}): {loaded_at_start(b)} shared objects; of the lazily loaded ones needed: "
                  f"{', '.join(lazy) or 'none'}")
        ok = not [n for n in needed(binary) if n.startswith(LAZY)]
        failed |= not ok
        print(f"  none of {', '.join(LAZY)} needed at start: {verdict(ok)}")

        # --version against a static hello-world.
        hello = build_hello(work)
        cases = {"hello": lambda: timed([hello], cwd=work)}
        for label, b in binaries.items():
            cases[f"--version {label}"] = lambda b=b: timed([b, "--version"], cwd=work, env=env)
        med = median_interleaved(cases, max(args.runs, 40))
        for k, v in med.items():
            print(f"  {k:18s} {v:7.2f} ms")
        ratio = med["--version after"] / med["hello"]
        ok = ratio <= 2
        failed |= not ok
        extra = f" (before {med['--version before'] / med['hello']:.2f}x)" if args.baseline else ""
        print(f"  --version / hello-world: {ratio:.2f}x{extra}  target <= 2x: {verdict(ok)}")

        # exec against the floor.
        script = os.path.join(work, "script.py")
        with open(script, "w") as f:
            f.write("print('ok')\n")
        plan = json.loads(subprocess.check_output([binary, "doctor", "--print-bubblewrap-arguments", script], env=env))
        floor = Floor(plan, seccomp=True)
        cases = {"bwrap floor": floor.run}
        for label, b in binaries.items():
            cases[f"exec {label}"] = lambda b=b: timed([b, "exec", script, "--json"], cwd=work, env=env)
        med = median_interleaved(cases, args.runs)
        for k, v in med.items():
            print(f"  {k:18s} {v:7.2f} ms")
        failed |= not over_the_floor(med, "exec", "exec over the floor", 10)

        # serve: sequential, then concurrent.
        servers = {label: Serve(b, 8, env) for label, b in binaries.items()}
        try:
            source = "print('ok')\n"
            cases = {"bwrap floor": floor.run} | {f"serve {label}": (lambda s=s: s.post(source)) for label, s in servers.items()}
            med = median_interleaved(cases, args.runs)
            for k, v in med.items():
                print(f"  {k:18s} {v:7.2f} ms")
            failed |= not over_the_floor(med, "serve", "serve (one at a time) over the floor", 5)

            n = args.concurrent
            # The bound: the better of as many floors in parallel as CPUs and all n at once.
            bound = max(floor_throughput(floor, n, os.cpu_count() or 1), floor_throughput(floor, n, n))
            rates = {label: throughput(lambda s=s: s.post(source), n, n) for label, s in servers.items()}
            print(f"  {n} at once: CPU bound (bare bwrap + python in parallel) {bound:6.1f} runs/s")
            for label, r in rates.items():
                print(f"  {n} at once: serve {label:6s} {r:6.1f} runs/s  ({r / bound:.2f} x the bound)")
            ok = rates["after"] >= 0.7 * bound
            failed |= not ok
            print(f"  serve {n} at once / CPU bound: {rates['after'] / bound:.2f}x  target >= 0.7x: {verdict(ok)}")
        finally:
            for s in servers.values():
                s.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
