"""Project resources behind the private API: flags, cohorts, insights, experiments, persons and
definitions. State starts from resources.json and lives in memory (per server)."""

from __future__ import annotations

import copy
import datetime as dt
import threading
from typing import Any

from .flags import evaluate
from .store import Store, person_json
from .timeutil import iso_datetime


class ApiError(Exception):
    """A private-API error in Django REST framework's shape."""

    def __init__(self, status: int, type_: str, code: str, detail: str,
                 attr: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.body = {"type": type_, "code": code, "detail": detail, "attr": attr}
        self.headers = headers or {}


def not_found() -> ApiError:
    return ApiError(404, "invalid_request", "not_found", "Not found.")


def validation(detail: str, attr: str | None = None, code: str = "invalid_input") -> ApiError:
    return ApiError(400, "validation_error", code, detail, attr)


def _now_iso() -> str:
    return iso_datetime(dt.datetime.now(dt.timezone.utc))


def _bool_param(value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    return value.lower() in ("1", "true", "yes", "on")


class Resources:
    def __init__(self, store: Store, initial: dict[str, Any]) -> None:
        self.store = store
        self.lock = threading.RLock()
        self.flags: list[dict[str, Any]] = copy.deepcopy(initial.get("feature_flags", []))
        self.insights: list[dict[str, Any]] = copy.deepcopy(initial.get("insights", []))
        self.experiments: list[dict[str, Any]] = copy.deepcopy(initial.get("experiments", []))
        self.cohorts: list[dict[str, Any]] = []
        for cohort in copy.deepcopy(initial.get("cohorts", [])):
            members = cohort.pop("members", [])
            self.cohorts.append(cohort)
            if cohort.get("is_static") and members:
                store.add_cohort_members(int(cohort["id"]), members)

    # -- feature flags -------------------------------------------------------------------------
    def flag_json(self, flag: dict[str, Any]) -> dict[str, Any]:
        out = dict(flag)
        out.setdefault("rollout_percentage", None)
        out["experiment_set"] = [e["id"] for e in self.experiments
                                 if e.get("feature_flag_key") == flag["key"]]
        out.setdefault("surveys", [])
        out.setdefault("features", [])
        out["can_edit"] = True
        return out

    def list_flags(self, active: str | None, search: str | None) -> list[dict[str, Any]]:
        want_active = _bool_param(active)
        with self.lock:
            flags = [f for f in self.flags if not f.get("deleted")]
        if want_active is not None:
            flags = [f for f in flags if bool(f.get("active")) == want_active]
        if search:
            needle = search.lower()
            flags = [f for f in flags if needle in f["key"].lower() or needle in (f.get("name") or "").lower()]
        return [self.flag_json(f) for f in sorted(flags, key=lambda f: -int(f["id"]))]

    def get_flag(self, flag_id: str) -> dict[str, Any]:
        with self.lock:
            for flag in self.flags:
                if str(flag["id"]) == flag_id and not flag.get("deleted"):
                    return flag
        raise not_found()

    def create_flag(self, body: dict[str, Any]) -> dict[str, Any]:
        key = body.get("key")
        if not isinstance(key, str) or not key.strip():
            raise validation("This field is required.", "key", "required")
        filters = body.get("filters") or {"groups": [{"properties": [], "rollout_percentage": None}]}
        if not isinstance(filters, dict):
            raise validation("filters must be an object", "filters")
        with self.lock:
            if any(f["key"] == key and not f.get("deleted") for f in self.flags):
                raise validation("There is already a feature flag with this key.", "key", "unique")
            flag = {
                "id": max((int(f["id"]) for f in self.flags), default=0) + 1,
                "key": key, "name": str(body.get("name") or ""), "filters": filters,
                "active": bool(body.get("active", True)), "deleted": False,
                "created_at": _now_iso(), "created_by": None, "version": 1,
                "ensure_experience_continuity": bool(body.get("ensure_experience_continuity", False)),
                "tags": list(body.get("tags") or []),
                "is_simple_flag": not (filters.get("multivariate") or {}).get("variants"),
            }
            self.flags.append(flag)
        return self.flag_json(flag)

    def update_flag(self, flag_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            flag = self.get_flag(flag_id)
            for field in ("name", "active", "filters", "deleted", "tags",
                          "ensure_experience_continuity"):
                if field in body:
                    flag[field] = body[field]
            if "key" in body and body["key"] != flag["key"]:
                if any(f["key"] == body["key"] and not f.get("deleted") for f in self.flags):
                    raise validation("There is already a feature flag with this key.", "key", "unique")
                flag["key"] = body["key"]
            flag["version"] = int(flag.get("version", 1)) + 1
            return self.flag_json(flag)

    def evaluate_all(self, distinct_id: str, person_properties: dict[str, Any],
                     only: set[str] | None = None) -> list[tuple[dict[str, Any], Any]]:
        pid = self.store.person_of.get(distinct_id)
        stored = dict(self.store.persons[pid]["properties"]) if pid else {}
        props = {**stored, **person_properties}
        with self.lock:
            flags = [f for f in self.flags if f.get("active") and not f.get("deleted")
                     and (only is None or f["key"] in only)]
        return [(f, evaluate(f, distinct_id, props)) for f in flags]

    # -- cohorts -------------------------------------------------------------------------------
    def cohort_json(self, cohort: dict[str, Any]) -> dict[str, Any]:
        out = dict(cohort)
        if cohort.get("is_static"):
            out["count"] = len(self.store.cohort_members(int(cohort["id"])))
        else:
            out.setdefault("count", None)
        out.setdefault("groups", [])
        return out

    def list_cohorts(self) -> list[dict[str, Any]]:
        with self.lock:
            cohorts = [c for c in self.cohorts if not c.get("deleted")]
        return [self.cohort_json(c) for c in sorted(cohorts, key=lambda c: -int(c["id"]))]

    def get_cohort(self, cohort_id: str) -> dict[str, Any]:
        with self.lock:
            for cohort in self.cohorts:
                if str(cohort["id"]) == cohort_id and not cohort.get("deleted"):
                    return cohort
        raise not_found()

    def create_cohort(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise validation("This field is required.", "name", "required")
        with self.lock:
            cohort = {
                "id": max((int(c["id"]) for c in self.cohorts), default=0) + 1,
                "name": name, "description": str(body.get("description") or ""),
                "filters": body.get("filters") or {}, "query": body.get("query"),
                "is_static": bool(body.get("is_static", False)), "deleted": False,
                "created_at": _now_iso(), "created_by": None, "is_calculating": False,
                "errors_calculating": 0, "groups": body.get("groups") or [],
            }
            self.cohorts.append(cohort)
        return self.cohort_json(cohort)

    def update_cohort(self, cohort_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            cohort = self.get_cohort(cohort_id)
            for field in ("name", "description", "filters", "query", "deleted", "groups"):
                if field in body:
                    cohort[field] = body[field]
            return self.cohort_json(cohort)

    def add_persons(self, cohort_id: str, body: dict[str, Any]) -> dict[str, Any]:
        cohort = self.get_cohort(cohort_id)
        if not cohort.get("is_static"):
            raise validation("Can only add persons to a static cohort", "is_static")
        ids = body.get("person_ids")
        if not isinstance(ids, list) or not ids:
            raise validation("person_ids must be a non-empty list of person UUIDs", "person_ids")
        known = [str(p) for p in ids if str(p) in self.store.persons]
        self.store.add_cohort_members(int(cohort["id"]), known)
        return {"success": True}

    def cohort_people(self, cohort_id: str) -> list[dict[str, Any]]:
        cohort = self.get_cohort(cohort_id)
        members = self.store.cohort_members(int(cohort["id"]))
        return [self.person(pid) for pid in members if pid in self.store.persons]

    # -- persons -------------------------------------------------------------------------------
    def person(self, pid: str) -> dict[str, Any]:
        person = self.store.persons[pid]
        return person_json(person, self.store.distinct_ids_of.get(pid, []))

    def list_persons(self, distinct_id: str | None, search: str | None) -> list[dict[str, Any]]:
        store = self.store
        if distinct_id is not None:
            pid = store.person_of.get(distinct_id)
            return [self.person(pid)] if pid else []
        pids = list(store.persons)
        if search:
            needle = search.lower()
            pids = [p for p in pids if needle in p.lower()
                    or any(needle in d.lower() for d in store.distinct_ids_of.get(p, []))
                    or any(isinstance(v, str) and needle in v.lower()
                           for k, v in store.persons[p]["properties"].items() if k in ("email", "name"))]
        pids.sort(key=lambda p: (store.persons[p]["created_at"], p), reverse=True)
        return [self.person(p) for p in pids]

    def get_person(self, pid: str) -> dict[str, Any]:
        if pid in self.store.persons:
            return self.person(pid)
        raise not_found()

    # -- insights and experiments ----------------------------------------------------------------
    def list_insights(self, short_id: str | None, search: str | None) -> list[dict[str, Any]]:
        with self.lock:
            items = [i for i in self.insights if not i.get("deleted")]
        if short_id:
            items = [i for i in items if i.get("short_id") == short_id]
        if search:
            items = [i for i in items if search.lower() in (i.get("name") or "").lower()]
        return sorted(items, key=lambda i: -int(i["id"]))

    def get_insight(self, insight_id: str) -> dict[str, Any]:
        for insight in self.insights:
            if str(insight["id"]) == insight_id and not insight.get("deleted"):
                return insight
        raise not_found()

    def list_experiments(self) -> list[dict[str, Any]]:
        return sorted(self.experiments, key=lambda e: -int(e["id"]))

    def get_experiment(self, experiment_id: str) -> dict[str, Any]:
        for experiment in self.experiments:
            if str(experiment["id"]) == experiment_id:
                return experiment
        raise not_found()
