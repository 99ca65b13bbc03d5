"""A small HogQL builder for the common filters. Values always travel in PostHog's `values`
field and are referenced as `{placeholders}`; identifiers (event and property names) are
validated and passed as values too (`properties[{p0}]`), so nothing a caller gives is ever
pasted into query text."""
from __future__ import annotations

import re
from typing import Any

from .errors import ValidationError

IDENTIFIER = re.compile(r"^[$A-Za-z_][$A-Za-z0-9_.:/ -]{0,199}$")
COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def check_identifier(name: str, what: str = "name") -> str:
    """An event or property name: letters, digits, `$ _ . : / -` and spaces; no quotes, braces or semicolons."""
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise ValidationError(f"Invalid {what} {name!r}: use letters, digits, $ _ . : / - and spaces only.")
    return name


class Query:
    """`Query("SELECT event, count() AS n FROM events").last_days(7).event_in(["a"]).group_by("event")`."""

    def __init__(self, select: str) -> None:
        self._select = select
        self._where: list[str] = []
        self._group: list[str] = []
        self._order: list[str] = []
        self._limit: int | None = None
        self.values: dict[str, Any] = {}

    def _param(self, value: Any) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return "{" + name + "}"

    def last_days(self, days: int) -> "Query":
        if not isinstance(days, int) or isinstance(days, bool) or not 0 < days <= 3650:
            raise ValidationError("days must be a whole number between 1 and 3650.")
        self._where.append(f"timestamp >= now() - toIntervalDay({self._param(days)}) AND timestamp < now()")
        return self

    def between(self, start: str, end: str) -> "Query":
        self._where.append(f"timestamp >= {self._param(start)} AND timestamp < {self._param(end)}")
        return self

    def event_in(self, events: list[str]) -> "Query":
        names = [check_identifier(e, "event name") for e in events]
        if names:
            self._where.append(f"event IN {self._param(names)}")
        return self

    def event_is(self, event: str) -> "Query":
        self._where.append(f"event = {self._param(check_identifier(event, 'event name'))}")
        return self

    def property_equals(self, prop: str, value: Any) -> "Query":
        self._where.append(f"properties[{self._param(check_identifier(prop, 'property name'))}] = {self._param(value)}")
        return self

    def distinct_id_is(self, distinct_id: str) -> "Query":
        self._where.append(f"distinct_id = {self._param(str(distinct_id))}")
        return self

    def where(self, condition: str, **values: Any) -> "Query":
        """A trusted condition written with its own `{placeholders}`, bound from `values`."""
        for k, v in values.items():
            if not COLUMN.match(k) or re.match(r"^p\d+$", k):
                raise ValidationError(f"Invalid placeholder name {k!r}.")
            self.values[k] = v
        self._where.append(condition)
        return self

    def group_by(self, *columns: str) -> "Query":
        self._group += [c for c in columns if COLUMN.match(c) or _raise(c)]
        return self

    def order_by(self, *terms: str) -> "Query":
        for t in terms:
            col, _, direction = t.partition(" ")
            if not COLUMN.match(col) or direction.upper() not in ("", "ASC", "DESC"):
                raise ValidationError(f"Invalid ORDER BY term {t!r}.")
            self._order.append(t)
        return self

    def limit(self, n: int) -> "Query":
        if not isinstance(n, int) or isinstance(n, bool) or not 0 < n <= 50000:
            raise ValidationError("limit must be a whole number between 1 and 50000.")
        self._limit = n
        return self

    def build(self) -> tuple[str, dict[str, Any]]:
        sql = self._select
        if self._where:
            sql += " WHERE " + " AND ".join(f"({w})" for w in self._where)
        if self._group:
            sql += " GROUP BY " + ", ".join(self._group)
        if self._order:
            sql += " ORDER BY " + ", ".join(self._order)
        if self._limit is not None:
            sql += f" LIMIT {self._param(self._limit)}"
        return sql, dict(self.values)


def _raise(column: str) -> bool:
    raise ValidationError(f"Invalid column name {column!r}.")
