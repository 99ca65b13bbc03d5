"""Exactly once, proved: while posthog-local receives events through PostHog's capture API, successive
`sandbox-runner extract events` runs deliver files; late events (timestamps inside the lookback
window), events re-sent with the same uuid (PostHog's ClickHouse shows both rows until a merge:
posthog/models/event/sql.py, a ReplacingMergeTree), events stamped in the future, runs SIGKILLed
midway, runs killed at each step of the commit, a run stopped by its timeout and a run throttled by
the query budget all happen along the way. At the end the concatenation of every delivered file
holds every event posthog-local has, each exactly once.

Delivered files are the ones with their final names in --out-dir: a run's files wait in a hidden
staging directory until the state counts them (Sources/SandboxRunner/Extract/Extraction.swift).
"""
from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import time
import uuid
from pathlib import Path

from extract_support import BINARY, Server, delivered, event, extract, iso, now


def uuids_in(files: list[Path]) -> list[str]:
    out: list[str] = []
    for f in files:
        for line in f.read_text(encoding="utf-8").splitlines():
            out.append(json.loads(line)["uuid"])
    return out


def test_every_event_is_delivered_exactly_once(server: Server, tmp_path: Path) -> None:
    out, state = tmp_path / "out", tmp_path / "events.state.json"
    name = f"exactly_once_{uuid.uuid4().hex[:8]}"  # only this test's events (--events)
    t0 = now()
    base = ["--events", name, "--since", iso(t0 - dt.timedelta(hours=3)), "--page-size", "50"]
    sent: dict[str, dict] = {}

    def send(events: list[dict]) -> None:
        server.capture(events)
        for e in events:
            sent.setdefault(e["uuid"], e)

    def state_bytes() -> bytes | None:
        return state.read_bytes() if state.exists() else None

    def run(*args: str, env: dict[str, str] | None = None) -> dict:
        status, doc, stderr = extract(server, state, out, *base, *args, env=env)
        assert status == 0 and doc["success"], f"{doc.get('error')} {stderr[-2000:]}"
        assert json.loads(state.read_text()).get("pending") is None
        return doc

    # Round 1: 300 events over the last two hours, and 5 stamped 40 s ahead (they wait for their
    # time). PostHog's query budget runs out mid-extraction: the run ends early with what it has
    # (partial, the state consistent), and the next one goes on from there.
    send([event(name, t0 - dt.timedelta(minutes=120) + dt.timedelta(seconds=23 * i), n=i) for i in range(300)])
    future = [event(name, t0 + dt.timedelta(seconds=40), future=True) for _ in range(5)]
    send(future)
    server.limits(enabled=True, query_rate_spec="3/60s", reset_usage=True)
    try:
        throttled = run("--max-wait", "1")
    finally:
        server.restore_limits()
    assert throttled["partial"] and throttled["reason"] == "throttled" and 0 < throttled["rows"] < 300, throttled
    assert throttled["stateCommitted"]
    first = run()
    assert first["rows"] == 300 - throttled["rows"] and not first["partial"]
    watermark = dt.datetime.fromisoformat(first["watermark"]["time"].replace("Z", "+00:00"))

    # Round 2: late events inside the lookback window (one at the watermark's very instant with a
    # smaller uuid), events re-sent with their uuid (delivered ones, and one twice in this round).
    late = [event(name, watermark - dt.timedelta(minutes=10) + dt.timedelta(seconds=7 * i), late=True) for i in range(40)]
    tie = event(name, watermark, tie=True)
    tie["uuid"] = "00000000-0000-4000-8000-" + uuid.uuid4().hex[:12]
    late.append(tie)
    send(late)
    resent = [dict(e) for e in list(sent.values())[260:290]] + [dict(late[3])]
    server.capture(resent)
    rows = server.hogql("SELECT count(), count(DISTINCT uuid) FROM events WHERE event = {n}", {"n": name})[0]
    assert rows[0] > rows[1], "posthog-local shows re-sent events as PostHog does (two rows, one uuid)"
    second = run()
    assert second["rows"] == len(late)
    assert second["skippedDuplicates"] >= 20, second  # the re-sent ones inside the window

    # Round 3: runs SIGKILLed midway (queries slowed so the kill lands inside the run).
    send([event(name, now() - dt.timedelta(seconds=300 - i // 2), n=1000 + i) for i in range(400)])
    server.faults(["slow:ms=600:count=*:path=/api/projects/1/query"])
    for delay in (0.8, 2.5, 4.5):
        before, files = state_bytes(), delivered(out)
        cmd = [BINARY, "extract", "events", "--state", str(state), "--out-dir", str(out), "--json", *base]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=server.env(), cwd=tmp_path)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert state_bytes() == before, f"a run killed after {delay} s changed the state"
        assert delivered(out) == files, f"a run killed after {delay} s delivered a file"

    # A run stopped by its timeout (no time left for even the first pages).
    before = state_bytes()
    status, doc, _ = extract(server, state, out, *base, "--timeout", "3", "--page-size", "10")
    assert status == 124 and doc["errorKind"] == "timeout" and not doc["stateCommitted"]
    assert state_bytes() == before
    server.faults([])

    # Runs killed at each step of the commit: before it (nothing counted), after it (the next run
    # moves the file into place), after the move (the next run only tidies the state).
    before, files = state_bytes(), delivered(out)
    status, _, _ = extract(server, state, out, *base, env={"SANDBOX_RUNNER_FAILPOINT": "extract:before-commit"})
    assert status == -signal.SIGKILL and state_bytes() == before and delivered(out) == files
    status, _, _ = extract(server, state, out, *base, env={"SANDBOX_RUNNER_FAILPOINT": "extract:after-commit"})
    assert status == -signal.SIGKILL and delivered(out) == files
    pending = json.loads(state.read_text())["pending"]
    assert Path(pending["staged"]).is_file() and Path(pending["staged"]).parent.name.startswith(".sandbox-runner-staging-")
    recovered = run()
    assert recovered["recovered"] == pending["final"] and Path(pending["final"]).is_file()
    send([event(name, now() - dt.timedelta(seconds=30), n=5000 + i) for i in range(25)])
    status, _, _ = extract(server, state, out, *base, env={"SANDBOX_RUNNER_FAILPOINT": "extract:after-move"})
    assert status == -signal.SIGKILL and json.loads(state.read_text())["pending"] is not None
    assert run()["recovered"] is not None

    # Round 4: more events while a run is limited to a few rows (it stops, partial, and the next goes on).
    send([event(name, now() - dt.timedelta(seconds=120) + dt.timedelta(milliseconds=500 * i), n=9000 + i) for i in range(200)])
    limited = run("--max-rows", "70")
    assert limited["partial"] and limited["reason"] == "max_rows" and limited["rows"] == 70
    rest = run()
    assert not rest["partial"] and rest["rows"] == 130

    # The future events, once their time has come; then nothing is left.
    assert not set(e["uuid"] for e in future) & set(uuids_in(delivered(out))), "delivered before their time"
    time.sleep(max(0.0, (t0 + dt.timedelta(seconds=42) - now()).total_seconds()))
    assert run()["rows"] == len(future)
    last = run()
    assert last["rows"] == 0 and last["file"] is None and last["skippedDuplicates"] >= len(future)

    # Every event PostHog has, exactly once, in the files delivered.
    got = uuids_in(delivered(out))
    repeated = {u for u in got if got.count(u) > 1}
    assert not repeated, f"{len(repeated)} events delivered twice"
    truth = {row[0] for row in server.hogql("SELECT DISTINCT toString(uuid) FROM events WHERE event = {n} LIMIT 50000", {"n": name})}
    assert set(got) == truth == set(sent), f"missing {len(truth - set(got))}, unexpected {len(set(got) - truth)}"
    # Each delivered file is the one its run's state described.
    final = json.loads(state.read_text())
    newest = out / final["data"]["file"]
    import hashlib

    assert hashlib.sha256(newest.read_bytes()).hexdigest() == final["data"]["sha256"]
    assert final["rows_total"] == len(got)
