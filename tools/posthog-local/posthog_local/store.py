"""The in-memory DuckDB database of one server: loaded from a data directory at start, written
by capture (writes stay in memory, so many servers can share one data directory)."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import re
import threading
import time
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from .dataset import EVENT_FILES
from .generator import UUID_NAMESPACE
from .hogql import EVENTS_WITH_PERSON, HogQLError, translate
from .timeutil import iso_datetime, iso_ms

QUERY_TIMEOUT_S = 60.0  # HogQLGlobalSettings.max_execution_time (posthog/hogql/constants.py)

_USER_ERRORS: tuple[type[BaseException], ...] = (
    duckdb.BinderException, duckdb.ParserException, duckdb.ConversionException,
    duckdb.InvalidInputException, duckdb.CatalogException, duckdb.OutOfRangeException,
    duckdb.NotImplementedException, duckdb.TypeMismatchException, duckdb.SyntaxException,
    duckdb.InvalidTypeException, duckdb.PermissionException,
)


class QueryFailed(Exception):
    """The engine failed for a reason that is not the query's fault (HTTP 500)."""


@dataclass
class CapturedEvent:
    uuid: str
    event: str
    distinct_id: str
    properties: dict[str, Any]
    timestamp: dt.datetime  # naive UTC
    set_props: dict[str, Any]
    set_once_props: dict[str, Any]


def _tz_name(name: str) -> str:
    """A time zone name safe to put in SET TimeZone (validated when the project was configured)."""
    if not re.fullmatch(r"[A-Za-z0-9_+\-/]{1,64}", name):
        raise ValueError(f"not a time zone name: {name!r}")
    return name


def _type_name(duck_type: str, timezone: str = "UTC") -> str:
    t = duck_type.upper()
    if t.endswith("[]"):
        return f"Array({_type_name(t[:-2], timezone)})"
    if t == "TIMESTAMP WITH TIME ZONE":
        return f"DateTime64(6, '{timezone}')"
    simple = {"VARCHAR": "String", "BIGINT": "Int64", "INTEGER": "Int32", "SMALLINT": "Int16",
              "TINYINT": "Int8", "UBIGINT": "UInt64", "UINTEGER": "UInt32", "HUGEINT": "Int64",
              "DOUBLE": "Float64", "FLOAT": "Float32", "BOOLEAN": "Bool", "DATE": "Date",
              "TIMESTAMP": "DateTime64(6, 'UTC')", "TIMESTAMP WITH TIME ZONE": "DateTime64(6, 'UTC')",
              "UUID": "UUID", "INTERVAL": "IntervalSecond", "NULL": "Nullable(Nothing)",
              '"NULL"': "Nullable(Nothing)", "JSON": "String"}
    if t in simple:
        return simple[t]
    if t.startswith("DECIMAL"):
        return "Float64"
    if t.startswith("STRUCT"):
        return "Tuple"
    if t.startswith("MAP"):
        return "Map"
    return "String"


def format_value(value: Any) -> Any:
    """A DuckDB value as PostHog puts it in JSON results."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return iso_datetime(value)
        text = value.isoformat(timespec="microseconds")  # in the query's time zone, with its offset
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, uuidlib.UUID):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [format_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): format_value(v) for k, v in value.items()}
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    if isinstance(value, dt.time):
        return value.isoformat()
    return str(value)


def _clean_engine_message(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    kept = [ln for ln in lines if not ln.startswith("LINE ") and set(ln) != {"^"}]
    text = " ".join(kept[:2]) if kept else type(err).__name__
    return text[:500]


class Store:
    def __init__(self, data_dir: Path, meta: dict[str, Any], threads: int = 2) -> None:
        self.data_dir = data_dir
        self.meta = meta
        self.reference_ms = int(meta["reference_ms"])
        ref = dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=self.reference_ms)
        # now() is the pinned reference time, an instant; today() is its date in the session's
        # (the project's) time zone, as ClickHouse's today() in the query's time zone.
        self.now_sql = f"TIMESTAMPTZ '{ref.strftime('%Y-%m-%d %H:%M:%S.%f')}+00'"
        self.today_sql = f"CAST({self.now_sql} AS DATE)"
        self.write_lock = threading.RLock()
        self._cursor_lock = threading.Lock()
        self.con = duckdb.connect(":memory:", config={"threads": threads})
        self._load()
        # All writes go through this one cursor, under write_lock; reads get their own cursor.
        self.writer = self.con.cursor()
        self.persons: dict[str, dict[str, Any]] = {}
        self.person_of: dict[str, str] = {}
        self.distinct_ids_of: dict[str, list[str]] = {}
        self._load_persons()
        self._running: set[duckdb.DuckDBPyConnection] = set()
        self._running_lock = threading.Lock()
        self.closing = False
        self.definitions_version = 0
        self._definitions_cache: dict[str, tuple[int, Any]] = {}
        # PostHog's events table is a ReplacingMergeTree ordered by (team_id, toDate(timestamp), event,
        # cityHash64(distinct_id), cityHash64(uuid)) (posthog/models/event/sql.py, EVENTS_TABLE_SQL):
        # a re-sent event is a second row, collapsed only by a background merge (never when its
        # timestamp differs), and queries without FINAL see both. On: store re-sent events too.
        self.keep_duplicate_uuids = False

    # -- loading -------------------------------------------------------------------------------
    def _load(self) -> None:
        files = [str(self.data_dir / n) for n in EVENT_FILES if (self.data_dir / n).exists()]
        con = self.con
        # Time columns are instants (TIMESTAMPTZ, like ClickHouse's DateTime64(6, 'UTC')): each
        # query's session time zone (the project's) then decides dates, day and week starts.
        con.execute("SET GLOBAL TimeZone = 'UTC'")
        con.execute("SET GLOBAL default_null_order = 'nulls_last'")
        con.execute("CREATE TABLE events AS SELECT * REPLACE (timezone('UTC', timestamp) AS timestamp, "
                    "timezone('UTC', created_at) AS created_at) FROM read_parquet($f) ORDER BY timestamp, uuid",
                    {"f": files})
        con.execute("CREATE TABLE persons AS SELECT id, timezone('UTC', created_at) AS created_at, properties, "
                    "is_identified FROM read_parquet($f)", {"f": str(self.data_dir / "persons.parquet")})
        con.execute("CREATE TABLE person_distinct_ids AS SELECT distinct_id, id AS person_id "
                    "FROM read_parquet($f)", {"f": str(self.data_dir / "persons.parquet")})
        con.execute("CREATE TABLE cohort_people (cohort_id BIGINT, person_id VARCHAR)")
        con.execute(f"CREATE VIEW {EVENTS_WITH_PERSON} AS SELECT e.*, p.properties AS __person_properties, "
                    "p.created_at AS __person_created_at FROM events e LEFT JOIN persons p ON p.id = e.person_id")
        # From here on HogQL cannot reach files, whatever it tries. (The configuration stays
        # unlocked so each query can set its session's time zone; HogQL cannot issue SET: PostHog's
        # parser admits one SELECT, and only registry functions reach DuckDB.)
        con.execute("SET enable_external_access = false")

    def _load_persons(self) -> None:
        rows = self.con.execute(
            "SELECT p.id, p.created_at, p.properties, p.is_identified, d.distinct_id FROM persons p "
            "JOIN person_distinct_ids d ON d.person_id = p.id ORDER BY p.created_at, p.id").fetchall()
        for pid, created, props, identified, did in rows:
            person = self.persons.get(pid)
            if person is None:
                person = {"id": pid, "created_at": created, "properties": json.loads(props),
                          "is_identified": bool(identified)}
                self.persons[pid] = person
            self.person_of[did] = pid
            self.distinct_ids_of.setdefault(pid, []).append(did)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own for one reader thread."""
        with self._cursor_lock:
            return self.con.cursor()

    def add_cohort_members(self, cohort_id: int, person_ids: list[str]) -> int:
        with self.write_lock:
            existing = {r[0] for r in self.writer.execute(
                "SELECT person_id FROM cohort_people WHERE cohort_id = $c", {"c": cohort_id}).fetchall()}
            new = [p for p in dict.fromkeys(person_ids) if p not in existing]
            if new:
                self.writer.execute("INSERT INTO cohort_people SELECT $c, unnest($p)",
                                 {"c": cohort_id, "p": new})
            return len(existing) + len(new)

    def cohort_members(self, cohort_id: int) -> list[str]:
        cur = self.cursor()
        try:
            return [r[0] for r in cur.execute(
                "SELECT person_id FROM cohort_people WHERE cohort_id = $c ORDER BY person_id",
                {"c": cohort_id}).fetchall()]
        finally:
            cur.close()

    # -- HogQL ---------------------------------------------------------------------------------
    def run_hogql(self, query: str, values: dict[str, Any] | None, *, timezone: str = "UTC",
                  week_start_day: int = 1, timeout_s: float = QUERY_TIMEOUT_S) -> dict[str, Any]:
        """Run one HogQL SELECT in `timezone` (the project's, or UTC when the query's modifiers say
        convertToProjectTimezone: false). PostHog's answer shape: results, columns, types, and
        hasMore/limit/offset only when the query had no LIMIT of its own (HogQLHasMorePaginator)."""
        started = time.monotonic()
        tr = translate(query, values, self.now_sql, self.today_sql, week_start_day=week_start_day)
        cur = self.cursor()
        with self._running_lock:
            self._running.add(cur)
        timer = threading.Timer(timeout_s, cur.interrupt)
        timer.daemon = True
        try:
            cur.execute(f"SET TimeZone = '{_tz_name(timezone)}'")
            timer.start()
            result = cur.execute(tr.sql, tr.params or None)
            description = result.description or []
            rows = result.fetchall()
        except duckdb.InterruptException as err:
            if self.closing:
                raise QueryFailed("the server is stopping") from err
            raise HogQLError(f"Query exceeded the maximum execution time of {timeout_s:g} seconds: narrow it "
                             "(a shorter time range, fewer columns) or run it asynchronously",
                             "timeout_exceeded") from err
        except _USER_ERRORS as err:
            raise HogQLError(_clean_engine_message(err), "hogql_query_error") from err
        except duckdb.Error as err:
            raise QueryFailed(type(err).__name__) from err
        finally:
            timer.cancel()
            with self._running_lock:
                self._running.discard(cur)
            cur.close()
        has_more = len(rows) > tr.limit
        rows = rows[: tr.limit]
        names = tr.columns if tr.columns is not None and len(tr.columns) == len(description) \
            else [d[0] for d in description]
        types = [[name, _type_name(str(d[1]), timezone)] for name, d in zip(names, description, strict=True)]
        elapsed = time.monotonic() - started
        paged = not tr.has_explicit_limit
        return {
            "results": [[format_value(v) for v in row] for row in rows],
            "columns": names,
            "types": types,
            "hasMore": has_more if paged else None,
            "limit": tr.limit if paged else None,
            "offset": 0 if paged else None,
            "hogql": query,
            "timings": [{"k": "./posthog_local/execute", "t": round(elapsed, 6)}],
            "error": None,
            "query_status": None,
            "is_cached": False,
            "timezone": timezone,
        }

    def interrupt_all(self) -> None:
        """Stops every running query (the server is shutting down)."""
        self.closing = True
        with self._running_lock:
            running = list(self._running)
        for cur in running:
            try:
                cur.interrupt()
            except duckdb.Error:
                pass

    # -- capture -------------------------------------------------------------------------------
    def _ensure_person(self, distinct_id: str, set_props: dict[str, Any],
                       set_once: dict[str, Any], when: dt.datetime) -> str:
        pid = self.person_of.get(distinct_id)
        if pid is None:
            pid = str(uuidlib.uuid5(UUID_NAMESPACE, f"captured:{distinct_id}"))
            props = {**set_once, **set_props}
            created = when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when
            person: dict[str, Any] = {"id": pid, "created_at": created, "properties": props,
                                      "is_identified": False}
            self.persons[pid] = person
            self.person_of[distinct_id] = pid
            self.distinct_ids_of.setdefault(pid, []).append(distinct_id)
            self.writer.execute("INSERT INTO persons VALUES ($id, $c, $p, false)",
                             {"id": pid, "c": when, "p": json.dumps(props)})
            self.writer.execute("INSERT INTO person_distinct_ids VALUES ($d, $id)",
                                {"d": distinct_id, "id": pid})
            return pid
        if set_props or set_once:
            person = self.persons[pid]
            props = dict(person["properties"])
            changed = False
            for key, value in set_once.items():
                if key not in props:
                    props[key] = value
                    changed = True
            for key, value in set_props.items():
                if props.get(key) != value or key not in props:
                    props[key] = value
                    changed = True
            if changed:
                person["properties"] = props
                self.writer.execute("UPDATE persons SET properties = $p WHERE id = $id",
                                 {"p": json.dumps(props), "id": pid})
        return pid

    def link_distinct_id(self, distinct_id: str, other: str) -> None:
        """`$identify`: attach an anonymous id to the person of distinct_id when it is new."""
        with self.write_lock:
            pid = self.person_of.get(distinct_id)
            if pid is None or other in self.person_of:
                return
            self.person_of[other] = pid
            self.distinct_ids_of.setdefault(pid, []).append(other)
            self.writer.execute("INSERT INTO person_distinct_ids VALUES ($d, $id)", {"d": other, "id": pid})

    def insert_events(self, events: list[CapturedEvent]) -> int:
        """Store events, skipping any whose uuid is already stored (unless keep_duplicate_uuids).
        Returns how many were stored."""
        if not events:
            return 0
        with self.write_lock:
            uuids = [e.uuid for e in events]
            seen = {r[0] for r in self.writer.execute(
                "SELECT uuid FROM events WHERE list_contains($u, uuid)", {"u": uuids}).fetchall()}
            fresh: list[CapturedEvent] = []
            for e in events:
                if e.uuid in seen and not self.keep_duplicate_uuids:
                    continue
                seen.add(e.uuid)
                fresh.append(e)
            if not fresh:
                return 0
            created = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
            columns: dict[str, list[Any]] = {k: [] for k in
                                             ("u", "e", "p", "t", "d", "pid", "s")}
            for e in fresh:
                pid = self._ensure_person(e.distinct_id, e.set_props, e.set_once_props, e.timestamp)
                columns["u"].append(e.uuid)
                columns["e"].append(e.event)
                columns["p"].append(json.dumps(e.properties, separators=(",", ":"), ensure_ascii=False))
                columns["t"].append(e.timestamp)
                columns["d"].append(e.distinct_id)
                columns["pid"].append(pid)
                session = e.properties.get("$session_id")
                columns["s"].append(session if isinstance(session, str) else "")
            self.writer.execute(
                "INSERT INTO events SELECT unnest($u), unnest($e), unnest($p), "
                "CAST(unnest($t) AS TIMESTAMP), unnest($d), unnest($pid), '', "
                "CAST($created AS TIMESTAMP), unnest($s)",
                {**columns, "created": created})
            self.definitions_version += 1
            return len(fresh)

    # -- definitions ---------------------------------------------------------------------------
    def _cached(self, key: str, build: Any) -> Any:
        hit = self._definitions_cache.get(key)
        if hit is not None and hit[0] == self.definitions_version:
            return hit[1]
        value = build()
        self._definitions_cache[key] = (self.definitions_version, value)
        return value

    def event_definitions(self) -> list[dict[str, Any]]:
        def build() -> list[dict[str, Any]]:
            cur = self.cursor()
            try:
                rows = cur.execute(
                    f"SELECT event, count(*) FILTER (WHERE timestamp >= {self.now_sql} - INTERVAL 30 DAY "
                    f"AND timestamp < {self.now_sql}), max(timestamp), min(timestamp) "
                    "FROM events GROUP BY event ORDER BY event").fetchall()
            finally:
                cur.close()
            return [{"id": str(uuidlib.uuid5(UUID_NAMESPACE, f"event:{name}")), "name": name,
                     "volume_30_day": volume, "query_usage_30_day": 0,
                     "last_seen_at": iso_datetime(last), "created_at": iso_datetime(first),
                     "description": None, "tags": [], "verified": False,
                     "is_action": False} for name, volume, last, first in rows]
        return self._cached("events", build)

    def property_definitions(self, kind: str) -> list[dict[str, Any]]:
        def build() -> list[dict[str, Any]]:
            cur = self.cursor()
            try:
                table = "persons" if kind == "person" else "events"
                pointer = "'/' || replace(replace(k, '~', '~0'), '/', '~1')"
                rows = cur.execute(
                    f"SELECT k, any_value(json_type(properties, {pointer})), count(*) "
                    f"FROM (SELECT properties, unnest(json_keys(properties)) AS k FROM {table}) "
                    "GROUP BY k ORDER BY k").fetchall()
            finally:
                cur.close()
            kinds = {"VARCHAR": "String", "BIGINT": "Numeric", "UBIGINT": "Numeric",
                     "DOUBLE": "Numeric", "BOOLEAN": "Boolean"}
            out = []
            for name, json_type, count in rows:
                ptype = kinds.get(str(json_type), "String")
                if name in ("signup_date",):
                    ptype = "DateTime"
                out.append({"id": str(uuidlib.uuid5(UUID_NAMESPACE, f"{kind}-prop:{name}")),
                            "name": name, "type": 2 if kind == "person" else 1,
                            "property_type": ptype, "is_numerical": ptype == "Numeric",
                            "is_seen_on_filtered_events": None, "tags": [], "description": None,
                            "query_usage_30_day": 0, "volume_30_day": count})
            return out
        return self._cached(f"props:{kind}", build)

    def close(self, wait_s: float = 0.5) -> bool:
        """Interrupts running queries and closes the database once they have unwound (at most
        `wait_s`). False when a query was still inside DuckDB: the connection is then left open
        (closing it under a running query aborts the process); the caller exits anyway."""
        self.interrupt_all()
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            with self._running_lock:
                if not self._running:
                    break
            time.sleep(0.01)
        else:
            return False
        self.writer.close()
        self.con.close()
        return True


def person_json(person: dict[str, Any], distinct_ids: list[str]) -> dict[str, Any]:
    created = person["created_at"]
    created_text = iso_datetime(created) if isinstance(created, dt.datetime) else iso_ms(int(created))
    name = person["properties"].get("email") or (distinct_ids[0] if distinct_ids else person["id"])
    return {"id": person["id"], "uuid": person["id"], "name": name,
            "distinct_ids": list(distinct_ids), "properties": person["properties"],
            "created_at": created_text, "is_identified": person.get("is_identified", False),
            "last_seen_at": None}
