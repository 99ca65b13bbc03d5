"""export_events over 1,000,000 events: every row once, in (timestamp, uuid) order, and peak memory
flat between 100k and 1M (each export in a fresh /usr/bin/python3, measured by ru_maxrss).
About a minute (the bulk server loads in ~25 s, the exports take ~15 s); `-m 'not slow'` skips it."""
from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest
from driver_support import BULK_EVENTS, ROOT
from phl_support import ENV, PERSONAL_KEY, PROJECT_ID, Server

from posthog_driver import PostHogClient


def _benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("driver_export_bench", ROOT / "Benchmarks" / "driver_export.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_export_a_million_events_with_flat_memory(bulk_server: Server) -> None:
    bench = _benchmark()
    bulk = bulk_server.truths()["bulk"]
    assert bulk["events"] == BULK_EVENTS
    small_end = bench.tenth_of(bulk["start"], bulk["end"])
    with PostHogClient(api_url=bulk_server.url, personal_api_key=PERSONAL_KEY, project_id=PROJECT_ID) as client:
        expected_small = client.rows("SELECT count() AS n FROM events WHERE timestamp >= toDateTime({a}) "
                                     "AND timestamp < toDateTime({b})", {"a": bulk["start"], "b": small_end})[0]["n"]
    env = {"POSTHOG_PERSONAL_API_KEY": ENV["POSTHOG_PERSONAL_API_KEY"], "POSTHOG_PROJECT_ID": str(PROJECT_ID)}
    small = bench.measure(bulk_server.url, bulk["start"], small_end, 10_000, env)
    large = bench.measure(bulk_server.url, bulk["start"], bulk["end"], 10_000, env)
    ratio = large["maxrss_kib"] / small["maxrss_kib"]
    print(f"100k: {small}\n1M: {large}\npeak RSS ratio 1M/100k: {ratio:.3f}")
    assert small["rows"] == expected_small == BULK_EVENTS // 10
    assert large["rows"] == BULK_EVENTS
    assert small["ordered"] and large["ordered"]
    assert ratio <= 1.2
    assert large["maxrss_kib"] - large["baseline_kib"] < 64 * 1024  # one page, not the export, in memory
