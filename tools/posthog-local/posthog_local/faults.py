"""Fault injection and request statistics.

SPEC syntax (CLI `--fault SPEC`, or strings in the JSON list of `POST /_local/faults`):

    KIND[:key=value[:key=value...]]

    KIND         429 | 500 | 502 | 503 | slow | drop
    count=N      how many of the next matching requests get it (default 1; `count=*` forever)
    path=PREFIX  only requests whose path starts with PREFIX (default: all but /_local/)
    method=M     only this HTTP method (default: any)
    retry_after=S  seconds in the Retry-After header of a 429 (default 1)
    ms=N         the delay of `slow` in milliseconds (default 1000)

Examples: `429:count=2:retry_after=1:path=/api/`, `503:path=/batch/`, `slow:ms=3000`,
`drop:count=1:path=/api/projects/1/query/`. The JSON form also takes objects:
`{"kind": "429", "count": 2, "retry_after": 1, "path": "/api/"}`.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

KINDS = ("429", "500", "502", "503", "slow", "drop")


class FaultSpecError(ValueError):
    """A fault spec that cannot be understood."""


@dataclass
class Fault:
    kind: str
    count: int | None = 1  # None: unlimited
    path: str = ""
    method: str | None = None
    retry_after: int = 1
    ms: int = 1000
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        if path.startswith("/_local/"):
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        return path.startswith(self.path) if self.path else True

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def _int(value: Any, key: str, minimum: int = 0) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError) as err:
        raise FaultSpecError(f"fault {key} must be an integer, not {value!r}") from err
    if number < minimum:
        raise FaultSpecError(f"fault {key} must be at least {minimum}")
    return number


def fault_from_mapping(raw: dict[str, Any]) -> Fault:
    kind = str(raw.get("kind", "")).lower()
    if kind not in KINDS:
        raise FaultSpecError(f"unknown fault kind {kind!r}; use one of {', '.join(KINDS)}")
    unknown = set(raw) - {"kind", "count", "path", "method", "retry_after", "ms"}
    if unknown:
        raise FaultSpecError(f"unknown fault option(s): {', '.join(sorted(unknown))}")
    count_raw = raw.get("count", 1)
    count = None if count_raw in ("*", "inf", None) else _int(count_raw, "count", 1)
    path = str(raw.get("path", ""))
    if path and not path.startswith("/"):
        raise FaultSpecError("fault path must start with '/'")
    method = raw.get("method")
    return Fault(kind=kind, count=count, path=path, method=str(method).upper() if method else None,
                 retry_after=_int(raw.get("retry_after", 1), "retry_after"),
                 ms=_int(raw.get("ms", 1000), "ms"))


def parse_spec(spec: str) -> Fault:
    parts = [p for p in spec.strip().split(":")]
    if not parts or not parts[0]:
        raise FaultSpecError("empty fault spec")
    raw: dict[str, Any] = {"kind": parts[0]}
    for part in parts[1:]:
        if "=" not in part:
            raise FaultSpecError(f"fault option {part!r} must look like key=value")
        key, value = part.split("=", 1)
        raw[key.strip()] = value.strip()
    return fault_from_mapping(raw)


def parse_json_faults(payload: Any) -> list[Fault]:
    items = payload if isinstance(payload, list) else payload.get("faults") if isinstance(payload, dict) else None
    if not isinstance(items, list):
        raise FaultSpecError("send a JSON list of fault specs (strings or objects)")
    faults = []
    for item in items:
        if isinstance(item, str):
            faults.append(parse_spec(item))
        elif isinstance(item, dict):
            faults.append(fault_from_mapping(item))
        else:
            raise FaultSpecError("each fault is a spec string or an object")
    return faults


class FaultRegistry:
    def __init__(self, faults: list[Fault] | None = None) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = list(faults or [])
        self.injected: Counter[str] = Counter()

    def add(self, faults: list[Fault]) -> None:
        with self._lock:
            self._faults.extend(faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str) -> Fault | None:
        """The first armed fault matching this request, consumed by one."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.fired += 1
                    if fault.count is not None:
                        fault.count -= 1
                        if fault.count <= 0:
                            self._faults.remove(fault)
                    self.injected[fault.kind] += 1
                    return fault
        return None

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.describe() for f in self._faults]


class RequestStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_path: Counter[str] = Counter()
        self.by_route: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()

    def record(self, method: str, path: str) -> None:
        with self._lock:
            self.by_path[path] += 1
            self.by_route[f"{method} {path}"] += 1

    def record_status(self, status: int) -> None:
        with self._lock:
            self.by_status[str(status)] += 1

    def reset(self) -> None:
        with self._lock:
            self.by_path.clear()
            self.by_route.clear()
            self.by_status.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"total": sum(self.by_path.values()), "by_path": dict(self.by_path),
                    "requests": dict(self.by_route), "by_status": dict(self.by_status)}
