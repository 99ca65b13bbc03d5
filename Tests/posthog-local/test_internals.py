"""In-process checks of pieces that are hard to reach over HTTP: engine failures, masking, specs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "posthog-local"))

from posthog_local.app import App, Request  # noqa: E402
from posthog_local.config import Settings, mask  # noqa: E402
from posthog_local.faults import FaultSpecError, parse_spec  # noqa: E402
from posthog_local.hogql import HogQLError, translate  # noqa: E402
from posthog_local.store import QueryFailed  # noqa: E402


class BrokenStore:
    meta = {"reference_time": "2026-11-01T00:00:00.000000Z"}

    def run_hogql(self, query: str, values: dict, **settings: object) -> dict:
        raise QueryFailed("InternalException")


def test_engine_failure_is_a_generic_500() -> None:
    settings = Settings()
    app = App(settings, BrokenStore(), None, None, Path("."), log=lambda m: None)  # type: ignore[arg-type]
    response = app.handle(Request("POST", "/api/projects/1/query/", {},
                                  {"authorization": f"Bearer {settings.personal_key}"},
                                  b'{"query": {"kind": "HogQLQuery", "query": "SELECT 1"}}', "127.0.0.1"))
    assert response.status == 500
    assert b"A server error occurred." in response.body and b"Internal" not in response.body


def test_mask_never_shows_a_whole_key() -> None:
    assert mask("phx_demo_personal_key") == "phx_demo…"
    assert mask("short") not in ("short", "short…") and mask("") == "(none)"


@pytest.mark.parametrize("spec,kind,count", [("429:count=2:retry_after=1:path=/api/", "429", 2),
                                             ("drop", "drop", 1), ("slow:ms=5:count=*", "slow", None)])
def test_fault_specs(spec: str, kind: str, count: int | None) -> None:
    fault = parse_spec(spec)
    assert (fault.kind, fault.count) == (kind, count)


@pytest.mark.parametrize("spec", ["", "418", "429:count=0", "429:nope=1", "slow:ms=x", "503:path=api"])
def test_bad_fault_specs(spec: str) -> None:
    with pytest.raises(FaultSpecError):
        parse_spec(spec)


def test_values_never_enter_the_sql_text() -> None:
    secret = "it's-a-value-OR-1=1"
    tr = translate("SELECT count() FROM events WHERE event = {v} AND distinct_id IN {ids}",
                   {"v": secret, "ids": [secret]}, "TIMESTAMP '2026-11-01 00:00:00'", "DATE '2026-11-01'")
    assert secret not in tr.sql and "$p_v" in tr.sql and "$p_ids" in tr.sql
    assert tr.params == {"p_v": secret, "p_ids": [secret]}


def test_unsupported_function_is_named() -> None:
    with pytest.raises(HogQLError, match="topK"):
        translate("SELECT topK(3)(event) FROM events", {}, "TIMESTAMP '2026-11-01'", "DATE '2026-11-01'")
