#!/usr/bin/env python3
"""What `import posthog_driver` costs a fresh sandbox: the package compiled from source (no .pyc,
as in a jail), measured with `python3 -X importtime` in new interpreters, median of 20, next to
the interpreter's own start (`python3 -c pass`) measured in the same run.

Target: the import costs under 15 ms (the driver loads http.client, json, ssl… only on its first
request; the unit tests check which modules load, this checks what they cost)."""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TITLE = "driver: import posthog_driver in a fresh sandbox interpreter"
ROOT = Path(__file__).resolve().parents[1]
TARGET_MS = 15.0
RUNS = 20


def import_ms() -> float:
    with tempfile.TemporaryDirectory() as cache:  # nothing compiled before: as in a fresh jail
        done = subprocess.run(["/usr/bin/python3", "-X", "importtime", "-c", "import posthog_driver"], cwd=ROOT / "sandbox",
                              capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PYTHONPYCACHEPREFIX": cache},
                              check=True)
    line = [ln for ln in done.stderr.splitlines() if ln.rstrip().endswith("| posthog_driver")][-1]
    return int(line.split("|")[1]) / 1000


def start_ms() -> float:
    t = time.perf_counter()
    subprocess.run(["/usr/bin/python3", "-c", "pass"], check=True, env={"PATH": "/usr/bin:/bin"})
    return (time.perf_counter() - t) * 1000


def main() -> int:
    imports, starts = [], []
    for _ in range(RUNS):  # interleaved, so load drift hits both alike
        imports.append(import_ms())
        starts.append(start_ms())
    imp, start = statistics.median(imports), statistics.median(starts)
    ok = imp < TARGET_MS
    print(f"import posthog_driver: {imp:.1f} ms (median of {RUNS}); python3 -c pass: {start:.1f} ms; "
          f"import / interpreter start: {imp / start:.2f}x")
    print(f"target < {TARGET_MS:g} ms: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
