#!/usr/bin/env python3
"""The driver's export_events over posthog-local: 100k vs 1M events, rate and peak memory.

Starts posthog-local with its bulk dataset (1,000,000 extra events spread over 30 days), then runs
`export_events` over the first tenth of that window (100,000 events) and over all of it, each in a
fresh /usr/bin/python3 (the sandbox's interpreter, stdlib only), and prints events per second and
peak RSS for each (VmHWM: ru_maxrss on Linux carries the parent's size across exec), and the ratio
peak(1M) / peak(100k). Target: ≤ 1.2×, i.e. memory
stays flat however many events go through (keyset pages, rows yielded as they come).

    .venv/bin/python Benchmarks/driver_export.py [--events 1000000] [--page-size 10000]

`--worker URL START END PAGE_SIZE` is the measured process itself (also used by
Tests/driver/test_driver_export.py): it exports, checks the order, prints one JSON line.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SANDBOX = ROOT / "sandbox"
SANDBOX_PYTHON = "/usr/bin/python3"
TARGET_RATIO = 1.2


def peak_rss_kib() -> int:
    """This process's peak RSS in KiB: VmHWM, else ru_maxrss.

    On Linux ru_maxrss survives exec: a process started by a big parent (pytest, this script's
    main process) reports at least the parent's size. VmHWM belongs to the exec'd image alone."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def worker(url: str, start: str, end: str, page_size: int) -> None:
    """Exports [start, end) and prints {rows, seconds, rate, maxrss_kib, baseline_kib, ordered}."""
    sys.path.insert(0, str(SANDBOX))
    from posthog_driver import PostHogClient

    with PostHogClient(api_url=url) as client:
        client.get_project_info()  # connect and load the HTTP machinery before the baseline
        baseline = peak_rss_kib()
        rows, previous, ordered = 0, None, True
        started = time.perf_counter()
        for row in client.export_events(start, end, page_size=page_size):
            key = (row["timestamp"], row["uuid"])
            if previous is not None and key <= previous:
                ordered = False
            previous = key
            rows += 1
        seconds = time.perf_counter() - started
    peak = peak_rss_kib()
    print(json.dumps({"rows": rows, "seconds": round(seconds, 3), "rate": round(rows / seconds) if seconds else None,
                      "maxrss_kib": peak, "baseline_kib": baseline, "ordered": ordered}))


def measure(url: str, start: str, end: str, page_size: int, env: dict[str, str] | None = None,
            python: str = SANDBOX_PYTHON) -> dict:
    import subprocess

    result = subprocess.run([python, str(Path(__file__).resolve()), "--worker", url, start, end, str(page_size)],
                            capture_output=True, text=True, timeout=1800, env={**os.environ, **(env or {})})
    if result.returncode != 0:
        raise RuntimeError(f"export worker failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def tenth_of(start: str, end: str) -> str:
    """The end of the first tenth of [start, end) (ISO-8601 UTC)."""
    import datetime as dt

    a = dt.datetime.fromisoformat(start.replace("Z", "+00:00"))
    b = dt.datetime.fromisoformat(end.replace("Z", "+00:00"))
    return (a + (b - a) / 10).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def import_time_ms() -> float:
    """Cumulative `import posthog_driver` time in a fresh interpreter (best of 5)."""
    import subprocess
    import tempfile

    best = float("inf")
    for _ in range(5):
        with tempfile.TemporaryDirectory() as empty:  # no cached bytecode: compiled as in a fresh sandbox
            result = subprocess.run([SANDBOX_PYTHON, "-X", "importtime", "-c", "import posthog_driver"],
                                    cwd=SANDBOX, capture_output=True, text=True, timeout=60,
                                    env={"PATH": "/usr/bin:/bin", "PYTHONPYCACHEPREFIX": empty})
        line = [ln for ln in result.stderr.splitlines() if ln.rstrip().endswith("| posthog_driver")][-1]
        best = min(best, int(line.split("|")[1]) / 1000)
    return best


def main() -> int:
    if sys.argv[1:2] == ["--worker"] and len(sys.argv) == 6:  # lean: no argparse in the measured process
        url, start, end, page = sys.argv[2:]
        worker(url, start, end, int(page))
        return 0
    import argparse
    import urllib.request

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _posthog_local import posthog_local

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="bulk events in posthog-local")
    parser.add_argument("--page-size", type=int, default=10_000, help="export_events page size")
    args = parser.parse_args()

    started = time.monotonic()
    # --no-limits: this measures the driver's memory, not PostHog's 120 queries/hour (the driver
    # waits those out; Tests/driver/test_driver_limits.py covers that under a compressed budget)
    with posthog_local("--bulk-events", str(args.events), "--no-limits") as url:
        print(f"posthog-local with {args.events:,} bulk events ready in {time.monotonic() - started:.1f} s")
        with urllib.request.urlopen(f"{url}/_local/truths", timeout=30) as response:
            bulk = json.load(response)["bulk"]
        small_end = tenth_of(bulk["start"], bulk["end"])
        print(f"import posthog_driver: {import_time_ms():.1f} ms (fresh /usr/bin/python3, no .pyc)")
        print(f"{'window':>8} {'events':>10} {'seconds':>8} {'events/s':>10} {'peak RSS':>10} {'baseline':>10}")
        results = {}
        # posthog-local takes these from the environment too, with the same demo defaults
        keys = {"POSTHOG_PERSONAL_API_KEY": os.environ.get("POSTHOG_PERSONAL_API_KEY") or "phx_demo_personal_key",
                "POSTHOG_PROJECT_ID": os.environ.get("POSTHOG_PROJECT_ID") or "1"}
        for label, end in (("100k", small_end), ("1M", bulk["end"])):
            r = measure(url, bulk["start"], end, args.page_size, keys)
            results[label] = r
            print(f"{label:>8} {r['rows']:>10,} {r['seconds']:>8.1f} {r['rate']:>10,} "
                  f"{r['maxrss_kib'] / 1024:>8.1f} MiB {r['baseline_kib'] / 1024:>6.1f} MiB"
                  + ("" if r["ordered"] else "  (OUT OF ORDER!)"))
        ratio = results["1M"]["maxrss_kib"] / results["100k"]["maxrss_kib"]
        verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
        print(f"peak RSS 1M / 100k: {ratio:.3f}x (target <= {TARGET_RATIO}x: {verdict}); page size {args.page_size:,}")
        return 0 if ratio <= TARGET_RATIO and all(r["ordered"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _posthog_local import NotStarted

    try:
        sys.exit(main())
    except NotStarted as e:
        print(e, file=sys.stderr)
        sys.exit(70)
