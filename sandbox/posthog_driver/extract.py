"""Incremental extraction: what `sandbox-runner extract` runs inside the sandbox.

The runner puts two files into the run's working directory: `extract.json` (what to extract) and
`state.json` (the state the operator keeps outside the sandbox; absent on a first run). The run
writes the data into `out/<resource>-<run id>.jsonl|.csv[.gz]` and the next state into
`out/state.json`, then prints a summary. The runner replaces its state file with the new state only
once the data file arrived complete and its sha256 matches the one the state names: a run that
dies anywhere leaves the old state, and the next run repeats nothing and loses nothing.

Events (and persons, by `created_at`) are read in keyset order `(time, id)` from
`watermark - lookback` (or `since` on a first run) up to `until` (the runner's clock at the start,
so an event stamped in the future waits for its time), skipping the ids the state says were
delivered inside the lookback window. The new state holds the highest `(time, id)` delivered and
every id delivered at or after `watermark - lookback`. Memory holds one page and the ids of one
lookback window, whatever the size of the extraction.

Columns (stable order): the fixed ones, then `properties_<key>` for each of the project's property
definitions, sorted, then `person_properties_<key>` likewise, then `unlisted_properties` (a JSON
object of flattened keys that have no definition yet). A key is kept byte for byte after its
prefix; a nested value is written as JSON text. Collision rule: event and person columns cannot
collide (one prefix is not a prefix of the other) and no flattened column can take a fixed
column's name; the one way two values meet in one column is a key repeated inside one JSON object,
where the last one wins (as Python's json reads it).

Cohorts and feature flags are small: each run writes a full snapshot of them.
"""
from __future__ import annotations

import hashlib
import heapq
import json
import os
import sys
import time

from .errors import (ConnectionFailedError, PostHogError, RateLimitError, RequestTimeoutError, ServerError,
                     ValidationError)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterator

STATE_VERSION = 1
UNLISTED = "unlisted_properties"

# name -> (kind, fixed columns, time key, id key). Incremental resources page by (time, id).
RESOURCES: dict[str, dict[str, Any]] = {
    "events": {"kind": "incremental", "table": "events", "description": "Events with their properties and the person's",
               "fixed": ["uuid", "event", "timestamp", "distinct_id", "person_id"],
               "time": "timestamp", "id": "uuid", "time_key": "timestamp", "id_key": "toString(uuid)",
               "select": ["toString(uuid)", "event", "timestamp", "distinct_id", "toString(person_id)", "properties",
                          "person.properties"],
               "names": ["uuid", "event", "timestamp", "distinct_id", "person_id", "properties", "person_properties"],
               "property_groups": [("properties_", "event", "properties"), ("person_properties_", "person", "person_properties")]},
    "persons": {"kind": "incremental", "table": "persons", "description": "Persons (new ones since the watermark) with their properties",
                "fixed": ["id", "created_at", "is_identified"],
                "time": "created_at", "id": "id", "time_key": "created_at", "id_key": "toString(id)",
                "select": ["toString(id)", "created_at", "is_identified", "properties"],
                "names": ["id", "created_at", "is_identified", "properties"],
                "property_groups": [("properties_", "person", "properties")]},
    "cohorts": {"kind": "snapshot", "description": "Cohorts (a full snapshot each run)",
                "fixed": ["id", "name", "description", "is_static", "count", "created_at", "deleted", "filters"]},
    "feature_flags": {"kind": "snapshot", "description": "Feature flags (a full snapshot each run)",
                      "fixed": ["id", "key", "name", "active", "created_at", "deleted", "rollout_percentage", "filters"]},
}


class ExtractError(PostHogError):
    """The extraction cannot go on (bad state, bad settings)."""


# -- time ----------------------------------------------------------------------------------------
def _micros(text: str) -> int:
    import datetime as dt

    t = text.strip()
    if t[-1:] in ("Z", "z"):
        t = t[:-1] + "+00:00"
    when = dt.datetime.fromisoformat(t)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    delta = when - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _iso(micros: int) -> str:
    import datetime as dt

    return (dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- output --------------------------------------------------------------------------------------
SIZE_SLACK = 2 << 20  # bytes a RowWriter may hold before they reach the file (64 KiB buffer, gzip's)


class HashingFile:
    """The data file: bytes hashed and counted as they are written (no second read)."""

    def __init__(self, path: str) -> None:
        self.f = open(path, "xb")
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        self.f.write(data)
        return len(data)

    def flush(self) -> None:
        self.f.flush()

    def close(self) -> None:
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()


class RowWriter:
    """JSONL (absent properties left out, keys in column order) or CSV (RFC 4180, a header row),
    optionally gzip (mtime 0: the same rows give the same bytes)."""

    def __init__(self, path: str, fmt: str, gzip_output: bool, columns: list[str]) -> None:
        import io

        self.raw = HashingFile(path)
        self.columns = columns
        self.fmt = fmt
        self.gz = None
        sink: Any = self.raw
        if gzip_output:
            import gzip

            self.gz = gzip.GzipFile(filename="", mode="wb", fileobj=self.raw, mtime=0)
            sink = self.gz
        self.buffer = io.BufferedWriter(_Sink(sink), buffer_size=1 << 16)
        self.text = io.TextIOWrapper(self.buffer, encoding="utf-8", newline="")
        self.rows = 0
        if fmt == "csv":
            import csv

            self.csv = csv.writer(self.text, lineterminator="\r\n")
            self.csv.writerow(columns)

    def write(self, row: dict[str, Any]) -> None:
        self.rows += 1
        if self.fmt == "csv":
            self.csv.writerow([_csv_cell(row.get(c)) for c in self.columns])
        else:
            self.text.write(json.dumps({c: row[c] for c in self.columns if c in row}, ensure_ascii=False,
                                       separators=(",", ":")) + "\n")

    def close(self) -> tuple[int, str]:
        self.text.flush()
        self.buffer.flush()
        if self.gz is not None:
            self.gz.close()
        self.raw.close()
        return self.raw.size, self.raw.digest.hexdigest()


class _Sink:
    """A raw stream over any object with write(): what io.BufferedWriter needs."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.closed = False

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def write(self, data: Any) -> int:
        return self.target.write(bytes(data))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value


def _flat_value(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return value


def _flatten(prefix: str, raw: Any, row: dict[str, Any], listed: set[str], unlisted: dict[str, Any]) -> None:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw else {}
        except ValueError:
            raw = {}
    if not isinstance(raw, dict):
        return
    for key, value in raw.items():
        column = prefix + str(key)
        if column in listed:
            row[column] = _flat_value(value)
        else:
            unlisted[column] = value


# -- discover ------------------------------------------------------------------------------------
def _definitions(client: Any, kind: str) -> list[str]:
    return sorted({str(d["name"]) for d in client.get_property_definitions(type=kind)
                   if isinstance(d, dict) and isinstance(d.get("name"), str) and d["name"]})


def columns_of(client: Any, name: str, cache: dict[str, list[str]] | None = None) -> list[str]:
    spec = RESOURCES[name]
    columns = list(spec["fixed"])
    for prefix, kind, _field in spec.get("property_groups", []):
        if cache is not None and kind in cache:
            names = cache[kind]
        else:
            names = _definitions(client, kind)
            if cache is not None:
                cache[kind] = names
        columns += [prefix + n for n in names]
    if spec.get("property_groups"):
        columns.append(UNLISTED)
    return columns


def fingerprint(resources: list[dict[str, Any]]) -> str:
    """sha256 of the sorted resources (name, kind, columns) as canonical JSON: the same schema
    gives the same fingerprint on any run."""
    canonical = json.dumps(sorted(({"name": r["name"], "kind": r["kind"], "columns": r["columns"]} for r in resources),
                                  key=lambda r: r["name"]), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def discover(client: Any) -> dict[str, Any]:
    cache: dict[str, list[str]] = {}
    resources = []
    for name in sorted(RESOURCES):
        spec = RESOURCES[name]
        resources.append({"name": name, "kind": spec["kind"], "description": spec["description"],
                          "key": [spec["time"], spec["id"]] if spec["kind"] == "incremental" else None,
                          "columns": columns_of(client, name, cache)})
    return {"resources": resources, "fingerprint": fingerprint(resources)}


# -- state ---------------------------------------------------------------------------------------
def load_state(config: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The state handed in (None on a first run) and the sha256 of its bytes."""
    try:
        with open("state.json", "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raw = b""
    if not raw:  # a first run: the runner sends an empty state
        return None, hashlib.sha256(b"").hexdigest()
    state = json.loads(raw)
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise ExtractError("The state file is not a version 1 extraction state; start a new one with another --state file.")
    if state.get("resource") != config["resource"] or state.get("filter") != _filter(config):
        raise ExtractError("The state file belongs to another extraction (resource or event filter); use the state file of this one.")
    if state.get("lookback_minutes") not in (None, config["lookback_minutes"]):
        # The ids kept are those of one window: another window would repeat or lose events.
        raise ExtractError(f"The state was made with a {state['lookback_minutes']}-minute lookback; keep it, or start a new state file.")
    return state, hashlib.sha256(raw).hexdigest()


def _filter(config: dict[str, Any]) -> dict[str, Any]:
    return {"events": sorted(config.get("events") or [])}


# -- the run -------------------------------------------------------------------------------------
def run(config: dict[str, Any]) -> dict[str, Any]:
    from .client import PostHogClient

    started = time.monotonic()
    name = config["resource"]
    if name not in RESOURCES:
        raise ValidationError("The resource must be one of " + ", ".join(sorted(RESOURCES)) + ".")
    if config["format"] not in ("jsonl", "csv"):
        raise ValidationError("The format must be jsonl or csv.")
    state, previous = load_state(config)
    run_id = os.environ.get("SANDBOX_RUNNER_RUN_ID", "run")[:36]
    os.makedirs("out", exist_ok=True)
    data_name = f"{name}-{run_id}.{config['format']}" + (".gz" if config.get("gzip") else "")
    with PostHogClient(max_retry_wait=float(config.get("max_wait", 10))) as client:
        columns = columns_of(client, name)
        writer = RowWriter(os.path.join("out", data_name), config["format"], bool(config.get("gzip")), columns)
        spec = RESOURCES[name]
        if spec["kind"] == "snapshot":
            summary, new_state = _snapshot(client, name, config, state, writer)
        else:
            summary, new_state = _incremental(client, name, spec, config, state, writer, columns, started)
    size, digest = writer.close()
    summary.update({"resource": name, "format": config["format"], "gzip": bool(config.get("gzip")),
                    "columns": columns, "fingerprint": fingerprint([{"name": name, "kind": spec["kind"], "columns": columns}])})
    if summary["rows"] == 0 and spec["kind"] == "incremental":
        os.remove(os.path.join("out", data_name))  # nothing new: no file, no state change
        summary.update({"file": None, "bytes": 0, "sha256": None, "state": None})
    else:
        new_state.update({"version": STATE_VERSION, "resource": name, "filter": _filter(config), "previous": previous,
                          "data": {"file": data_name, "bytes": size, "sha256": digest, "rows": summary["rows"],
                                   "format": config["format"], "gzip": bool(config.get("gzip")), "columns": columns}})
        new_state["runs"] = int((state or {}).get("runs", 0)) + 1
        new_state["rows_total"] = int((state or {}).get("rows_total", 0)) + summary["rows"]
        with open(os.path.join("out", "state.json"), "x", encoding="utf-8") as f:
            json.dump(new_state, f, ensure_ascii=False, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        summary.update({"file": data_name, "bytes": size, "sha256": digest, "state": "state.json"})
    summary["peakRssKiB"] = _peak_rss_kib()
    summary["seconds"] = round(time.monotonic() - started, 3)
    return summary


def _peak_rss_kib() -> int:
    """This process's own peak RSS in KiB: VmHWM (ru_maxrss carries the exec'ing parent's size)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _snapshot(client: Any, name: str, config: dict[str, Any], state: dict[str, Any] | None,
              writer: RowWriter) -> tuple[dict[str, Any], dict[str, Any]]:
    items = client.get_cohorts() if name == "cohorts" else client.get_feature_flags()
    for item in sorted(items, key=lambda i: (str(i.get("id")),)):
        row = {c: _flat_value(item.get(c)) for c in writer.columns}
        writer.write(row)
    return {"rows": writer.rows, "partial": False, "reason": None, "skippedDuplicates": 0, "watermark": None}, \
        {"watermark": None, "seen": [], "lookback_minutes": None, "since": None}


def _incremental(client: Any, name: str, spec: dict[str, Any], config: dict[str, Any], state: dict[str, Any] | None,
                 writer: RowWriter, columns: list[str], started: float) -> tuple[dict[str, Any], dict[str, Any]]:
    lookback_us = int(config["lookback_minutes"]) * 60_000_000
    until_us = _micros(config["until"])
    watermark: tuple[int, str] | None = None
    if state and state.get("watermark"):
        watermark = (_micros(state["watermark"]["time"]), str(state["watermark"]["id"]))
        start_us = watermark[0] - lookback_us
    else:
        start_us = _micros(state["since"] if state and state.get("since") else config["since"])
    # The ids delivered inside the lookback window, with their times (a heap prunes the old ones).
    seen: dict[str, int] = {}
    heap: list[tuple[int, str]] = []
    for t, i in (state or {}).get("seen", []):
        us = _micros(t)
        seen[str(i)] = us
        heap.append((us, str(i)))
    heapq.heapify(heap)
    listed = set(columns)
    deadline = started + float(config.get("deadline_seconds") or 1e9)
    max_rows = config.get("max_rows")
    # The file must fit where it is written (the sandbox's workspace) and under the run's artifact
    # limit: the run ends as partial ("size") before either, and the next run continues. The
    # bytes not yet flushed (text, buffer and gzip's) are under SIZE_SLACK.
    max_bytes = config.get("max_bytes")
    partial, reason, retry_after = False, None, None
    skipped = 0
    best = watermark
    where = ["1 = 1"]
    values: dict[str, Any] = {}
    if name == "events" and config.get("events"):
        where.append("event IN {event_names}")
        values["event_names"] = sorted(config["events"])
    select = (f"SELECT {', '.join(spec['select'])}, {spec['time_key']}, {spec['id_key']} FROM {spec['table']} "
              f"WHERE {' AND '.join(where)}")
    rows: Iterator[dict[str, Any]] = client._export_pages(select, values, spec["names"], start_us, until_us,
                                                            int(config.get("page_size") or 10_000), False,
                                                            time_key=spec["time_key"], id_key=spec["id_key"])
    try:
        for item in rows:
            ident = str(item[spec["id"]])
            when = _micros(item[spec["time"]])
            if ident in seen:
                skipped += 1
                continue
            row: dict[str, Any] = {}
            for c in spec["fixed"]:
                row[c] = item.get(c)
            row[spec["time"]] = _iso(when)
            unlisted: dict[str, Any] = {}
            for prefix, _kind, field in spec["property_groups"]:
                _flatten(prefix, item.get(field), row, listed, unlisted)
            row[UNLISTED] = json.dumps(unlisted, ensure_ascii=False, separators=(",", ":"), sort_keys=True) if unlisted else None
            writer.write(row)
            seen[ident] = when
            heapq.heappush(heap, (when, ident))
            if best is None or (when, ident) > best:
                best = (when, ident)
            floor = best[0] - lookback_us
            while heap and heap[0][0] < floor:
                _, old = heapq.heappop(heap)
                if seen.get(old, floor) < floor:
                    del seen[old]
            if max_rows and writer.rows >= max_rows:
                partial, reason = True, "max_rows"
                break
            if max_bytes and writer.raw.size + SIZE_SLACK >= max_bytes:
                partial, reason = True, "size"
                break
            if time.monotonic() > deadline:
                partial, reason = True, "deadline"
                break
    except RateLimitError as err:
        # PostHog's query budget: end with what is written; the next run continues from here.
        partial, reason, retry_after = True, "throttled", getattr(err, "retry_after", None)
        print(f"posthog_driver: PostHog throttled the extraction; {writer.rows} rows kept, the next run continues.",
              file=sys.stderr)
    except (ServerError, ConnectionFailedError, RequestTimeoutError) as err:
        if writer.rows == 0:
            raise
        partial, reason = True, "error"
        print(f"posthog_driver: {err} The {writer.rows} rows so far are kept; the next run continues.", file=sys.stderr)
    finally:
        close = getattr(rows, "close", None)
        if close:
            close()
    floor = best[0] - lookback_us if best else start_us
    kept = sorted((t, i) for i, t in seen.items() if t >= floor)
    new_state = {"watermark": {"time": _iso(best[0]), "id": best[1]} if best else None,
                 "seen": [[_iso(t), i] for t, i in kept], "lookback_minutes": int(config["lookback_minutes"]),
                 "since": (state or {}).get("since") or config["since"]}
    summary = {"rows": writer.rows, "partial": partial, "reason": reason, "retryAfter": retry_after,
               "skippedDuplicates": skipped, "watermark": new_state["watermark"], "from": _iso(start_us),
               "until": config["until"], "seenInWindow": len(kept)}
    return summary, new_state


def list_resources(config: dict[str, Any]) -> dict[str, Any]:
    from .client import PostHogClient

    with PostHogClient(max_retry_wait=float(config.get("max_wait", 10))) as client:
        return discover(client)


def main() -> None:
    """The run's script: reads extract.json, prints one JSON document."""
    from . import emit

    with open("extract.json", encoding="utf-8") as f:
        config = json.load(f)
    emit(list_resources(config) if config.get("list") else run(config))
