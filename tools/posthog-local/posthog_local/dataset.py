"""The dataset as plain Python values: what the truths read, whether fresh from the generator or
loaded back from the Parquet files of a data directory."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple


class EventRow(NamedTuple):
    ts: int  # UTC epoch milliseconds
    uuid: str
    event: str
    distinct_id: str
    properties: str  # JSON text, as stored


@dataclass
class Dataset:
    reference_ms: int
    events: list[EventRow]  # sorted by (ts, uuid)
    persons: list[dict[str, Any]]  # id, distinct_id, properties (dict), created_at (ms)
    flags: list[dict[str, Any]]
    cohorts: list[dict[str, Any]] = field(default_factory=list)
    experiments: list[dict[str, Any]] = field(default_factory=list)
    _props: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def props(self, row: EventRow) -> dict[str, Any]:
        """The parsed properties of an event (cached by uuid)."""
        cached = self._props.get(row.uuid)
        if cached is None:
            cached = json.loads(row.properties) if row.properties else {}
            self._props[row.uuid] = cached
        return cached


EVENT_FILES = ("events.parquet", "bulk_events.parquet")


def load_dataset(data_dir: Path) -> Dataset:
    """Read a generated data directory back into Python (rows only; all logic stays in Python)."""
    import duckdb  # local import: the truths themselves never need DuckDB

    meta = json.loads((data_dir / "meta.json").read_text())
    resources = json.loads((data_dir / "resources.json").read_text())
    con = duckdb.connect()
    try:
        files = [str(data_dir / name) for name in EVENT_FILES if (data_dir / name).exists()]
        rows = con.execute(
            "SELECT epoch_ms(timestamp), uuid, event, distinct_id, properties "
            "FROM read_parquet($files) ORDER BY timestamp, uuid",
            {"files": files},
        ).fetchall()
        persons_raw = con.execute(
            "SELECT id, distinct_id, properties, epoch_ms(created_at) FROM read_parquet($f) ORDER BY id",
            {"f": str(data_dir / "persons.parquet")},
        ).fetchall()
    finally:
        con.close()
    events = [EventRow(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]
    persons = [
        {"id": p[0], "distinct_id": p[1], "properties": json.loads(p[2]), "created_at": int(p[3])}
        for p in persons_raw
    ]
    return Dataset(
        reference_ms=int(meta["reference_ms"]),
        events=events,
        persons=persons,
        flags=resources["feature_flags"],
        cohorts=resources["cohorts"],
        experiments=resources.get("experiments", []),
    )
