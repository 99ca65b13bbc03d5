"""Progress lines for the runner: `sandbox-runner-progress: {json}` on stderr, one per update.

Written only when the runner asks (SANDBOX_RUNNER_PROGRESS=1: the CLI on a terminal); otherwise
every call returns at once and nothing is imported. The runner reads the lines from the live
stream (Sources/SandboxRunner/Report/ProgressLine.swift) and draws one updating line. Fields, all
optional: counts as totals so far (`queries`, `rows`, or a script's own names), `waitSeconds` (a
wait of that many seconds starts now; 0 ends it) and `note` (what is going on). Count updates are
sent at most every 0.25 s; waits and notes at once.
"""
from __future__ import annotations

import os
import sys
import time

MARKER = "sandbox-runner-progress: "
_ENABLED = os.environ.get("SANDBOX_RUNNER_PROGRESS") == "1"
_INTERVAL = 0.25
_counts: dict[str, int] = {}
_last = 0.0
_dirty = False


def enabled() -> bool:
    return _ENABLED


def _send(fields: dict) -> None:
    global _last, _dirty
    import json

    sys.stderr.write(MARKER + json.dumps(fields, ensure_ascii=True, separators=(",", ":")) + "\n")
    sys.stderr.flush()
    _last = time.monotonic()
    _dirty = False


def add(name: str, n: int = 1) -> None:
    """Adds `n` to the count `name` (queries, rows, …) and reports it (throttled)."""
    global _dirty
    if not _ENABLED:
        return
    _counts[name] = _counts.get(name, 0) + int(n)
    _dirty = True
    if time.monotonic() - _last >= _INTERVAL:
        _send(dict(_counts))


def flush() -> None:
    """Sends the counts held back by the throttle (at the end of an export)."""
    if _ENABLED and _dirty:
        _send(dict(_counts))


def waiting(seconds: float, why: str | None = None) -> None:
    """A wait of `seconds` starts now (0: it is over), with the reason shown beside it."""
    if not _ENABLED:
        return
    fields: dict = dict(_counts)
    fields["waitSeconds"] = round(max(0.0, float(seconds)), 1)
    if why is not None:
        fields["note"] = str(why)[:200]
    _send(fields)


def note(text: str | None = None, **counts: int) -> None:
    """Reports what the script is doing and, optionally, counts of its own (totals so far)."""
    if not _ENABLED:
        return
    for name, value in counts.items():
        _counts[str(name)] = int(value)
    fields: dict = dict(_counts)
    if text is not None:
        fields["note"] = str(text)[:200]
    _send(fields)
