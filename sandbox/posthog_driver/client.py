"""PostHogClient: the driver contract (list_objects, get_fields, query) and PostHog operations.

Private API calls (`/api/projects/{id}/…`) carry the personal key as a Bearer header; capture and
`/flags` carry the project key in the body, on the ingestion host. Which calls are retried is
decided per call (see transport.py): reads, the read-only query and /flags POSTs, and capture (each
event carries a uuid PostHog deduplicates on) are; creating a cohort is retried only on 429 or
when nothing was sent.
"""
from __future__ import annotations

import os
import time

from . import _log, _progress
from .config import Settings, check_refresh
from .errors import AuthenticationError, PostHogError, QueryError, ValidationError, clean_detail
from .schema import OBJECTS, PROPERTY_TYPES
from .transport import Transport

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable, Iterator, Mapping

DEFAULT_EXPORT_COLUMNS = ("uuid", "event", "distinct_id", "timestamp", "properties")
MAX_PAGE = 50_000  # PostHog caps a query's LIMIT here
_LIST_PAGE = 100
_IDS_PER_QUERY = 5_000
_PERSONS_PER_PATCH = 1_000  # PostHog: more per add_persons_to_static_cohort is a 400 "List size exceeds limit"
_BATCH_BYTES = 4 * 1024 * 1024  # well under PostHog's 20 MB body limit
_GZIP_OVER = 64 * 1024


class QueryResult(dict):
    """PostHog's query answer (`columns`, `results` in column order, `types`, `hasMore`, …) with
    `.rows`: the results as dicts keyed by column name (built on first use)."""

    @property
    def rows(self) -> list[dict[str, Any]]:
        cached = self.__dict__.get("_rows")
        if cached is None:
            columns = self.get("columns") or []
            cached = [dict(zip(columns, row)) for row in self.get("results") or []]
            self.__dict__["_rows"] = cached
        return cached

    @property
    def columns(self) -> list[str]:
        return list(self.get("columns") or [])

    @property
    def types(self) -> list[Any]:
        return list(self.get("types") or [])


def _uuid4() -> str:
    """A random (version 4) UUID without importing `uuid` (~6 ms)."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _check_uuid(value: Any) -> str:
    text = str(value).strip().lower()
    parts = text.split("-")
    if len(text) != 36 or [len(p) for p in parts] != [8, 4, 4, 4, 12] or \
            any(c not in "0123456789abcdef" for c in text.replace("-", "")):
        raise ValidationError("An event uuid must look like 0190a1b2-c3d4-4e5f-8a9b-0c1d2e3f4a5b.")
    return text


def _json_value(value: Any) -> Any:
    """A query value as JSON: datetimes as ISO-8601 UTC (compare with toDateTime({v})), dates as
    YYYY-MM-DD, tuples and sets as lists, UUIDs and Decimals as text and floats."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_json_value(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    import datetime as dt

    if isinstance(value, dt.datetime):
        from .hogql import iso_utc

        return iso_utc(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    name = type(value).__name__
    if name == "UUID":
        return str(value)
    if name == "Decimal":
        return float(value)
    raise ValidationError(f"A query value of type {name} cannot be sent: use str, int, float, bool, None, "
                          f"a date/datetime or a list of those.")


def _name_ok(name: Any) -> bool:
    return isinstance(name, str) and bool(name) and len(name) <= 64 and (name[0].isalpha() or name[0] == "_") \
        and all(c.isalnum() or c == "_" for c in name) and name.isascii()


class PostHogClient:
    """PostHog's API for scripts in a sandbox. Configured from POSTHOG_* variables or arguments
    (see config.py); use it as a context manager so connections are closed."""

    def __init__(self, api_url: str | None = None, personal_api_key: str | None = None,
                 project_api_key: str | None = None, project_id: str | int | None = None,
                 ingest_url: str | None = None, timeout: float | None = None, max_retries: int | None = None,
                 max_retry_wait: float | None = None, *, backoff_base: float | None = None,
                 backoff_cap: float | None = None, refresh: str | None = None, query_rate: str | None = None) -> None:
        """`max_retry_wait`: seconds one call may wait for PostHog's limits and retries (default 900,
        POSTHOG_MAX_WAIT). `refresh`: what queries ask of PostHog's cache (default force_blocking,
        always fresh; `blocking` accepts a cached answer; POSTHOG_QUERY_REFRESH). `query_rate`: the
        query budget when known (`120/hour`, POSTHOG_QUERY_RATE): queries are paced to stay inside it."""
        self.settings = Settings.resolve(api_url, personal_api_key, project_api_key, project_id, ingest_url,
                                         timeout, max_retries, max_retry_wait, backoff_base, backoff_cap,
                                         refresh, query_rate)
        s = self.settings
        self._http = Transport(timeout=s.timeout, max_retries=s.max_retries, max_retry_wait=s.max_retry_wait,
                               backoff_base=s.backoff_base, backoff_cap=s.backoff_cap, secrets=s.secrets,
                               egress_socket=s.egress_socket)
        self._sent: list[float] = []  # when recent queries were sent (pacing)

    def __repr__(self) -> str:
        return f"PostHogClient({self.settings!r})"

    def __enter__(self) -> "PostHogClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing --------------------------------------------------------------------------------
    def _auth(self) -> dict[str, str]:
        """The private API's Authorization header; none when the egress adds it (the key never
        enters a sandbox under sandbox-runner's `posthog` policy or E2B's network rules)."""
        key = self.settings.personal_api_key
        if self.settings.key_at_egress:
            return {}
        if not key:
            raise AuthenticationError("POSTHOG_PERSONAL_API_KEY is not set: the private API needs a personal "
                                      "API key (phx_…).")
        return {"Authorization": f"Bearer {key}"}

    def _api(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None,
             idempotent: bool | None = None, kind: str = "api", max_retries: int | None = None) -> Any:
        headers = self._auth()
        import json

        data = None if body is None else json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        response = self._http.request(
            method, self.settings.api_url, f"/api/projects/{self.settings.project_id}/{path}", params=params,
            body=data, headers=headers, kind=kind, max_retries=max_retries,
            idempotent=method in ("GET", "HEAD", "PUT", "DELETE") if idempotent is None else idempotent)
        return response.json()

    def _ingest(self, path: str, body: bytes, *, kind: str, gzip: bool = False,
                max_retries: int | None = None) -> Any:
        headers = {"Content-Encoding": "gzip"} if gzip else {}
        # Idempotent: /flags only reads; captured events carry uuids PostHog deduplicates on.
        response = self._http.request("POST", self.settings.ingest_url, path, body=body, headers=headers,
                                      idempotent=True, kind=kind, max_retries=max_retries)
        try:
            return response.json()
        except PostHogError:
            return None  # capture may answer with anything on success; the status is what counts

    def _project_key(self) -> str:
        key = self.settings.project_api_key
        if not key:
            raise AuthenticationError("POSTHOG_PROJECT_API_KEY is not set: capture and flag evaluation need the "
                                      "project API key (phc_…).")
        return key

    def _list(self, path: str, params: Mapping[str, Any] | None = None, limit: int | None = None) -> list[Any]:
        """Every item of a paginated list (or the first `limit`), following PostHog's `next`."""
        from urllib.parse import parse_qsl, urlsplit

        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise ValidationError("limit must be a whole number of at least 1.")
        query: dict[str, Any] = {k: v for k, v in (params or {}).items() if v is not None}
        query["limit"] = min(limit, _LIST_PAGE) if limit else _LIST_PAGE
        out: list[Any] = []
        for _ in range(100_000):
            doc = self._api("GET", path, params=query)
            if isinstance(doc, list):  # some endpoints answer a bare list
                out.extend(doc)
                break
            results = doc.get("results") if isinstance(doc, dict) else None
            if not isinstance(results, list):
                raise PostHogError(f"PostHog answered /{path} without a list of results.")
            out.extend(results)
            following = doc.get("next")
            if not results or not following or (limit and len(out) >= limit):
                break
            # Same path on our host, with the next page's parameters (offset or cursor).
            query = dict(parse_qsl(urlsplit(str(following)).query, keep_blank_values=True))
            query.pop("personal_api_key", None)
        return out[:limit] if limit else out

    # -- the driver contract ---------------------------------------------------------------------
    def list_objects(self) -> list[str]:
        """The objects this driver reads: HogQL tables (events, persons, …) and API resources
        (cohorts, insights, feature_flags, experiments, …)."""
        return list(OBJECTS)

    def get_fields(self, name: str, include_properties: bool = True) -> dict[str, str]:
        """Field name → type. For events and persons, the project's known properties are added as
        `properties.<name>` (one request; `include_properties=False` skips it)."""
        if name not in OBJECTS:
            raise ValidationError("Unknown object: list_objects() names the ones there are.")
        fields = dict(OBJECTS[name])
        kind = PROPERTY_TYPES.get(name)
        if kind and include_properties:
            for d in self.get_property_definitions(kind):
                if isinstance(d, dict) and isinstance(d.get("name"), str):
                    fields[f"properties.{d['name']}"] = str(d.get("property_type") or "String")
        return fields

    def query(self, hogql: str, values: Mapping[str, Any] | None = None, name: str | None = None, *,
              refresh: str | None = None, timeout: float | None = None) -> QueryResult:
        """Runs HogQL. `values` are bound by PostHog to `{name}` placeholders: never paste a value
        into the text. Returns PostHog's answer (`columns`, `results`, `types`, `hasMore`…) as a
        QueryResult whose `.rows` are dicts. Without a LIMIT PostHog returns at most 100 rows; any
        LIMIT is capped at 50 000 (use export_events for more).

        `refresh`: `force_blocking` (the default: computed now), `blocking` (PostHog may answer from
        its cache, up to ~5 minutes old), `async`/`force_async` (PostHog runs it in the background;
        the driver polls). `timeout`: seconds this query may take in all; above ~55 s (PostHog
        Cloud's gateway ends synchronous answers at about 60 s) it runs in async mode and is polled
        until then."""
        if not isinstance(hogql, str) or not hogql.strip():
            raise ValidationError("query() needs HogQL text.")
        mode = check_refresh(refresh) if refresh is not None else self.settings.refresh
        if timeout is not None and (not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0):
            raise ValidationError("timeout must be a number of seconds above 0.")
        long_running = timeout is not None and timeout > self.settings.sync_query_limit
        if long_running and mode == "force_blocking":
            mode = "force_async"
        elif long_running and mode == "blocking":
            mode = "async"
        inner: dict[str, Any] = {"kind": "HogQLQuery", "query": hogql}
        if values:
            if not all(_name_ok(k) for k in values):
                raise ValidationError("Placeholder names are letters, digits and _ (starting with a letter or _).")
            inner["values"] = {k: _json_value(v) for k, v in values.items()}
        body: dict[str, Any] = {"query": inner, "refresh": mode}
        if name:
            body["name"] = str(name)[:200]
        started = time.monotonic()
        self._pace()
        doc = self._api("POST", "query/", body=body, idempotent=True, kind="query")
        deadline = started + (timeout if timeout is not None else max(60.0, self.settings.timeout))
        doc = self._await_query(doc, deadline)
        if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
            raise PostHogError("PostHog answered the query without results; try again.")
        if doc.get("error"):
            detail = clean_detail(str(doc["error"]), self.settings.secrets)
            raise QueryError(f"PostHog could not run the HogQL query: {detail}", 400, detail=detail)
        _progress.add("queries")
        return QueryResult(doc)

    def _pace(self) -> None:
        """With a known budget (query_rate), waits until one more query fits in the window."""
        rate = self.settings.query_rate
        if rate is None:
            return
        queries, period = rate
        now = time.monotonic()
        self._sent = [t for t in self._sent if t > now - period]
        if len(self._sent) >= queries:
            # PostHog times a query when it arrives, a little after we send it: keep a margin
            delay = self._sent[0] + period + min(1.0, 0.1 * period) - now
            if delay > self.settings.max_retry_wait:
                from .errors import RateLimitError

                raise RateLimitError(f"The query budget ({queries} per {period:g} s) is spent: the next query could "
                                     f"start in {delay:.0f} s, past the {self.settings.max_retry_wait:g} s this call may "
                                     f"wait (max_retry_wait, POSTHOG_MAX_WAIT); try later or allow a longer wait.",
                                     delay)
            if delay > 0:
                _log.log(_log.INFO, "pacing: waiting %.1f s to stay within %d queries per %g s", delay, queries, period)
                if delay >= 1.0:
                    import sys

                    sys.stderr.write(f"posthog_driver: pacing queries to stay within {queries} per {period:g} s; "
                                     f"waiting {delay:.0f} s.\n")
                    sys.stderr.flush()
                    _progress.waiting(delay, f"pacing to {queries} queries per {period:g} s")
                time.sleep(delay)
                _progress.waiting(0)
            now = time.monotonic()
            self._sent = [t for t in self._sent if t > now - period]
        self._sent.append(time.monotonic())

    def _await_query(self, doc: Any, deadline: float) -> Any:
        """Waits for a query PostHog runs asynchronously (an answer with `query_status` not
        complete): polls GET query/{id}/ until it is done or the caller's deadline passes."""
        status = doc.get("query_status") if isinstance(doc, dict) else None
        if not isinstance(status, dict) or isinstance(doc.get("results"), list):
            return doc
        if status.get("complete"):  # already done when PostHog answered
            if status.get("error"):
                detail = clean_detail(str(status.get("error_message") or "unknown error"), self.settings.secrets)
                raise QueryError(f"PostHog could not run the HogQL query: {detail}", 400, detail=detail)
            return status["results"] if isinstance(status.get("results"), dict) else doc
        query_id = status.get("id")
        if not isinstance(query_id, str) or not query_id.replace("-", "").isalnum():
            raise PostHogError("PostHog queued the query without an id to follow; try again.")
        _log.log(_log.INFO, "query %s runs asynchronously; polling its status", query_id)
        delay = 0.1
        polls = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(delay, left))
            delay = min(delay * 2, 2.0)
            polls += 1
            response = self._http.request(
                "GET", self.settings.api_url, f"/api/projects/{self.settings.project_id}/query/{query_id}/",
                headers=self._auth(), idempotent=True, kind="query",
                accept=(400, 500))
            polled = response.json()
            status = polled.get("query_status", polled) if isinstance(polled, dict) else {}
            if response.status == 500 or (status.get("complete") and status.get("error") and response.status != 400
                                          and not status.get("error_message")):
                raise PostHogError(f"PostHog failed while running query {query_id} (HTTP {response.status}); try again.",
                                   response.status)
            if status.get("complete"):
                if status.get("error"):
                    detail = clean_detail(str(status.get("error_message") or "unknown error"), self.settings.secrets)
                    raise QueryError(f"PostHog could not run the HogQL query: {detail}", 400, detail=detail)
                _log.log(_log.INFO, "query %s done after %d polls", query_id, polls)
                results = status.get("results")
                return results if isinstance(results, dict) else polled
        raise PostHogError("PostHog did not finish the query within its deadline; give it a longer timeout or narrow "
                           "the query.")

    def rows(self, hogql: str, values: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """`query` with the rows as dicts keyed by column name."""
        return self.query(hogql, values).rows

    # -- capture ---------------------------------------------------------------------------------
    def _event(self, event: Any, distinct_id: Any, properties: Any, timestamp: Any, uuid: Any) -> dict[str, Any]:
        if not isinstance(event, str) or not event or len(event) > 1000:
            raise ValidationError("Every event needs a name: a non-empty string (at most 1000 characters).")
        props = dict(properties or {}) if properties is None or isinstance(properties, dict) else None
        if props is None:
            raise ValidationError("Event properties must be a dict.")
        if distinct_id is None or distinct_id == "":
            distinct_id = props.get("distinct_id")
        if distinct_id is None or distinct_id == "" or isinstance(distinct_id, (bool, dict, list)):
            raise ValidationError("Every event needs a distinct_id (a non-empty string).")
        out: dict[str, Any] = {"event": event, "distinct_id": str(distinct_id), "properties": props,
                               "uuid": _check_uuid(uuid) if uuid else _uuid4()}
        if timestamp is not None and timestamp != "":
            from .hogql import iso_utc

            out["timestamp"] = iso_utc(timestamp, "event timestamp")
        return out

    def capture_event(self, event: str, distinct_id: str, properties: dict[str, Any] | None = None,
                      timestamp: Any = None, uuid: str | None = None) -> str:
        """Captures one event; returns its uuid (generated when not given, so that a retry cannot
        duplicate it: PostHog deduplicates on it)."""
        import json

        payload = self._event(event, distinct_id, properties, timestamp, uuid)
        payload["api_key"] = self._project_key()
        self._ingest("/i/v0/e/", json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str).encode(),
                     kind="capture")
        return str(payload["uuid"])

    def capture_batch(self, events: Iterable[dict[str, Any]], historical_migration: bool = False,
                      batch_size: int = 500) -> list[str]:
        """Captures events (dicts with `event`, `distinct_id`, `properties`, `timestamp`, `uuid`)
        through /batch/, `batch_size` (and at most ~4 MB) per request, gzipped when large.
        Every event is checked before anything is sent. Returns the uuids, in order."""
        import json

        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or not 0 < batch_size <= 10_000:
            raise ValidationError("batch_size must be a whole number from 1 to 10000.")
        key = self._project_key()
        encoded: list[bytes] = []
        uuids: list[str] = []
        for raw in events:
            if not isinstance(raw, dict):
                raise ValidationError("Each event must be a dict.")
            e = self._event(raw.get("event"), raw.get("distinct_id"), raw.get("properties"), raw.get("timestamp"),
                            raw.get("uuid"))
            for extra in ("$set", "$set_once"):
                if isinstance(raw.get(extra), dict):
                    e[extra] = raw[extra]
            encoded.append(json.dumps(e, separators=(",", ":"), ensure_ascii=False, default=str).encode())
            uuids.append(str(e["uuid"]))
        head = json.dumps({"api_key": key, "historical_migration": bool(historical_migration)},
                          separators=(",", ":")).encode()[:-1] + b',"batch":['
        start = 0
        while start < len(encoded):
            end, size = start, 0
            while end < len(encoded) and end - start < batch_size and (end == start or size + len(encoded[end]) < _BATCH_BYTES):
                size += len(encoded[end]) + 1
                end += 1
            body = head + b",".join(encoded[start:end]) + b"]}"
            gzip = len(body) > _GZIP_OVER
            if gzip:
                import zlib

                packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: gzip framing
                body = packer.compress(body) + packer.flush()
            self._ingest("/batch/", body, kind="capture", gzip=gzip)
            _log.log(_log.INFO, "captured %d events in one batch", end - start)
            start = end
        return uuids

    # -- reads -----------------------------------------------------------------------------------
    def get_insights(self, limit: int | None = 100, search: str | None = None,
                     short_id: str | None = None) -> list[dict[str, Any]]:
        """Saved insights (`id`, `short_id`, `name`, `query`, `result`…)."""
        return self._list("insights/", {"search": search, "short_id": short_id}, limit=limit)

    def get_events(self, days: int = 7, event: str | None = None, distinct_id: str | None = None,
                   limit: int = 100, *, event_names: Iterable[str] | None = None,
                   properties: Mapping[str, Any] | None = None,
                   columns: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Recent events, newest first, through parameterised HogQL: in the last `days` days,
        optionally of one `event` (or any of `event_names`), one `distinct_id`, and with event
        `properties` equal to the given values. `columns` are field names (default: uuid, event,
        distinct_id, timestamp, properties; also `properties.<name>`)."""
        from .hogql import Query

        names = list(columns or DEFAULT_EXPORT_COLUMNS)
        q = Query.select(names).last_days(days)
        if event is not None:
            q.event_is(event)
        if event_names is not None:
            q.event_in(event_names)
        if distinct_id is not None:
            q.distinct_id_is(distinct_id)
        for prop, value in (properties or {}).items():
            q.property_equals(prop, value)
        sql, values = q.order_by("timestamp DESC").limit(limit).build()
        return [dict(zip(names, row)) for row in self.query(sql, values)["results"]]

    def export_events(self, start: Any, end: Any, event_names: Iterable[str] | None = None,
                      page_size: int = 10_000, columns: Iterable[str] | None = None,
                      parse_properties: bool = False) -> Iterator[dict[str, Any]]:
        """Every event with start <= timestamp < end (and, when given, `event` in `event_names`),
        ordered by (timestamp, uuid), yielded row by row as pages arrive: memory stays flat
        whatever the volume.

        Pages by keyset (seek) on (timestamp, uuid), never OFFSET. So that no page makes PostHog
        scan the whole rest of the window, pages are also bounded in time: after the first full
        page the window is walked in slices of about four pages' worth of time (learned from the
        pages, doubled across sparse stretches).

        `columns`: field names as in get_events (the keys of the yielded dicts). `parse_properties`
        turns a `properties` JSON string into a dict. Arguments are checked now; requests start on
        the first iteration."""
        from .hogql import MAX_LIMIT, Query, iso_utc

        if not isinstance(page_size, int) or isinstance(page_size, bool) or not 0 < page_size <= MAX_LIMIT:
            raise ValidationError(f"page_size must be a whole number from 1 to {MAX_LIMIT}.")
        names = list(columns or DEFAULT_EXPORT_COLUMNS)
        if not names:
            raise ValidationError("Export at least one column.")
        builder = Query("SELECT 1")
        refs = [builder.field(n) for n in names]
        start_us, end_us = _micros(iso_utc(start, "start")), _micros(iso_utc(end, "end"))
        if event_names is not None:
            builder.event_in(event_names)
        select = f"SELECT {', '.join(refs)}, timestamp, toString(uuid) FROM events WHERE {builder.where_sql()}"
        return self._export_pages(select, dict(builder.values), names, start_us, end_us, page_size,
                                  parse_properties and "properties" in names)

    def _export_pages(self, select: str, values: dict[str, Any], names: list[str], start_us: int, end_us: int,
                      page_size: int, parse_properties: bool, time_key: str = "timestamp",
                      id_key: str = "toString(uuid)") -> Iterator[dict[str, Any]]:
        """`select` ends with `time_key, id_key` after the named columns; rows come ordered by
        them. The keys are trusted text (extract.py pages persons by created_at, toString(id))."""
        import json

        width = len(names)
        head = select + f" AND {time_key} >= toDateTime({{slice_start}}) AND {time_key} < toDateTime({{slice_end}})"
        seek = (f" AND {time_key} >= toDateTime({{cursor_ts}}) AND ({time_key} > toDateTime({{cursor_ts}})"
                f" OR {id_key} > {{cursor_uuid}})")
        tail = f" ORDER BY {time_key} ASC, {id_key} ASC LIMIT {int(page_size)}"
        lo, hi = start_us, end_us  # the current slice [lo, hi)
        span: int | None = None  # microseconds per slice, once a full page has shown the density
        cursor: tuple[Any, Any] | None = None
        pages = total = slice_rows = 0
        started = time.monotonic()
        while lo < hi:
            bound = {**values, "slice_start": _iso_micros(lo), "slice_end": _iso_micros(hi)}
            if cursor is not None:
                bound["cursor_ts"], bound["cursor_uuid"] = cursor
            result = self.query(head + (seek if cursor is not None else "") + tail, bound)
            rows = result["results"]
            more = bool(result.get("hasMore"))
            del result, bound  # hold one page at a time
            count = len(rows)
            pages += 1
            total += count
            _progress.add("rows", count)
            slice_rows += count
            following: tuple[Any, Any] | None = None
            first_ts = None
            if count:
                first_ts = rows[0][width]
                last = rows[-1]
                following = (last[width], last[width + 1])
                if following == cursor or not isinstance(following[0], str):
                    raise PostHogError("The export made no progress (PostHog returned the same page twice); "
                                       "report this with the time range.")
                for row in rows:
                    item = dict(zip(names, row[:width]))
                    if parse_properties and isinstance(item.get("properties"), str):
                        item["properties"] = json.loads(item["properties"])
                    yield item
                rows = last = row = item = None  # type: ignore[assignment]
            if following is not None and (count >= page_size or more):
                last_us = _micros(following[0])
                span = max(_SLICE_MIN_US, (last_us - _micros(first_ts)) * _PAGES_PER_SLICE)
                if hi - last_us > span:
                    hi = last_us + span  # narrow the slice; the cursor carries on inside it
                cursor = following
                continue
            _log.log(_log.DEBUG, "export: slice done after %d pages, %d rows so far", pages, total)
            if hi >= end_us or span is None:
                break
            if slice_rows < page_size:
                span *= 2  # sparse: widen the next slice
            lo, hi = hi, min(end_us, hi + span)
            cursor, slice_rows = None, 0
        _log.log(_log.INFO, "export: %d rows in %d queries, %.1f s", total, pages, time.monotonic() - started)
        _progress.flush()

    def get_cohorts(self, limit: int | None = None) -> list[dict[str, Any]]:
        return self._list("cohorts/", limit=limit)

    def get_cohort(self, cohort_id: int) -> dict[str, Any]:
        return self._api("GET", f"cohorts/{_int_id(cohort_id, 'cohort id')}/")

    def create_cohort(self, name: str, distinct_ids: Iterable[str], description: str | None = None) -> dict[str, Any]:
        """A static cohort of the persons behind `distinct_ids`: resolves them (HogQL on
        person_distinct_ids), creates the cohort (`is_static`), adds the persons. Returns the
        cohort with `persons_added` and `unresolved` (distinct ids without a person). Creation is
        not retried except on 429 (it is not idempotent); adding persons is."""
        if not isinstance(name, str) or not name.strip() or len(name) > 400:
            raise ValidationError("A cohort needs a name of 1 to 400 characters.")
        ids = list(dict.fromkeys(_text_id(d) for d in _list_arg(distinct_ids, "distinct_ids")))
        person_of: dict[str, str] = {}
        for i in range(0, len(ids), _IDS_PER_QUERY):
            chunk = ids[i:i + _IDS_PER_QUERY]
            answer = self.query("SELECT distinct_id, person_id FROM person_distinct_ids WHERE distinct_id IN {ids} "
                                f"LIMIT {MAX_PAGE}", {"ids": chunk})
            for distinct_id, person_id in answer["results"]:
                if person_id is not None:
                    person_of[str(distinct_id)] = str(person_id)
        person_ids = list(dict.fromkeys(person_of[d] for d in ids if d in person_of))
        cohort = self._api("POST", "cohorts/", body={"name": name, "description": description or "",
                                                     "is_static": True}, idempotent=False)
        if not isinstance(cohort, dict) or "id" not in cohort:
            raise PostHogError("PostHog created the cohort but did not say its id; look for it in PostHog.")
        cohort_id = _int_id(cohort["id"], "cohort id")
        try:
            for i in range(0, len(person_ids), _PERSONS_PER_PATCH):
                self._api("PATCH", f"cohorts/{cohort_id}/add_persons_to_static_cohort/",
                          body={"person_ids": person_ids[i:i + _PERSONS_PER_PATCH]}, idempotent=True)
        except PostHogError as err:
            err.message = f"Cohort {cohort_id} was created but adding its persons failed: {err.message}"
            err.args = (err.message,)
            raise
        cohort["persons_added"] = len(person_ids)
        cohort["count"] = len(person_ids)
        cohort["unresolved"] = len(ids) - len(person_of)
        return cohort

    def get_persons(self, distinct_id: str | None = None, search: str | None = None, limit: int | None = 100,
                    cohort_id: int | None = None) -> list[dict[str, Any]]:
        """Persons (`id`, `distinct_ids`, `properties`, `created_at`…): of one distinct id, matching
        `search` (email, name, distinct id), or the members of a cohort."""
        if cohort_id is not None:
            return self._list(f"cohorts/{_int_id(cohort_id, 'cohort id')}/persons/", limit=limit)
        return self._list("persons/", {"distinct_id": distinct_id, "search": search}, limit=limit)

    def get_feature_flags(self, active: bool | None = None, search: str | None = None,
                          limit: int | None = None) -> list[dict[str, Any]]:
        return self._list("feature_flags/", {"active": active, "search": search}, limit=limit)

    def evaluate_flags(self, distinct_id: str, person_properties: Mapping[str, Any] | None = None,
                       flag_keys: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """Every active flag for this user, as `/flags?v=2` evaluates it: key → {key, enabled,
        variant, value (variant or enabled), payload (decoded), reason, metadata}."""
        import json

        body: dict[str, Any] = {"api_key": self._project_key(), "distinct_id": _text_id(distinct_id)}
        if person_properties:
            body["person_properties"] = dict(person_properties)
        if flag_keys is not None:
            body["flag_keys_to_evaluate"] = [str(k) for k in _list_arg(flag_keys, "flag_keys")]
        answer = self._ingest("/flags?v=2", json.dumps(body, separators=(",", ":"), default=str).encode(),
                              kind="flags")
        if not isinstance(answer, dict):
            raise PostHogError("PostHog answered /flags with something unexpected; check POSTHOG_INGEST_URL.")
        flags = answer.get("flags")
        out: dict[str, dict[str, Any]] = {}
        if isinstance(flags, dict):
            for key, entry in flags.items():
                if isinstance(entry, dict):
                    out[key] = _flag_entry(key, entry)
        elif isinstance(answer.get("featureFlags"), dict):  # the legacy flat shape
            payloads = answer.get("featureFlagPayloads") or {}
            for key, value in answer["featureFlags"].items():
                out[key] = _flag_entry(key, {"enabled": bool(value), "variant": value if isinstance(value, str) else None,
                                             "metadata": {"payload": payloads.get(key)}})
        return out

    def evaluate_flag(self, key: str, distinct_id: str,
                      person_properties: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """What `/flags?v=2` gives this user for `key`: {key, enabled, variant, value, payload,
        reason…}. An unknown or inactive flag is {enabled: False, reason: {code: flag_not_found}}."""
        if not isinstance(key, str) or not key:
            raise ValidationError("evaluate_flag needs the flag key.")
        entry = self.evaluate_flags(distinct_id, person_properties, [key]).get(key)
        if entry is None:
            return {"key": key, "enabled": False, "variant": None, "value": False, "payload": None,
                    "reason": {"code": "flag_not_found"}}
        return entry

    def get_experiments(self, limit: int | None = None) -> list[dict[str, Any]]:
        return self._list("experiments/", limit=limit)

    def get_event_definitions(self, search: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        return self._list("event_definitions/", {"search": search}, limit=limit)

    def get_property_definitions(self, type: str = "event", search: str | None = None,
                                 limit: int | None = None) -> list[dict[str, Any]]:
        if type not in ("event", "person"):
            raise ValidationError("Property definitions are of type 'event' or 'person'.")
        return self._list("property_definitions/", {"type": type, "search": search}, limit=limit)

    def get_project_info(self) -> dict[str, Any]:
        return self._api("GET", "")

    def get_time_settings(self) -> dict[str, Any]:
        """How the project's insights tell time (GET /api/projects/{id}/): {"timezone" (IANA, "UTC"
        when empty), "week_start" ("sunday" or "monday"), "week_mode" (toStartOfWeek's mode for it:
        0 Sunday, 3 Monday, PostHog's WeekStartDay.clickhouse_mode)}. An empty week_start_day means
        Sunday, as in PostHog. HogQL already answers in this time zone; templates report it."""
        info = self.get_project_info()
        monday = info.get("week_start_day") == 1
        return {"timezone": info.get("timezone") or "UTC", "week_start": "monday" if monday else "sunday",
                "week_mode": 3 if monday else 0}

    def health_check(self) -> dict[str, Any]:
        """Never raises a PostHogError: {"ok", "api_url", "ingest_url", "project_id", "project",
        "checks": {"api": …, "query": …, "ingest": …}, "error": first failure or None}. Each
        check is one request without retries: {"ok", "ms", "error"?}."""
        checks: dict[str, dict[str, Any]] = {}
        project: dict[str, Any] = {}

        def run(name: str, call: Any) -> None:
            started = time.monotonic()
            try:
                call()
                checks[name] = {"ok": True}
            except PostHogError as err:
                checks[name] = {"ok": False, "error": str(err)}
            checks[name]["ms"] = round((time.monotonic() - started) * 1000, 1)

        def api() -> None:
            info = self._api("GET", "", max_retries=0)
            if isinstance(info, dict):
                project.update({"id": info.get("id"), "name": info.get("name")})

        run("api", api)
        run("query", lambda: self._api("POST", "query/", body={"query": {"kind": "HogQLQuery", "query": "SELECT 1"}},
                                       idempotent=True, kind="query", max_retries=0))
        if self.settings.project_api_key:
            import json

            body = json.dumps({"api_key": self.settings.project_api_key, "distinct_id": "sandbox-runner-health-check"})
            run("ingest", lambda: self._ingest("/flags?v=2", body.encode(), kind="flags", max_retries=0))
        failures = [c["error"] for c in checks.values() if not c["ok"]]
        return {"ok": not failures, "api_url": self.settings.api_url, "ingest_url": self.settings.ingest_url,
                "project_id": project.get("id", self.settings.project_id), "project": project.get("name"),
                "checks": checks, "error": failures[0] if failures else None}


def _flag_entry(key: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    import json

    out = dict(entry)
    out["key"] = key
    out["enabled"] = bool(entry.get("enabled"))
    out["variant"] = entry.get("variant") if isinstance(entry.get("variant"), str) else None
    out["value"] = out["variant"] if out["variant"] is not None else out["enabled"]
    payload = (entry.get("metadata") or {}).get("payload") if isinstance(entry.get("metadata"), dict) else None
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            pass
    out["payload"] = payload
    return out


_SLICE_MIN_US = 1_000_000  # an export slice spans at least a second
_PAGES_PER_SLICE = 4
_EPOCH_ORDINAL = 719163  # date(1970, 1, 1).toordinal()


def _micros(text: str) -> int:
    """An ISO-8601 time (as PostHog returns it, or as iso_utc makes it) in µs since the epoch."""
    import datetime as dt

    t = text.strip()
    if t[-1:] in ("Z", "z"):
        t = t[:-1] + "+00:00"
    try:
        when = dt.datetime.fromisoformat(t)
    except ValueError:
        raise PostHogError("PostHog returned a timestamp the export cannot read; report this.") from None
    if when.tzinfo is not None:
        when = when.astimezone(dt.timezone.utc).replace(tzinfo=None)
    days = when.toordinal() - _EPOCH_ORDINAL
    return ((days * 86400 + when.hour * 3600 + when.minute * 60 + when.second) * 1_000_000) + when.microsecond


def _iso_micros(micros: int) -> str:
    import datetime as dt

    when = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=micros)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _int_id(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
        raise ValidationError(f"The {what} must be a whole number.")
    return int(value)


def _text_id(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise ValidationError("A distinct_id must be a non-empty string.")
    return value


def _list_arg(values: Any, what: str) -> list[Any]:
    if isinstance(values, (str, bytes)) or values is None:
        raise ValidationError(f"{what} must be a list, not a single string.")
    return list(values)
