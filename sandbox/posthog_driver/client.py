"""PostHogClient: the driver contract (list_objects, get_fields, query) and PostHog operations."""
from __future__ import annotations

import json
import logging
import os
import uuid as uuidlib
from typing import Any, Iterator
from urllib.parse import urlencode

from .config import Settings
from .errors import AuthenticationError, NotFoundError, PostHogError, ValidationError
from .hogql import Query, check_identifier
from .transport import Transport

log = logging.getLogger("posthog_driver")

OBJECTS = {
    "events": {"uuid": "UUID", "event": "String", "distinct_id": "String", "timestamp": "DateTime", "properties": "JSON",
               "person_id": "UUID", "created_at": "DateTime", "elements_chain": "String", "$session_id": "String"},
    "persons": {"id": "UUID", "created_at": "DateTime", "properties": "JSON", "is_identified": "Boolean"},
    "person_distinct_ids": {"distinct_id": "String", "person_id": "UUID"},
    "cohorts": {"id": "Integer", "name": "String", "description": "String", "is_static": "Boolean", "count": "Integer"},
    "insights": {"id": "Integer", "short_id": "String", "name": "String", "query": "JSON", "result": "JSON"},
    "feature_flags": {"id": "Integer", "key": "String", "name": "String", "active": "Boolean", "filters": "JSON"},
    "experiments": {"id": "Integer", "name": "String", "feature_flag_key": "String", "start_date": "DateTime",
                    "end_date": "DateTime", "parameters": "JSON", "metrics": "JSON"},
    "event_definitions": {"name": "String", "volume_30_day": "Integer", "last_seen_at": "DateTime"},
    "property_definitions": {"name": "String", "property_type": "String", "is_numerical": "Boolean"},
}


class PostHogClient:
    """Configured from POSTHOG_* variables or arguments; use it as a context manager."""

    def __init__(self, api_url: str | None = None, personal_api_key: str | None = None, project_api_key: str | None = None,
                 project_id: str | int | None = None, ingest_url: str | None = None, timeout: float | None = None,
                 max_retries: int | None = None, max_retry_wait: float | None = None) -> None:
        level = os.environ.get("POSTHOG_LOG_LEVEL")
        if level and not log.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("posthog_driver %(levelname)s %(message)s"))
            log.addHandler(handler)
            log.setLevel(getattr(logging, level.upper(), logging.WARNING))
        self.settings = Settings.resolve(api_url, personal_api_key, project_api_key, project_id, ingest_url, timeout,
                                         max_retries, max_retry_wait)
        s = self.settings
        self._http = Transport(s.timeout, s.max_retries, s.max_retry_wait, [s.personal_api_key or "", s.project_api_key or ""])

    def __repr__(self) -> str:
        return f"PostHogClient({self.settings!r})"

    def __enter__(self) -> "PostHogClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- plumbing ------------------------------------------------------------------------------

    def _private(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None,
                 retry: bool = True) -> Any:
        if not self.settings.personal_api_key:
            raise AuthenticationError("POSTHOG_PERSONAL_API_KEY is not set: the private API needs a personal API key (phx_…).")
        url = f"{self.settings.api_url}/api/projects/{self.settings.project_id}/{path}"
        if params:
            url += "?" + urlencode({k: v for k, v in params.items() if v is not None})
        _, _, payload = self._http.request(method, url, body=body, retry=retry,
                                           headers={"Authorization": f"Bearer {self.settings.personal_api_key}"})
        return json.loads(payload) if payload else None

    def _ingest(self, path: str, body: dict[str, Any]) -> Any:
        if not self.settings.project_api_key:
            raise AuthenticationError("POSTHOG_PROJECT_API_KEY is not set: capture and flags need the project API key (phc_…).")
        body = dict(body, api_key=self.settings.project_api_key)
        # Safe to retry: every captured event carries a uuid that PostHog deduplicates on; flag
        # evaluation is read-only.
        _, _, payload = self._http.request("POST", f"{self.settings.ingest_url}{path}", body=body)
        try:
            return json.loads(payload) if payload else None
        except ValueError:
            return None

    def _list(self, path: str, params: dict[str, Any] | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        page = dict(params or {}, limit=min(limit or 100, 100), offset=0)
        while True:
            doc = self._private("GET", path, params=page)
            results = doc.get("results", []) if isinstance(doc, dict) else []
            out += results
            if not isinstance(doc, dict) or not doc.get("next") or not results or (limit and len(out) >= limit):
                return out[:limit] if limit else out
            page["offset"] += len(results)

    # --- the driver contract -------------------------------------------------------------------

    def list_objects(self) -> list[str]:
        """The objects this driver can read (HogQL tables and API resources)."""
        return list(OBJECTS)

    def get_fields(self, name: str) -> dict[str, str]:
        """Field name → type for an object; for events, known event properties are added as `properties.<name>`."""
        if name not in OBJECTS:
            raise ValidationError(f"Unknown object {name!r}; list_objects() names them.")
        fields = dict(OBJECTS[name])
        if name in ("events", "persons"):
            kind = "event" if name == "events" else "person"
            for d in self._list("property_definitions/", {"type": kind}, limit=500):
                fields[f"properties.{d.get('name')}"] = str(d.get("property_type") or "String")
        return fields

    def query(self, hogql: str, values: dict[str, Any] | None = None, name: str | None = None) -> dict[str, Any]:
        """Runs HogQL; `values` are bound by PostHog to `{placeholders}`. Returns PostHog's answer
        (`columns`, `results` rows in column order, `types`, `hasMore`, …)."""
        if not isinstance(hogql, str) or not hogql.strip():
            raise ValidationError("query needs HogQL text.")
        body: dict[str, Any] = {"query": {"kind": "HogQLQuery", "query": hogql, "values": dict(values or {})}}
        if name:
            body["name"] = name
        answer = self._private("POST", "query/", body=body)
        if not isinstance(answer, dict):
            raise PostHogError("PostHog answered the query with something that is not a result.")
        return answer

    def rows(self, hogql: str, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """`query` with the rows as dicts keyed by column name."""
        from . import rows_of
        return rows_of(self.query(hogql, values))

    # --- operations ----------------------------------------------------------------------------

    def capture_event(self, event: str, distinct_id: str, properties: dict[str, Any] | None = None,
                      timestamp: str | None = None, uuid: str | None = None) -> str:
        """Captures one event; returns its uuid (generated when not given, so a retry cannot duplicate it)."""
        check_identifier(event, "event name")
        eid = uuid or str(uuidlib.uuid4())
        body: dict[str, Any] = {"event": event, "distinct_id": str(distinct_id), "properties": properties or {}, "uuid": eid}
        if timestamp:
            body["timestamp"] = timestamp
        self._ingest("/i/v0/e/", body)
        return eid

    def capture_batch(self, events: list[dict[str, Any]], historical_migration: bool = False) -> list[str]:
        """Captures events (`event`, `distinct_id`, `properties`, `timestamp`, `uuid`) in batches of 500."""
        batch = []
        for e in events:
            check_identifier(e.get("event", ""), "event name")
            if not e.get("distinct_id") and not (e.get("properties") or {}).get("distinct_id"):
                raise ValidationError("Every event needs a distinct_id.")
            batch.append(dict(e, uuid=e.get("uuid") or str(uuidlib.uuid4())))
        for i in range(0, len(batch), 500):
            self._ingest("/batch/", {"batch": batch[i:i + 500], "historical_migration": historical_migration})
        return [e["uuid"] for e in batch]

    def get_insights(self, limit: int = 100) -> list[dict[str, Any]]:
        return self._list("insights/", limit=limit)

    def get_events(self, days: int = 7, event: str | None = None, distinct_id: str | None = None,
                   limit: int = 100) -> list[dict[str, Any]]:
        """Recent events, newest first (through HogQL, parameterised)."""
        q = Query("SELECT uuid, event, distinct_id, timestamp, properties FROM events").last_days(days)
        if event:
            q.event_is(event)
        if distinct_id:
            q.distinct_id_is(distinct_id)
        sql, values = q.order_by("timestamp DESC").limit(limit).build()
        return self.rows(sql, values)

    def export_events(self, start: str, end: str, event_names: list[str] | None = None,
                      page_size: int = 10000) -> Iterator[dict[str, Any]]:
        """Every event with start <= timestamp < end, ordered by (timestamp, uuid), yielded as it
        comes. Pages by keyset (seek) on (timestamp, uuid), never OFFSET: memory stays flat."""
        if not 0 < page_size <= 50000:
            raise ValidationError("page_size must be between 1 and 50000.")
        names = [check_identifier(e, "event name") for e in (event_names or [])]
        base = ("SELECT uuid, event, distinct_id, timestamp, properties FROM events "
                "WHERE timestamp >= {start} AND timestamp < {end}")
        if names:
            base += " AND event IN {events}"
        after: tuple[Any, Any] | None = None
        while True:
            values: dict[str, Any] = {"start": start, "end": end, "n": page_size}
            if names:
                values["events"] = names
            sql = base
            if after is not None:
                sql += " AND (timestamp > {after_ts} OR (timestamp = {after_ts} AND uuid > {after_uuid}))"
                values["after_ts"], values["after_uuid"] = after
            sql += " ORDER BY timestamp, uuid LIMIT {n}"
            answer = self.query(sql, values)
            columns = answer.get("columns", [])
            results = answer.get("results", [])
            for row in results:
                yield dict(zip(columns, row))
            if len(results) < page_size:
                return
            last = dict(zip(columns, results[-1]))
            after = (last["timestamp"], last["uuid"])

    def get_cohorts(self, limit: int = 100) -> list[dict[str, Any]]:
        return self._list("cohorts/", limit=limit)

    def create_cohort(self, name: str, distinct_ids: list[str], description: str | None = None) -> dict[str, Any]:
        """A static cohort of the persons behind `distinct_ids`. Creation is not retried (it is not
        idempotent); adding the persons is."""
        if not name or len(name) > 400:
            raise ValidationError("A cohort needs a name of at most 400 characters.")
        ids = [str(d) for d in distinct_ids]
        person_ids: list[str] = []
        for i in range(0, len(ids), 10000):
            answer = self.query("SELECT DISTINCT person_id FROM person_distinct_ids WHERE distinct_id IN {ids}",
                                {"ids": ids[i:i + 10000]})
            person_ids += [str(r[0]) for r in answer.get("results", [])]
        cohort = self._private("POST", "cohorts/", body={"name": name, "description": description or "", "is_static": True},
                               retry=False)
        if person_ids:
            self._private("PATCH", f"cohorts/{cohort['id']}/add_persons_to_static_cohort/", body={"person_ids": person_ids})
        cohort["persons_added"] = len(person_ids)
        return cohort

    def get_persons(self, distinct_id: str | None = None, search: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return self._list("persons/", {"distinct_id": distinct_id, "search": search}, limit=limit)

    def get_feature_flags(self, active: bool | None = None) -> list[dict[str, Any]]:
        return self._list("feature_flags/", {"active": None if active is None else str(active).lower()}, limit=10000)

    def evaluate_flag(self, key: str, distinct_id: str, person_properties: dict[str, Any] | None = None) -> dict[str, Any]:
        """What `/flags` gives this user for `key`: {key, enabled, variant, reason, …}."""
        body: dict[str, Any] = {"distinct_id": str(distinct_id)}
        if person_properties:
            body["person_properties"] = person_properties
        answer = self._ingest("/flags?v=2", body) or {}
        flag = (answer.get("flags") or {}).get(key)
        if flag is None:
            return {"key": key, "enabled": False, "variant": None, "reason": {"code": "flag_not_found"}}
        return flag

    def get_experiments(self) -> list[dict[str, Any]]:
        return self._list("experiments/", limit=1000)

    def get_project_info(self) -> dict[str, Any]:
        return self._private("GET", "")

    def health_check(self) -> dict[str, Any]:
        """Never raises: {"ok": bool, "project": name?, "error": sentence?}."""
        try:
            info = self.get_project_info()
            return {"ok": True, "project": info.get("name"), "project_id": info.get("id")}
        except PostHogError as e:
            return {"ok": False, "error": str(e)}


__all__ = ["PostHogClient", "NotFoundError"]
