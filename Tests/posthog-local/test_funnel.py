"""windowFunnel answers as ClickHouse's does: a 5-step funnel over the demo dataset against an
independent Python implementation of ClickHouse's algorithm (AggregateFunctionWindowFunnel,
default mode), read from the generated events themselves.

ClickHouse: for each row, (timestamp, step) for every condition the row meets, highest step first;
a stable sort by timestamp; step 1 starts a chain at its time, step k takes over step k-1's chain
start when the event is at most `window` after it; the level is the highest step reached.
toDateTime() makes the timestamps whole seconds. (Rows with the same second are ordered by step,
highest first: ClickHouse leaves their order unspecified.)
"""
from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pytest
from phl_support import ROOT, Server

STEPS = ["$pageview", "dashboard_viewed", "report_created", "report_exported", "$autocapture"]


def clickhouse_level(pairs: list[tuple[int, int]], k: int, window: int) -> int:
    starts: list[int | None] = [None] * k
    for t, step in sorted(pairs, key=lambda p: (p[0], -p[1])):
        if step == 1:
            starts[0] = t
        elif starts[step - 2] is not None and t <= starts[step - 2] + window:  # type: ignore[operator]
            starts[step - 1] = starts[step - 2]
    return max((i + 1 for i, s in enumerate(starts) if s is not None), default=0)


@pytest.fixture(scope="module")
def dataset(data_dir: Path):  # type: ignore[no-untyped-def]
    import sys

    sys.path.insert(0, str(ROOT / "tools" / "posthog-local"))
    from posthog_local.dataset import load_dataset

    return load_dataset(data_dir)


@pytest.mark.parametrize("window", [14 * 86400, 3600, 60])
def test_five_step_funnel_matches_clickhouses_algorithm(server: Server, dataset, window: int) -> None:  # type: ignore[no-untyped-def]
    start_ms = dataset.reference_ms - 60 * 86_400_000
    pairs: dict[str, list[tuple[int, int]]] = defaultdict(list)
    seen: set[str] = set()
    for row in dataset.events:
        if not start_ms <= row.ts < dataset.reference_ms:
            continue
        seen.add(row.distinct_id)
        for index in range(len(STEPS), 0, -1):
            if row.event == STEPS[index - 1]:
                pairs[row.distinct_id].append((row.ts // 1000, index))
    expected = Counter(clickhouse_level(pairs[d], len(STEPS), window) for d in seen)
    conditions = ", ".join(f"event = {{s{i}}}" for i in range(len(STEPS)))
    got = server.rows(
        f"SELECT level, count() FROM (SELECT distinct_id, windowFunnel({{w}})(toDateTime(timestamp), {conditions}) AS level "
        "FROM events WHERE timestamp >= now() - INTERVAL 60 DAY AND timestamp < now() GROUP BY distinct_id) "
        "GROUP BY level ORDER BY level",
        {"w": window, **{f"s{i}": s for i, s in enumerate(STEPS)}})
    assert {level: n for level, n in got} == dict(expected)
    assert len(expected) >= 3 and (window < 86400 or expected[5] > 0)  # the data exercises the deep steps
