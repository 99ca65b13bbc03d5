"""`sandbox-runner extract` beyond exactly-once: the columns (flattening, stable order, the
collision rule), CSV and gzip, --list with a deterministic fingerprint, persons, the snapshot
resources, a state of another extraction refused, a second extract on one state refused, and
doctor's PostHog problem categories."""
from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import json
import subprocess
import uuid
from pathlib import Path

import pytest
from extract_support import BINARY, Server, delivered, event, extract, iso, now


def test_columns_are_flattened_in_a_stable_order(server: Server, tmp_path: Path) -> None:
    name = f"flat_{uuid.uuid4().hex[:8]}"
    t = now() - dt.timedelta(minutes=5)
    e1 = event(name, t, plan="pro", nested={"a": [1, 2]}, n=3, ok=True)
    e1["properties"]["quote"] = 'say "hi", then\nleave'
    e1["properties"]["brand_new_key_" + name] = "x"  # no property definition when the columns are read
    e2 = event(name, t + dt.timedelta(seconds=1), plan="free")
    server.capture([e1, e2])
    out = tmp_path / "out"
    for fmt, gz in (("csv", True), ("jsonl", False)):
        state = tmp_path / f"{fmt}.state.json"
        status, doc, err = extract(server, state, out, "--events", name, "--since", iso(t - dt.timedelta(minutes=1)),
                                   "--format", fmt, *(["--gzip"] if gz else []))
        assert status == 0 and doc["success"], err
        columns = doc["columns"]
        assert columns[:5] == ["uuid", "event", "timestamp", "distinct_id", "person_id"] and columns[-1] == "unlisted_properties"
        props = [c for c in columns if c.startswith("properties_")]
        person = [c for c in columns if c.startswith("person_properties_")]
        assert props == sorted(props) and person == sorted(person) and columns.index(props[-1]) < columns.index(person[0])
        assert {"properties_plan", "properties_nested", "properties_quote"} <= set(columns)
        path = Path(doc["file"]["path"])
        raw = path.read_bytes()
        assert doc["file"]["sha256"] == hashlib.sha256(raw).hexdigest() and doc["file"]["bytes"] == len(raw)
        if gz:
            assert path.name.endswith(".csv.gz") and raw[:2] == b"\x1f\x8b"
            raw = gzip.decompress(raw)
        if fmt == "csv":
            table = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
            assert table[0] == columns
            rows = [dict(zip(table[0], r)) for r in table[1:]]
            first = rows[0]
            assert first["properties_nested"] == '{"a":[1,2]}' and first["properties_n"] == "3" and first["properties_ok"] == "true"
            assert first["properties_quote"] == 'say "hi", then\nleave'
            assert rows[1]["properties_nested"] == ""
        else:
            rows = [json.loads(line) for line in raw.decode("utf-8").splitlines()]
            first = rows[0]
            assert list(first)[:5] == columns[:5], "keys in column order"
            assert first["properties_nested"] == '{"a":[1,2]}' and first["properties_n"] == 3 and first["properties_ok"] is True
            assert "properties_nested" not in rows[1], "absent properties are left out of JSONL"
        assert [r["uuid"] for r in rows] == [e1["uuid"], e2["uuid"]]
        assert first["timestamp"] == iso(t)
        # posthog-local defines a property as soon as an event has it (PostHog's ingestion does, eventually).
        assert "properties_brand_new_key_" + name in columns


def test_keys_without_a_definition_go_to_unlisted_properties() -> None:
    """A property PostHog has no definition for yet (its definitions lag ingestion) keeps its value."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sandbox"))
    from posthog_driver.extract import _flatten

    row: dict = {}
    unlisted: dict = {}
    _flatten("properties_", '{"a": 1, "b": {"c": [2]}, "person_properties_x": 3}', row, {"properties_a"}, unlisted)
    _flatten("person_properties_", {"x": "y"}, row, {"person_properties_x"}, unlisted)
    assert row == {"properties_a": 1, "person_properties_x": "y"}
    # An event property named like a person column stays an event property (the prefixes never collide).
    assert unlisted == {"properties_b": {"c": [2]}, "properties_person_properties_x": 3}


def test_list_gives_columns_and_a_deterministic_fingerprint(server: Server) -> None:
    def listing() -> dict:
        done = subprocess.run([BINARY, "extract", "--list", "--json"], capture_output=True, text=True, env=server.env(), timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    a, b = listing(), listing()
    assert [r["name"] for r in a["resources"]] == ["cohorts", "events", "feature_flags", "persons"]
    assert a["fingerprint"] == b["fingerprint"] and len(a["fingerprint"]) == 64
    events = next(r for r in a["resources"] if r["name"] == "events")
    assert events["kind"] == "incremental" and events["key"] == ["timestamp", "uuid"]
    assert "properties_$browser" in events["columns"] and "person_properties_email" in events["columns"]
    snapshot = next(r for r in a["resources"] if r["name"] == "cohorts")
    assert snapshot["kind"] == "snapshot" and snapshot["key"] is None
    # A new property changes the schema, so the fingerprint.
    server.capture([event("fingerprint_probe", now(), **{f"new_prop_{uuid.uuid4().hex[:6]}": 1})])
    assert listing()["fingerprint"] != a["fingerprint"]


def test_persons_and_snapshots(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "out"
    base = ["--since", "2026-10-25T00:00:00Z"]

    def run(resource: str, state: Path) -> dict:
        done = subprocess.run([BINARY, "extract", resource, "--state", str(state), "--out-dir", str(out), "--json", *base],
                              capture_output=True, text=True, env=server.env(), timeout=240)
        doc = json.loads(done.stdout)
        assert done.returncode == 0 and doc["success"], doc.get("error")
        return doc

    persons = run("persons", tmp_path / "persons.json")
    assert persons["rows"] > 0 and persons["watermark"]["time"] >= "2026-10-25"
    again = run("persons", tmp_path / "persons.json")
    assert again["rows"] == 0, "no person delivered twice"
    rows = [json.loads(line) for line in Path(persons["file"]["path"]).read_text().splitlines()]
    assert {"id", "created_at", "is_identified"} <= set(rows[0]) and any(k.startswith("properties_") for k in rows[0])
    for resource in ("cohorts", "feature_flags"):
        doc = run(resource, tmp_path / f"{resource}.json")
        items = [json.loads(line) for line in Path(doc["file"]["path"]).read_text().splitlines()]
        assert doc["rows"] == len(items) > 0 and all("id" in i and "filters" in i for i in items)
        assert run(resource, tmp_path / f"{resource}.json")["rows"] == len(items), "a snapshot every run"
    assert len(delivered(out, "cohorts-*.jsonl")) == 2


def test_the_state_of_another_extraction_is_refused(server: Server, tmp_path: Path) -> None:
    name = f"other_{uuid.uuid4().hex[:8]}"
    server.capture([event(name, now() - dt.timedelta(minutes=2))])
    state, out = tmp_path / "s.json", tmp_path / "out"
    status, doc, _ = extract(server, state, out, "--events", name, "--since", "1h")
    assert status == 0 and doc["rows"] == 1
    before = state.read_bytes()
    for args, why in ((["--events", "something_else", "--since", "1h"], "belongs to another extraction"),
                      (["--events", name, "--since", "1h", "--lookback-minutes", "5"], "was made with a 15-minute lookback")):
        status, doc, _ = extract(server, state, out, *args)
        assert status == 64 and why in doc["error"], doc
        assert state.read_bytes() == before


def test_two_extracts_on_one_state_do_not_run_at_once(server: Server, tmp_path: Path) -> None:
    state, out = tmp_path / "s.json", tmp_path / "out"
    server.faults(["slow:ms=1500:count=*:path=/api/projects/1/query"])
    try:
        first = subprocess.Popen([BINARY, "extract", "events", "--state", str(state), "--out-dir", str(out), "--json", "--since", "1h"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=server.env())
        deadline = now() + dt.timedelta(seconds=20)
        while not (tmp_path / "s.json.lock").exists() and now() < deadline:
            pass
        status, doc, _ = extract(server, state, out, "--since", "1h")
        assert status == 64 and "Another extract is using" in doc.get("error", "") + json.dumps(doc), doc
        first.wait(timeout=120)
    finally:
        server.faults([])


@pytest.mark.parametrize("case,category", [
    ("ok", None), ("wrong key", "auth"), ("no key", "auth"), ("other project", "permission"), ("missing project", "auth"),
    ("closed port", "network"), ("slow", "timeout"), ("server error", "unknown"),
])
def test_doctor_names_the_posthog_problem(server: Server, case: str, category: str | None) -> None:
    env = server.env()
    secret = "phx_doctor_" + uuid.uuid4().hex
    if case == "wrong key":
        env["POSTHOG_PERSONAL_API_KEY"] = secret
    elif case == "no key":
        env.pop("POSTHOG_PERSONAL_API_KEY")
    elif case == "other project":
        env["POSTHOG_PROJECT_ID"] = "99"
    elif case == "missing project":
        env["POSTHOG_PROJECT_ID"] = "not-a-number"
    elif case == "closed port":
        env["POSTHOG_API_URL"] = "http://127.0.0.1:9"
    elif case == "slow":
        server.faults(["slow:ms=4000:count=1:path=/api/projects/1"])
    elif case == "server error":
        server.faults(["500:count=1:path=/api/projects/1/query"])
    try:
        done = subprocess.run([BINARY, "doctor", "--json", "--timeout", "2"], capture_output=True, text=True, env=env, timeout=60)
    finally:
        server.faults([])
    doc = json.loads(done.stdout)
    posthog = doc["posthog"]
    assert posthog["category"] == category and posthog["ok"] is (category is None), posthog
    assert posthog["message"].endswith(".") and len(posthog["message"]) < 300
    assert secret not in done.stdout and secret not in done.stderr
    assert "phx_demo_personal_key" not in done.stdout


def test_a_window_bigger_than_a_run_may_hand_back_ends_as_partial_and_continues(server: Server, tmp_path: Path) -> None:
    """The data file is written in the sandbox's workspace (256 MiB) and handed back under the
    artifact limit: a window that does not fit used to fail the run with ENOSPC (or the limit) and
    deliver nothing however often it was rerun. Now each run stops below the smaller of the two
    ("size"), and the next run continues: every event once."""
    since = "2026-10-16T00:00:00Z"  # about 45,000 demo events, ~32 MB as JSONL
    limit = 12 << 20
    out = tmp_path / "out"
    state = tmp_path / "limited.state.json"
    uuids: list[str] = []
    for attempt in range(12):
        status, doc, err = extract(server, state, out, "--since", since, "--max-artifact-bytes", str(limit), "--lookback-minutes", "0")
        assert status == 0 and doc["success"], (doc.get("error"), err)
        if doc["rows"] == 0:
            break
        assert doc["file"]["bytes"] <= limit - limit // 8, doc["file"]
        with open(doc["file"]["path"], encoding="utf-8") as f:
            uuids += [json.loads(line)["uuid"] for line in f]
        if attempt == 0:
            assert doc["partial"] and doc["reason"] == "size", doc
    else:
        raise AssertionError("the extraction did not end")
    assert attempt >= 3, "the window fit in one run: the test no longer exercises the size bound"
    status, whole, err = extract(server, tmp_path / "whole.state.json", tmp_path / "whole", "--since", since, "--lookback-minutes", "0")
    assert status == 0 and whole["success"] and not whole["partial"], (whole.get("error"), err)
    assert len(uuids) == len(set(uuids)) == whole["rows"]
