#!/usr/bin/env python3
"""Incremental extraction of 1,000,000 events: ten successive runs of 100k, then the same million
in one run; events per second and peak memory of the sandbox and of the runner.

Starts posthog-local with its bulk dataset (1,000,000 extra events over 30 days; --no-limits: this
measures the extraction, not PostHog's 120 queries an hour, which Tests/extract covers), then runs
the release binary's `sandbox-runner extract events --max-rows 100000` ten times on one state file
(each run continues where the previous stopped; the bulk events come first, then the demo
dataset's), and once with a fresh state and --max-rows 1000000: the same million bulk events in one
run, so that the two compare runs over the same kind of rows. Every run goes through the real jail and the egress proxy
(`--network posthog`, the default), writing gzip'd JSONL (a million rows as plain JSONL would
not fit in one run: a run's file stops below its workspace and artifact limits, 256 MiB, and the
run ends as partial "size"). Peak memory comes from the runner's own report
(`peakRssKiB.runner`: the runner process, `peakRssKiB.sandbox`: the sandbox's process tree).

Targets: memory flat, i.e. peak(1M run) / peak(biggest 100k run of the same events) <= 1.1 for
the runner and for the sandbox, and the ninth 100k run no bigger than 1.1x the first (the state does not grow with
history); the successive runs deliver every event exactly once (the uuids of the files, counted).

    .venv/bin/python Benchmarks/extract_incremental.py [--events 1000000] [--batch 100000]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _posthog_local import NotStarted, posthog_local

TITLE = "Incremental extraction: 1M events in runs of 100k, memory flat"
ROOT = Path(__file__).resolve().parents[1]
BINARY = os.environ.get("SANDBOX_RUNNER_BIN", str(ROOT / ".build" / "release" / "sandbox-runner"))
TARGET_RATIO = 1.1


def extract(env: dict[str, str], state: Path, out: Path, since: str, batch: int | None) -> dict:
    args = [BINARY, "extract", "events", "--state", str(state), "--out-dir", str(out), "--since", since, "--json",
            "--timeout", "3600", "--gzip"]
    if batch:
        args += ["--max-rows", str(batch)]
    started = time.monotonic()
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=3700)
    seconds = time.monotonic() - started
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"extract printed no document (exit {proc.returncode}): {proc.stderr[-2000:]}")
    if not doc.get("success"):
        raise SystemExit(f"extract failed: {doc.get('error')}")
    doc["wallSeconds"] = seconds
    return doc


def count_uuids(path: str, seen: set[str]) -> tuple[int, int]:
    """Rows in a delivered JSONL file and how many of their uuids were delivered before."""
    rows = repeats = 0
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            uid = json.loads(line)["uuid"]
            rows += 1
            if uid in seen:
                repeats += 1
            seen.add(uid)
    return rows, repeats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="bulk events in posthog-local")
    parser.add_argument("--batch", type=int, default=100_000, help="--max-rows of each successive run")
    args = parser.parse_args()
    if not os.access(BINARY, os.X_OK):
        print(f"{BINARY} is missing: build it first (make bench builds the release binary).", file=sys.stderr)
        return 70

    with posthog_local("--bulk-events", str(args.events), "--no-limits") as url:
        with urllib.request.urlopen(f"{url}/_local/truths", timeout=30) as response:
            bulk = json.load(response)["bulk"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTHOG_", "SANDBOX_RUNNER_"))}
        env.update({"POSTHOG_API_URL": url, "POSTHOG_INGEST_URL": url, "POSTHOG_PERSONAL_API_KEY": "phx_demo_personal_key",
                    "POSTHOG_PROJECT_API_KEY": "phc_demo_project_key", "POSTHOG_PROJECT_ID": "1"})
        since = bulk["start"]
        print(f"posthog-local: {args.events:,} bulk events from {since}; binary {BINARY}")
        print(f"{'run':>6} {'events':>9} {'seconds':>8} {'events/s':>9} {'runner peak':>12} {'sandbox peak':>13}")

        def show(label: str, doc: dict) -> None:
            peak = doc["peakRssKiB"]
            print(f"{label:>6} {doc['rows']:>9,} {doc['wallSeconds']:>8.1f} {doc['rows'] / doc['wallSeconds']:>9,.0f} "
                  f"{peak['runner'] / 1024:>8.1f} MiB {peak['sandbox'] / 1024:>9.1f} MiB")

        with tempfile.TemporaryDirectory() as work:
            state, out = Path(work) / "events.state.json", Path(work) / "out"
            runs: list[dict] = []
            seen: set[str] = set()
            repeats = 0
            while True:
                doc = extract(env, state, out, since, args.batch)
                if not doc["rows"]:
                    break
                runs.append(doc)
                rows, again = count_uuids(doc["file"]["path"], seen)
                assert rows == doc["rows"], (rows, doc["rows"])
                repeats += again
                os.unlink(doc["file"]["path"])
                show(f"#{len(runs)}", doc)
                if len(runs) > 2 * (args.events // args.batch) + 10:
                    raise SystemExit("the extraction does not end: each run should move the watermark on")
            total = sum(d["rows"] for d in runs)
            incremental_seconds = sum(d["wallSeconds"] for d in runs)
            print(f"  {len(runs)} runs: {total:,} events ({len(seen):,} distinct uuids, {repeats} delivered twice) "
                  f"in {incremental_seconds:.1f} s, {total / incremental_seconds:,.0f} events/s")

            whole = extract(env, Path(work) / "whole.state.json", out, since, args.events)
            show("all", whole)
            os.unlink(whole["file"]["path"])

        bulk_runs = runs[:args.events // args.batch]  # the runs that read bulk events only
        # Growth is read on the last batch but one: the last bulk batch's final page reaches past
        # the bulk into the demo dataset's events (bigger rows, more properties), which says
        # nothing about history.
        first, last = bulk_runs[0]["peakRssKiB"], bulk_runs[-2]["peakRssKiB"]
        ok = repeats == 0 and total == len(seen) and total >= args.events and whole["rows"] == args.events \
            and sum(d["rows"] for d in bulk_runs) == args.events
        print(f"  every event once: {'yes' if ok else 'NO'}; {args.events:,} bulk events in one run and in "
              f"{len(bulk_runs)} runs of {args.batch:,}")
        for who in ("runner", "sandbox"):
            # Against the biggest batch over the same events: a run's peak is one page of rows, and
            # a page that reaches past the bulk into the demo dataset's richer rows (the last
            # batch's, and the one run's when its slices end there) weighs ~8 MiB more.
            ratio = whole["peakRssKiB"][who] / max(d["peakRssKiB"][who] for d in bulk_runs)
            growth = last[who] / first[who]
            met = ratio <= TARGET_RATIO and growth <= TARGET_RATIO
            ok = ok and met
            print(f"  {who}: peak of the one run / biggest batch {ratio:.3f}x, batch {len(bulk_runs) - 1} / batch 1 {growth:.3f}x "
                  f"(target <= {TARGET_RATIO}x: {'met' if met else 'NOT met'})")
        return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except NotStarted as e:
        print(e, file=sys.stderr)
        sys.exit(70)
