"""Routing, authentication and PostHog's answer shapes, independent of the socket layer."""

from __future__ import annotations

import json
import re
import sys
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlencode

import copy

from .capture import CaptureError, decode_body, parse_capture
from .config import Project, Settings
from .faults import FaultRegistry, FaultSpecError, RequestStats, parse_json_faults
from .hogql import HogQLError
from .limits import ConcurrencyLimiter, LimitSettings, LimitSpecError, RateLimiter, Throttled
from .queries import QueryService, refresh_mode
from .resources import ApiError, Resources, not_found, validation
from .store import QueryFailed, Store

CAPTURE_PATHS = {"/i/v0/e", "/e", "/capture", "/batch", "/track", "/engage", "/i/v0/batch"}
FLAG_PATHS = {"/flags", "/decide"}
PAGE_DEFAULT = 100
PAGE_MAX = 1000


@dataclass
class Request:
    method: str
    path: str  # without the query string
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    client_ip: str

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> "Response":
        return cls(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"),
                   "application/json", headers or {})

    @classmethod
    def text(cls, status: int, message: str, headers: dict[str, str] | None = None) -> "Response":
        return cls(status, message.encode("utf-8"), "text/plain; charset=utf-8", headers or {})


def _throttled(err: Throttled) -> ApiError:
    headers = {"Retry-After": str(err.wait)} if err.wait is not None else {}
    return ApiError(429, "throttled_error", "throttled", err.detail, headers=headers)


def _loopback(ip: str) -> bool:
    return ip.startswith("127.") or ip in ("::1", "::ffff:127.0.0.1") or ip.startswith("::ffff:127.")


Handler = Callable[["App", Request, dict[str, str]], Response]


@dataclass
class Route:
    pattern: re.Pattern[str]
    methods: dict[str, tuple[str, Handler]]  # method -> (scope, handler)
    private: bool = True


def _json_body(req: Request) -> dict[str, Any]:
    if not req.body.strip():
        return {}
    try:
        data = json.loads(req.body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, "validation_error", "parse_error",
                       f"JSON parse error - {err.__class__.__name__}") from err
    if not isinstance(data, dict):
        raise validation("Expected a JSON object")
    return data


class App:
    def __init__(self, settings: Settings, store: Store, resources: Resources,
                 faults: FaultRegistry, data_dir: Path, log: Callable[[str], None] | None = None,
                 limits: LimitSettings | None = None) -> None:
        self.settings = settings
        self.store = store
        self.resources = resources
        self.faults = faults
        self.stats = RequestStats()
        self.data_dir = data_dir
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self.limits = limits or LimitSettings()
        self._initial_limits = copy.deepcopy(self.limits)
        self.rate = RateLimiter(self.limits)
        self.concurrency = ConcurrencyLimiter(self.limits)
        self.queries = QueryService(store, self.limits, self.concurrency, self.log)
        self.received: list[dict[str, Any]] = []  # the HogQL texts received, newest last (GET /_local/queries)
        self.routes = self._routes()

    # -- routing -------------------------------------------------------------------------------
    def _routes(self) -> list[Route]:
        base = r"^/api/(?:projects|environments)/(?P<pid>[^/]+)"

        def r(path: str, methods: dict[str, tuple[str, Handler]]) -> Route:
            return Route(re.compile(base + path + r"/?$"), methods)

        return [
            r("", {"GET": ("project:read", App.project_info)}),
            r("/query", {"POST": ("query:read", App.query)}),
            r(r"/query/(?P<qid>[^/]+)", {"GET": ("query:read", App.query_status)}),
            r("/insights", {"GET": ("insight:read", App.insights)}),
            r(r"/insights/(?P<id>\d+)", {"GET": ("insight:read", App.insight)}),
            r("/cohorts", {"GET": ("cohort:read", App.cohorts),
                           "POST": ("cohort:write", App.create_cohort)}),
            r(r"/cohorts/(?P<id>\d+)", {"GET": ("cohort:read", App.cohort),
                                         "PATCH": ("cohort:write", App.update_cohort),
                                         "PUT": ("cohort:write", App.update_cohort),
                                         "DELETE": ("cohort:write", App.method_not_allowed)}),
            r(r"/cohorts/(?P<id>\d+)/add_persons_to_static_cohort",
              {"PATCH": ("cohort:write", App.add_persons)}),
            r(r"/cohorts/(?P<id>\d+)/persons", {"GET": ("cohort:read", App.cohort_persons)}),
            r("/persons", {"GET": ("person:read", App.persons)}),
            r(r"/persons/(?P<id>[0-9a-fA-F-]{36})", {"GET": ("person:read", App.person)}),
            r("/feature_flags", {"GET": ("feature_flag:read", App.feature_flags),
                                 "POST": ("feature_flag:write", App.create_flag)}),
            r(r"/feature_flags/(?P<id>\d+)", {"GET": ("feature_flag:read", App.feature_flag),
                                              "PATCH": ("feature_flag:write", App.update_flag),
                                              "PUT": ("feature_flag:write", App.update_flag),
                                              "DELETE": ("feature_flag:write", App.method_not_allowed)}),
            r("/experiments", {"GET": ("experiment:read", App.experiments)}),
            r(r"/experiments/(?P<id>\d+)", {"GET": ("experiment:read", App.experiment)}),
            r("/event_definitions", {"GET": ("event_definition:read", App.event_definitions)}),
            r("/property_definitions", {"GET": ("property_definition:read", App.property_definitions)}),
            Route(re.compile(r"^/api/projects/?$"), {"GET": ("project:read", App.projects)}),
            Route(re.compile(r"^/api/users/@me/?$"), {"GET": ("user:read", App.me)}),
        ]

    def handle(self, req: Request) -> Response:
        path = req.path
        if path.startswith("/_local/"):
            return self.local(req)
        bare = path.rstrip("/") or "/"
        try:
            if bare in CAPTURE_PATHS:
                return self.capture(req)
            if bare in FLAG_PATHS:
                return self.flags(req)
            if path.startswith("/api/"):
                return self.private(req)
            if bare == "/":
                return Response.text(200, "posthog-local\n")
            return Response.json(404, {"type": "invalid_request", "code": "not_found", "detail": "Not found."})
        except ApiError as err:
            return Response.json(err.status, err.body, err.headers)

    # -- private API ---------------------------------------------------------------------------
    def _personal_key(self, req: Request) -> str | None:
        header = req.headers.get("authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            raise ApiError(401, "authentication_error", "authentication_failed",
                           "Authorization header must be 'Bearer <personal API key>'.")
        key = req.arg("personal_api_key")
        if key:
            return key
        if req.body[:1] == b"{":
            try:
                body = json.loads(req.body)
            except (json.JSONDecodeError, UnicodeDecodeError):
                return None
            if isinstance(body, dict) and isinstance(body.get("personal_api_key"), str):
                return body["personal_api_key"]
        return None

    def private(self, req: Request) -> Response:
        for route in self.routes:
            match = route.pattern.match(req.path)
            if match:
                break
        else:
            raise not_found()
        key = self._personal_key(req)
        if key is None:
            raise ApiError(401, "authentication_error", "not_authenticated",
                           "Authentication credentials were not provided.")
        scopes = self.settings.scopes_for(key)
        if scopes is None:
            raise ApiError(401, "authentication_error", "authentication_failed",
                           "Personal API key found in request is invalid.")
        params = match.groupdict()
        pid = params.get("pid")
        projects = self.settings.projects
        if pid is not None and pid != "@current":
            if not pid.isdigit():
                raise not_found()
            if int(pid) not in projects:
                raise ApiError(403, "authentication_error", "permission_denied",
                               "You don't have access to the project.")
        params["__project"] = projects[int(pid)] if pid not in (None, "@current") else projects[self.settings.project_id]
        params["__key"] = key
        entry = route.methods.get(req.method)
        if entry is None:
            if req.method == "OPTIONS":
                return Response(200, b"", headers={"Allow": ", ".join(sorted(route.methods))})
            needed = next(iter(route.methods.values()))[0].replace(":read", ":write") \
                if req.method in ("POST", "PUT", "PATCH", "DELETE") else None
            if needed and needed not in scopes:
                raise ApiError(403, "authentication_error", "permission_denied",
                               f"API key missing required scope '{needed}'")
            return self.method_not_allowed(req, params)
        scope, handler = entry
        if scope not in scopes:
            raise ApiError(403, "authentication_error", "permission_denied",
                           f"API key missing required scope '{scope}'")
        return handler(self, req, params)

    def method_not_allowed(self, req: Request, params: dict[str, str]) -> Response:
        return Response.json(405, {"type": "invalid_request", "code": "method_not_allowed",
                                   "detail": f'Method "{req.method}" not allowed.', "attr": None})

    def _page(self, req: Request, items: list[Any], with_count: bool = True) -> Response:
        try:
            limit = int(req.arg("limit") or PAGE_DEFAULT)
            offset = int(req.arg("offset") or 0)
        except ValueError as err:
            raise validation("limit and offset must be integers") from err
        limit = max(1, min(limit, PAGE_MAX))
        offset = max(0, offset)
        page = items[offset: offset + limit]
        host = req.headers.get("host", "127.0.0.1")

        def url(new_offset: int) -> str:
            query = {k: v[0] for k, v in req.query.items() if k != "personal_api_key"}
            query.update({"limit": str(limit), "offset": str(new_offset)})
            return f"http://{host}{req.path}?{urlencode(query)}"

        body: dict[str, Any] = {
            "next": url(offset + limit) if offset + limit < len(items) else None,
            "previous": url(max(0, offset - limit)) if offset > 0 else None,
            "results": page,
        }
        if with_count:
            body = {"count": len(items), **body}
        return Response.json(200, body)

    def project_json(self, project: Project | None = None) -> dict[str, Any]:
        p = project or self.settings.projects[self.settings.project_id]
        return {"id": p.id, "uuid": str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"posthog-local:{p.id}")),
                "organization": "posthog-local", "api_token": p.project_key, "name": p.name,
                "timezone": p.timezone, "week_start_day": p.week_start_day, "is_demo": False,
                "access_control": False, "completed_snippet_onboarding": True,
                "ingested_event": True, "person_on_events_querying_enabled": True,
                "created_at": self.store.meta.get("reference_time"),
                "effective_membership_level": 8, "has_group_types": False}

    def project_info(self, req: Request, params: dict[str, Any]) -> Response:
        return Response.json(200, self.project_json(params["__project"]))

    def projects(self, req: Request, params: dict[str, Any]) -> Response:
        return self._page(req, [self.project_json(p) for p in self.settings.projects.values()])

    def me(self, req: Request, params: dict[str, str]) -> Response:
        project = self.project_json()
        return Response.json(200, {"uuid": str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, "posthog-local:user")),
                                   "email": "local@posthog-local.invalid", "first_name": "Local",
                                   "team": {"id": project["id"], "name": project["name"]},
                                   "organization": {"id": "posthog-local", "name": "posthog-local"}})

    def query(self, req: Request, params: dict[str, Any]) -> Response:
        body = _json_body(req)
        query = body.get("query")
        if isinstance(query, dict) and isinstance(query.get("query"), str):
            self.received = self.received[-499:] + [{"query": query["query"], "values": query.get("values"),
                                                      "refresh": body.get("refresh")}]
        if isinstance(query, dict) and query.get("kind") == "HogQLQuery":
            # HogQLQueryThrottle: per personal key, before the query is even looked at
            try:
                self.rate.hit(params["__key"])
            except Throttled as err:
                raise _throttled(err) from err
        if not isinstance(query, dict):
            raise validation("query must be an object like {\"kind\": \"HogQLQuery\", \"query\": \"...\"}", "query")
        kind = query.get("kind")
        if kind != "HogQLQuery":
            raise validation(f"Unsupported query kind {kind!r}: posthog-local runs HogQLQuery only", "query")
        text = query.get("query", "")
        if not isinstance(text, str) or not text.strip():
            raise validation("query.query must be the HogQL text", "query")
        values = query.get("values") or {}
        if not isinstance(values, dict):
            raise validation("values must be an object mapping placeholder names to values", "values")
        modifiers = query.get("modifiers") or body.get("modifiers") or {}
        if not isinstance(modifiers, dict):
            raise validation("modifiers must be an object", "modifiers")
        convert_tz = modifiers.get("convertToProjectTimezone", True) is not False
        try:
            mode = "async" if body.get("async") is True and body.get("refresh") is None else refresh_mode(body.get("refresh"))
        except ValueError as err:
            raise validation(str(err), "refresh") from err
        try:
            status, answer = self.queries.run(params["__project"], text, values, convert_tz, mode)
        except HogQLError as err:
            raise ApiError(400, "validation_error", err.code, err.detail) from err
        except Throttled as err:
            raise _throttled(err) from err
        except QueryFailed as err:
            self.log(f"query engine failure: {err}")
            raise ApiError(500, "server_error", "error", "A server error occurred.") from err
        return Response.json(status, answer)

    def query_status(self, req: Request, params: dict[str, Any]) -> Response:
        found = self.queries.status(params["__project"].id, params["qid"])
        if found is None:
            raise not_found()
        status, body = found
        return Response.json(status, body)

    def insights(self, req: Request, params: dict[str, str]) -> Response:
        return self._page(req, self.resources.list_insights(req.arg("short_id"), req.arg("search")))

    def insight(self, req: Request, params: dict[str, str]) -> Response:
        return Response.json(200, self.resources.get_insight(params["id"]))

    def cohorts(self, req: Request, params: dict[str, str]) -> Response:
        return self._page(req, self.resources.list_cohorts())

    def cohort(self, req: Request, params: dict[str, str]) -> Response:
        return Response.json(200, self.resources.cohort_json(self.resources.get_cohort(params["id"])))

    def create_cohort(self, req: Request, params: dict[str, str]) -> Response:
        return Response.json(201, self.resources.create_cohort(_json_body(req)))

    def update_cohort(self, req: Request, params: dict[str, str]) -> Response:
        return Response.json(200, self.resources.update_cohort(params["id"], _json_body(req)))

    def add_persons(self, req: Request, params: dict[str, Any]) -> Response:
        body = _json_body(req)
        ids = body.get("person_ids")
        if isinstance(ids, list) and len(ids) > self.limits.cohort_batch:
            # DEFAULT_COHORT_INSERT_BATCH_SIZE (1,000): PostHog refuses the whole call, adds nobody
            raise validation("List size exceeds limit")
        return Response.json(200, self.resources.add_persons(params["id"], body))

    def cohort_persons(self, req: Request, params: dict[str, str]) -> Response:
        return self._page(req, self.resources.cohort_people(params["id"]))

    def persons(self, req: Request, params: dict[str, str]) -> Response:
        return self._page(req, self.resources.list_persons(req.arg("distinct_id"), req.arg("search")))

    def person(self, req: Request, params: dict[str, str]) -> Response:
        return Response.json(200, self.resources.get_person(params["id"].lower()))

    def feature_flags(self, req: Request, params: dict[str, str]) -> Response:
        return self._page(req, self.resources.list_flags(req.arg("active"), req.arg("search")))

    def feature_flag(self, req: Request, params: dict[str, str]) -> Response:
        return Response.json(200, self.resources.flag_json(self.resources.get_flag(params["id"])))

    def create_flag(self, req: Request, params: dict[str, str]) -> Response:
        return Response.json(201, self.resources.create_flag(_json_body(req)))

    def update_flag(self, req: Request, params: dict[str, str]) -> Response:
        return Response.json(200, self.resources.update_flag(params["id"], _json_body(req)))

    def experiments(self, req: Request, params: dict[str, str]) -> Response:
        return self._page(req, self.resources.list_experiments())

    def experiment(self, req: Request, params: dict[str, str]) -> Response:
        return Response.json(200, self.resources.get_experiment(params["id"]))

    def event_definitions(self, req: Request, params: dict[str, str]) -> Response:
        items = self.store.event_definitions()
        search = req.arg("search")
        if search:
            items = [d for d in items if search.lower() in d["name"].lower()]
        return self._page(req, items)

    def property_definitions(self, req: Request, params: dict[str, str]) -> Response:
        kind = req.arg("type") or "event"
        if kind not in ("event", "person"):
            raise validation("type must be 'event' or 'person'", "type")
        items = self.store.property_definitions(kind)
        search = req.arg("search")
        if search:
            items = [d for d in items if search.lower() in d["name"].lower()]
        return self._page(req, items)

    # -- capture and flags ---------------------------------------------------------------------
    def _decode(self, req: Request) -> Any:
        if len(req.body) > self.limits.max_body_bytes:
            raise CaptureError(413, "request body too large")
        return decode_body(req.body, req.headers.get("content-encoding"),
                           req.headers.get("content-type"), req.query)

    def capture(self, req: Request) -> Response:
        if req.method not in ("POST", "GET"):
            return Response.text(405, "method not allowed")
        try:
            if req.method == "GET":
                raw = req.arg("data")
                if raw is None:
                    raise CaptureError(400, "failed to decode request: no data")
                req.body = raw.encode("utf-8")
            payload = self._decode(req)
            events = parse_capture(payload, self.settings.project_keys)
        except CaptureError as err:
            return Response.text(err.status, err.message)
        self.store.insert_events(events)
        for event in events:
            anon = event.properties.get("$anon_distinct_id")
            if event.event == "$identify" and isinstance(anon, str) and anon:
                self.store.link_distinct_id(event.distinct_id, anon)
        return Response.json(200, {"status": 1})

    def flags(self, req: Request) -> Response:
        if req.method not in ("POST", "GET"):
            return Response.text(405, "method not allowed")
        try:
            if req.method == "GET" and req.arg("data"):
                req.body = (req.arg("data") or "").encode("utf-8")
            payload = self._decode(req) if req.body.strip() else {}
        except CaptureError as err:
            return Response.json(err.status, {"type": "validation_error", "code": "malformed_request",
                                              "detail": err.message, "attr": None})
        if not isinstance(payload, dict):
            payload = {}
        token = payload.get("api_key") or payload.get("token") or req.arg("token") or req.arg("api_key")
        if token not in self.settings.project_keys:
            return Response.json(401, {"type": "authentication_error", "code": "invalid_api_key",
                                       "detail": "Project API key invalid. You can find your project "
                                                 "API key in PostHog project settings.", "attr": None})
        distinct_id = payload.get("distinct_id")
        if isinstance(distinct_id, (int, float)) and not isinstance(distinct_id, bool):
            distinct_id = str(distinct_id)
        if not isinstance(distinct_id, str) or not distinct_id:
            return Response.json(400, {"type": "validation_error", "code": "missing_distinct_id",
                                       "detail": "Decide requires a distinct_id.", "attr": "distinct_id"})
        person_props = payload.get("person_properties") or {}
        if not isinstance(person_props, dict):
            person_props = {}
        only = payload.get("flag_keys_to_evaluate")
        only_set = set(only) if isinstance(only, list) and only else None
        evaluated = self.resources.evaluate_all(distinct_id, person_props, only_set)
        try:
            version = int(req.arg("v") or 0)
        except ValueError:
            version = 0
        new_shape = (req.path.rstrip("/") == "/flags" and version >= 2) or version >= 4
        if new_shape:
            flags = {}
            for flag, result in evaluated:
                payload_value = result.payload
                flags[flag["key"]] = {
                    "key": flag["key"], "enabled": result.enabled, "variant": result.variant,
                    "reason": {"code": result.reason_code, "condition_index": result.condition_index,
                               "description": result.description},
                    "metadata": {"id": flag["id"], "version": flag.get("version", 1),
                                 "payload": None if payload_value is None else json.dumps(payload_value),
                                 "description": flag.get("name")},
                }
            return Response.json(200, {"flags": flags, "errorsWhileComputingFlags": False,
                                       "requestId": str(uuidlib.uuid4())})
        feature_flags = {flag["key"]: result.value for flag, result in evaluated}
        payloads = {flag["key"]: json.dumps(result.payload) for flag, result in evaluated
                    if result.enabled and result.payload is not None}
        return Response.json(200, {"featureFlags": feature_flags, "featureFlagPayloads": payloads,
                                   "errorsWhileComputingFlags": False,
                                   "requestId": str(uuidlib.uuid4())})

    # -- /_local/ ------------------------------------------------------------------------------
    def local(self, req: Request) -> Response:
        if not _loopback(req.client_ip):
            return Response.json(403, {"detail": "/_local/ answers on loopback only"})
        bare = req.path.rstrip("/")
        if bare == "/_local/faults":
            if req.method == "GET":
                return Response.json(200, {"faults": self.faults.snapshot(),
                                           "injected": dict(self.faults.injected)})
            if req.method == "DELETE":
                self.faults.clear()
                return Response.json(200, {"faults": []})
            if req.method == "POST":
                try:
                    faults = parse_json_faults(json.loads(req.body or b"[]"))
                except (json.JSONDecodeError, UnicodeDecodeError):
                    return Response.json(400, {"detail": "send a JSON list of fault specs"})
                except FaultSpecError as err:
                    return Response.json(400, {"detail": str(err)})
                self.faults.add(faults)
                return Response.json(200, {"faults": self.faults.snapshot()})
        if bare == "/_local/limits":
            if req.method == "DELETE":
                restored = copy.deepcopy(self._initial_limits)
                for name in vars(restored):
                    setattr(self.limits, name, getattr(restored, name))
                self.rate.reset()
                self.queries.clear()
            elif req.method == "POST":
                try:
                    changes = json.loads(req.body or b"{}")
                    if not isinstance(changes, dict):
                        raise LimitSpecError("send a JSON object of limits")
                    reset = bool(changes.pop("reset_usage", False))
                    self.limits.update(changes)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    return Response.json(400, {"detail": "send a JSON object of limits"})
                except LimitSpecError as err:
                    return Response.json(400, {"detail": str(err)})
                if reset:
                    self.rate.reset()
                    self.queries.clear()
            return Response.json(200, {"limits": self.limits.describe(), "running": self.concurrency.running,
                                       "executions": self.queries.executions})
        if bare == "/_local/ingest":
            # How capture treats a uuid already stored (see Store.keep_duplicate_uuids).
            if req.method == "POST":
                try:
                    body = json.loads(req.body or b"{}")
                    keep = body["keep_duplicate_uuids"] if isinstance(body, dict) else None
                except (json.JSONDecodeError, UnicodeDecodeError, KeyError):
                    keep = None
                if not isinstance(keep, bool):
                    return Response.json(400, {"detail": 'send {"keep_duplicate_uuids": true|false}'})
                self.store.keep_duplicate_uuids = keep
            return Response.json(200, {"keep_duplicate_uuids": self.store.keep_duplicate_uuids})
        if bare == "/_local/queries":
            if req.method == "DELETE":
                self.received = []
            return Response.json(200, {"queries": self.received})
        if bare == "/_local/stats":
            if req.method == "DELETE":
                self.stats.reset()
            return Response.json(200, self.stats.snapshot())
        if bare == "/_local/truths" and req.method == "GET":
            return Response(200, (self.data_dir / "truths.json").read_bytes())
        if bare == "/_local/meta" and req.method == "GET":
            return Response(200, (self.data_dir / "meta.json").read_bytes())
        return Response.json(404, {"detail": "Not found."})
