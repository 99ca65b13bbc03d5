"""A small HogQL builder for the common filters, which never pastes a value into query text.

Values (event names, property values, ids, times, day counts) travel in PostHog's `values` field
and appear in the text only as `{placeholders}` whose names the builder generates (`p0`, `p1`, …).
Identifiers are the one thing that must be text: event fields come from a fixed list, and property
names are checked against a strict pattern (letters, digits, `_ $ @ + - . : /` and single inner
spaces; no quotes, backticks, brackets, braces, semicolons, backslashes or control characters) and
then emitted as `properties.name` when they are plain identifiers, else as `properties[{pN}]` with
the name itself bound as a value. The only literal the builder writes is a LIMIT it has checked to
be an int.

    sql, values = (Query("SELECT event, count() AS n FROM events")
                   .last_days(7).event_in(["$pageview", "signed_up"])
                   .property_equals("$browser", "Chrome")
                   .group_by("event").order_by("n DESC").limit(10).build())
    client.query(sql, values)
"""
from __future__ import annotations

import re

from .errors import InvalidIdentifierError, ValidationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable

MAX_LIMIT = 50_000  # PostHog caps any LIMIT here (posthog/hogql/constants.py)
_PLAIN = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*\Z")
_PROPERTY = re.compile(r"[\w$@+\-.:/]+(?: [\w$@+\-.:/]+)*\Z")
_PLACEHOLDER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}\Z")
_GENERATED = re.compile(r"p\d+\Z")
_ORDER_TERM = re.compile(r"([A-Za-z_$][A-Za-z0-9_$]*(?:\.[A-Za-z_$][A-Za-z0-9_$]*)*)(?:\s+(ASC|DESC))?\Z",
                         re.IGNORECASE)
# Words a dotted path must not be (HogQL could read them as syntax): those go through brackets.
_KEYWORDS = frozenset("""all and any array as asc between both by case cast cohort cross current date day
desc distinct else end exists extract false first following for from full group having hour if ilike in
inf inner interval is join last leading left like limit minute month nan not null nulls offset on or
order outer over partition preceding range right rollup rows second select settings some then ties to
top totals trailing trim true unbounded union using week when where window with year""".split())

EVENT_FIELDS = ("uuid", "event", "properties", "timestamp", "distinct_id", "person_id", "elements_chain",
                "created_at", "$session_id", "$window_id")
PERSON_FIELDS = ("id", "created_at", "properties", "is_identified")
TABLE_FIELDS = {"events": EVENT_FIELDS, "persons": PERSON_FIELDS,
                "person_distinct_ids": ("distinct_id", "person_id"),
                "cohort_people": ("cohort_id", "person_id")}


def check_identifier(name: Any, what: str = "property name") -> str:
    """A property (or other) name safe to use as a HogQL path, else InvalidIdentifierError.

    The name is never echoed in the error: it may be hostile, or a secret pasted by mistake."""
    if not isinstance(name, str) or not name or len(name) > 200 or not _PROPERTY.match(name):
        raise InvalidIdentifierError(
            f"The {what} is not allowed: use letters, digits, _ $ @ + - . : / and single spaces "
            f"(at most 200 characters; no quotes, brackets, braces or semicolons).")
    return name


def iso_utc(value: Any, what: str = "time") -> str:
    """A datetime, date or ISO-8601 string as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC; naive = UTC)."""
    import datetime as dt

    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise ValidationError(f"The {what} must be an ISO-8601 date or time such as "
                                  f"2026-10-01T00:00:00Z.") from None
        value = parsed
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, dt.date):
        return value.strftime("%Y-%m-%dT00:00:00.000000Z")
    raise ValidationError(f"The {what} must be a datetime, a date or an ISO-8601 string.")


def _positive_int(value: Any, what: str, maximum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= maximum:
        raise ValidationError(f"{what} must be a whole number from 1 to {maximum}.")
    return value


def _compare_value(value: Any) -> Any:
    """Property values are strings in PostHog unless typed: compare numbers and booleans as text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    if value is None or isinstance(value, str):
        return value
    raise ValidationError("A property value must be a string, a number, a boolean or None.")


class Query:
    """A SELECT written by the caller (trusted text) plus filters built from untrusted values.

    `Query("SELECT ... FROM events")` or `Query.select(["event", "properties.$browser"])`."""

    def __init__(self, select: str) -> None:
        if not isinstance(select, str) or not select.strip():
            raise ValidationError("Query needs the SELECT ... FROM text.")
        self._select = select.strip()
        self._where: list[str] = []
        self._group: list[str] = []
        self._order: list[str] = []
        self._limit: int | None = None
        self._counter = 0
        self.values: dict[str, Any] = {}

    @classmethod
    def select(cls, fields: Iterable[str], table: str = "events") -> "Query":
        """SELECT of checked field names (`event`, `properties.$browser`, `person.properties.email`)."""
        if table not in TABLE_FIELDS:
            raise ValidationError("The table must be one of " + ", ".join(TABLE_FIELDS) + ".")
        query = cls("SELECT 1")  # replaced below, once the fields are bound
        refs = [query.field(f, table) for f in fields]
        if not refs:
            raise ValidationError("Select at least one field.")
        query._select = f"SELECT {', '.join(refs)} FROM {table}"
        return query

    # -- binding ---------------------------------------------------------------------------------
    def bind(self, value: Any) -> str:
        """Binds `value` under a fresh generated name; returns its `{placeholder}` text."""
        name = f"p{self._counter}"
        self._counter += 1
        self.values[name] = value
        return "{" + name + "}"

    def property(self, name: str, person: bool = False) -> str:
        """A safe reference to an event property (or, with person=True, a person property)."""
        base = "person.properties" if person else "properties"
        check_identifier(name)
        if _PLAIN.match(name) and name.lower() not in _KEYWORDS:
            return f"{base}.{name}"
        return f"{base}[{self.bind(name)}]"

    def field(self, name: str, table: str = "events") -> str:
        """A checked column (`timestamp`) or property path (`properties.x`, `person.properties.x`)."""
        if not isinstance(name, str):
            raise InvalidIdentifierError("A field name must be a string.")
        if name in TABLE_FIELDS.get(table, ()):
            return name
        if name.startswith("properties."):
            return self.property(name[len("properties."):])
        if table == "events" and name.startswith("person.properties."):
            return self.property(name[len("person.properties."):], person=True)
        raise InvalidIdentifierError(
            f"Unknown field for {table}: use one of {', '.join(TABLE_FIELDS.get(table, ()))}, "
            f"properties.<name>" + (" or person.properties.<name>." if table == "events" else "."))

    # -- filters ---------------------------------------------------------------------------------
    def where(self, condition: str, **values: Any) -> "Query":
        """A trusted condition written with its own `{placeholders}`, bound from `values`."""
        if not isinstance(condition, str) or not condition.strip():
            raise ValidationError("where() needs a condition.")
        for key, value in values.items():
            if not _PLACEHOLDER_NAME.match(key) or _GENERATED.match(key):
                raise ValidationError("Placeholder names are letters, digits and _, start with a letter, "
                                      "and are not p0, p1, … (the builder's own).")
            if key in self.values:
                raise ValidationError("A placeholder name is bound twice.")
            self.values[key] = value
        self._where.append(condition.strip())
        return self

    def last_days(self, days: int, column: str = "timestamp") -> "Query":
        """The half-open window [now() - days, now())."""
        col = self.field(column)
        days = _positive_int(days, "days", 36500)
        self._where.append(f"{col} >= now() - toIntervalDay({self.bind(days)}) AND {col} < now()")
        return self

    def between(self, start: Any, end: Any, column: str = "timestamp") -> "Query":
        """start <= column < end; datetimes, dates or ISO-8601 strings (UTC when naive)."""
        col = self.field(column)
        a, b = iso_utc(start, "start"), iso_utc(end, "end")
        self._where.append(f"{col} >= toDateTime({self.bind(a)}) AND {col} < toDateTime({self.bind(b)})")
        return self

    def after(self, start: Any, column: str = "timestamp") -> "Query":
        self._where.append(f"{self.field(column)} >= toDateTime({self.bind(iso_utc(start, 'start'))})")
        return self

    def before(self, end: Any, column: str = "timestamp") -> "Query":
        self._where.append(f"{self.field(column)} < toDateTime({self.bind(iso_utc(end, 'end'))})")
        return self

    def event_is(self, event: str) -> "Query":
        self._where.append(f"event = {self.bind(_text(event, 'event name'))}")
        return self

    def event_in(self, events: Iterable[str]) -> "Query":
        """event IN the list; an empty list adds no filter."""
        names = [_text(e, "event name") for e in _as_list(events)]
        if names:
            self._where.append(f"event IN {self.bind(names)}")
        return self

    def property_equals(self, prop: str, value: Any, person: bool = False) -> "Query":
        ref = self.property(prop, person)
        value = _compare_value(value)
        self._where.append(f"isNull({ref})" if value is None else f"{ref} = {self.bind(value)}")
        return self

    def property_in(self, prop: str, values: Iterable[Any], person: bool = False) -> "Query":
        ref = self.property(prop, person)
        items = [_compare_value(v) for v in _as_list(values)]
        self._where.append(f"{ref} IN {self.bind(items)}" if items else "false")
        return self

    def property_is_set(self, prop: str, person: bool = False) -> "Query":
        self._where.append(f"isNotNull({self.property(prop, person)})")
        return self

    def distinct_id_is(self, distinct_id: str) -> "Query":
        self._where.append(f"distinct_id = {self.bind(_text(distinct_id, 'distinct_id'))}")
        return self

    def distinct_id_in(self, distinct_ids: Iterable[str]) -> "Query":
        ids = [_text(d, "distinct_id") for d in _as_list(distinct_ids)]
        self._where.append(f"distinct_id IN {self.bind(ids)}" if ids else "false")
        return self

    # -- shape -----------------------------------------------------------------------------------
    def group_by(self, *columns: str) -> "Query":
        for column in columns:
            if not isinstance(column, str) or not _ORDER_TERM.match(column) or " " in column.strip():
                raise InvalidIdentifierError("GROUP BY takes column names or aliases.")
            self._group.append(column.strip())
        return self

    def order_by(self, *terms: str) -> "Query":
        for term in terms:
            match = _ORDER_TERM.match(term.strip()) if isinstance(term, str) else None
            if not match:
                raise InvalidIdentifierError("ORDER BY takes a column name or alias, then ASC or DESC.")
            self._order.append(match.group(1) + (" " + match.group(2).upper() if match.group(2) else ""))
        return self

    def limit(self, n: int) -> "Query":
        self._limit = _positive_int(n, "limit", MAX_LIMIT)
        return self

    def where_sql(self) -> str:
        return " AND ".join(f"({w})" for w in self._where) if self._where else "true"

    def build(self) -> tuple[str, dict[str, Any]]:
        sql = self._select
        if self._where:
            sql += " WHERE " + self.where_sql()
        if self._group:
            sql += " GROUP BY " + ", ".join(self._group)
        if self._order:
            sql += " ORDER BY " + ", ".join(self._order)
        if self._limit is not None:
            sql += f" LIMIT {int(self._limit)}"
        return sql, dict(self.values)


def _text(value: Any, what: str) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise ValidationError(f"The {what} must be a non-empty string.")
    return value


def _as_list(values: Any) -> list[Any]:
    if isinstance(values, (str, bytes)) or values is None:
        raise ValidationError("Give a list of values, not a single string.")
    return list(values)
