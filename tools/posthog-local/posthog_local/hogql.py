"""HogQL (ClickHouse dialect) -> DuckDB SQL, with `{name}` placeholders bound as parameters.

The pipeline: a small scanner turns `{name}` into marker identifiers and back-quotes `$names`
(outside string literals and comments); sqlglot parses the text as ClickHouse; one post-order
pass resolves tables, property access (`properties.$browser`, `properties['x']`,
`person.properties.email`), placeholders (to DuckDB `$p_name` parameters: values never enter the
SQL text) and the ClickHouse functions we support; the outer LIMIT gets PostHog's caps. Anything
outside that subset is a HogQLError (a 400 for the client), never raw DuckDB access: tables and
functions are allow-listed.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any, Callable

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, TokenError, UnsupportedError

from .hogql_check import HogQLError, check

DEFAULT_LIMIT = 100
MAX_LIMIT = 50_000
PH_PREFIX = "__hogql_ph_"
ALLOWED_TABLES = {"events", "persons", "person_distinct_ids", "cohort_people"}
EVENTS_WITH_PERSON = "events_with_person"
OFFSET_MESSAGE = (
    "OFFSET is not allowed in queries made with a personal API key: paginate with a keyset "
    "instead, e.g. WHERE timestamp > {last_timestamp} ORDER BY timestamp LIMIT 1000")




@dataclass
class Translation:
    sql: str
    params: dict[str, Any]
    columns: list[str] | None  # None: take DuckDB's names (SELECT *)
    limit: int  # rows returned at most
    fetch: int  # rows asked of DuckDB (limit + 1 to detect hasMore)
    has_explicit_limit: bool


# --- 1. scanning ---------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}")


def _scan(query: str, values: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """Replace placeholders with marker identifiers and back-quote `$identifiers`.

    Returns the new text and {marker: placeholder name}.
    """
    out: list[str] = []
    markers: dict[str, str] = {}
    i, n = 0, len(query)
    while i < n:
        c = query[i]
        if c == "'":
            j = i + 1
            while j < n:
                if query[j] == "\\":
                    j += 2
                    continue
                if query[j] == "'":
                    if j + 1 < n and query[j + 1] == "'":
                        j += 2
                        continue
                    break
                j += 1
            if j >= n:
                raise HogQLError("Syntax error: unterminated string literal", "hogql_syntax_error")
            out.append(query[i:j + 1])
            i = j + 1
        elif c in "\"`":
            j = query.find(c, i + 1)
            if j < 0:
                raise HogQLError(f"Syntax error: unterminated quoted identifier {c}", "hogql_syntax_error")
            out.append(query[i:j + 1])
            i = j + 1
        elif query.startswith("--", i):
            j = query.find("\n", i)
            j = n if j < 0 else j
            out.append(query[i:j])
            i = j
        elif query.startswith("/*", i):
            j = query.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(query[i:j])
            i = j
        elif c == "{":
            match = _PLACEHOLDER.match(query, i)
            if not match:
                raise HogQLError("Syntax error: '{' must start a placeholder like {name}")
            name = match.group(1)
            if name not in values:
                raise HogQLError(f"Unresolved placeholder: {{{name}}}")
            marker = PH_PREFIX + name.replace(".", "__dot__")
            markers[marker] = name
            out.append(marker)
            i = match.end()
        elif c.isalpha() or c in "_$":
            j = i
            while j < n and (query[j].isalnum() or query[j] in "_$"):
                j += 1
            word = query[i:j]
            out.append(f"`{word}`" if "$" in word else word)
            i = j
        elif c.isdigit():
            j = i
            while j < n and (query[j].isalnum() or query[j] in "_."):
                j += 1
            out.append(query[i:j])
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out), markers


# --- 2. values -----------------------------------------------------------------------------------

def _param_value(name: str, value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        items = [_param_value(name, v) for v in value]
        kinds = {type(v) for v in items if v is not None}
        if kinds == {int, float}:
            return [float(v) if v is not None else None for v in items]
        if len(kinds) > 1:
            raise HogQLError(f"Placeholder {{{name}}}: list values must all have one type")
        if any(isinstance(v, list) for v in items):
            raise HogQLError(f"Placeholder {{{name}}}: nested lists are not supported")
        return items
    raise HogQLError(f"Placeholder {{{name}}}: unsupported value type {type(value).__name__}")


# --- 3. the rewrite ------------------------------------------------------------------------------

def _fn(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def _cast(node: exp.Expression, to: str, safe: bool = False) -> exp.Expression:
    cls = exp.TryCast if safe else exp.Cast
    return cls(this=node, to=exp.DataType.build(to))


def _raw(sql: str) -> exp.Expression:
    """A DuckDB SQL fragment built by this module (never contains client values)."""
    return exp.Var(this=sql)


def _pointer(keys: list[str]) -> str:
    return "/" + "/".join(k.replace("~", "~0").replace("/", "~1") for k in keys)


_JSON_ACCESS = "__json_access__"


def _json_access(base: exp.Expression, key: exp.Expression | list[str]) -> exp.Expression:
    if isinstance(key, list):
        path: exp.Expression = exp.Literal.string(_pointer(key))
    elif isinstance(key, exp.Literal) and key.is_string:
        path = exp.Literal.string(_pointer([key.this]))
    else:
        escaped = _fn("replace", _fn("replace", _cast(key, "VARCHAR"), exp.Literal.string("~"),
                                     exp.Literal.string("~0")),
                      exp.Literal.string("/"), exp.Literal.string("~1"))
        path = exp.DPipe(this=exp.Literal.string("/"), expression=escaped)
    node = _fn("json_extract_string", base, path)
    node.meta[_JSON_ACCESS] = True
    return node


_INTERVAL_FN = {"second": "to_seconds", "minute": "to_minutes", "hour": "to_hours",
                "day": "to_days", "week": "to_weeks", "month": "to_months",
                "quarter": "to_months", "year": "to_years"}

_TRUNC_UNITS = {"tostartofday": "day", "tostartofhour": "hour", "tostartofminute": "minute",
                "tostartofsecond": "second", "tostartoffifteenminutes": None}
_DATE_TRUNC = {"tostartofmonth": "month", "tostartofquarter": "quarter", "tostartofyear": "year"}
_PARTS = {"toyear": "year", "tomonth": "month", "todayofmonth": "day", "tohour": "hour",
          "tominute": "minute", "tosecond": "second", "todayofweek": "isodow",
          "todayofyear": "doy", "toquarter": "quarter", "toisoweek": "week"}
_SIMPLE_AGGS = {"groupArray": "list", "anyLast": "last", "stddevPop": "stddev_pop",
                "stddevSamp": "stddev_samp", "varPop": "var_pop", "varSamp": "var_samp",
                "covarPop": "covar_pop", "covarSamp": "covar_samp", "any": "any_value",
                "anyHeavy": "any_value", "groupArraySorted": None}
_DISTINCT_AGGS = {"uniq", "uniqExact", "uniqCombined", "uniqCombined64", "uniqHLL12",
                  "uniqTheta", "countDistinct"}
_IF_AGGS = {"sum": "sum", "avg": "avg", "min": "min", "max": "max", "count": "count",
            "uniq": "count_distinct", "uniqExact": "count_distinct", "any": "any_value",
            "groupArray": "list", "argMax": "arg_max", "argMin": "arg_min"}

# sqlglot node classes that DuckDB renders correctly and that are safe (no I/O).
_SAFE_FUNCS: tuple[type[exp.Expression], ...] = (
    exp.Count, exp.CountIf, exp.Min, exp.Max, exp.Sum, exp.Avg, exp.DateDiff, exp.If,
    exp.Coalesce, exp.Round, exp.Lower, exp.Upper, exp.Abs, exp.Floor, exp.Ceil, exp.Sqrt,
    exp.Greatest, exp.Least, exp.Concat, exp.Substring, exp.RegexpLike, exp.TimeToStr,
    exp.DateAdd, exp.DateSub, exp.ArgMin, exp.ArgMax, exp.AnyValue, exp.Exp, exp.Ln, exp.Log,
    exp.Pow, exp.StrPosition, exp.Trim, exp.StartsWith, exp.EndsWith, exp.Array, exp.Cast,
    exp.TryCast, exp.Nullif, exp.Typeof, exp.ArraySum, exp.Corr, exp.Explode, exp.Case,
    exp.DateTrunc, exp.TimestampTrunc, exp.Stddev, exp.StddevPop, exp.StddevSamp,
    exp.Variance, exp.VariancePop, exp.Struct, exp.Length, exp.ArrayContains, exp.Split,
    exp.IntDiv, exp.MD5, exp.SHA, exp.Reverse, exp.Left, exp.Right, exp.Repeat,
    exp.RegexpExtract, exp.RegexpReplace, exp.Replace, exp.Sign, exp.Mod, exp.ArrayAgg,
    exp.Quantile, exp.Median, exp.Pad, exp.Upper, exp.Initcap, exp.CurrentDate,
    exp.CurrentTimestamp, exp.Filter, exp.Lambda, exp.ArrayFilter,
    # window functions
    exp.RowNumber, exp.Rank, exp.DenseRank, exp.Lag, exp.Lead, exp.FirstValue, exp.LastValue,
    exp.NthValue, exp.Ntile, exp.PercentRank, exp.CumeDist,
)


def _not_implemented(name: str) -> HogQLError:
    return HogQLError(f"posthog-local does not implement the HogQL function '{name}(...)' (PostHog has it); "
                      "rewrite the query without it to test it here", "not_implemented_in_posthog_local")


class _Rewriter:
    def __init__(self, values: dict[str, Any], markers: dict[str, str], now_sql: str,
                 today_sql: str, aliases: set[str], ctes: set[str]) -> None:
        self.values = values
        self.markers = markers
        self.params: dict[str, Any] = {}
        self.param_values: dict[str, Any] = {}  # DuckDB param name -> value
        self.param_names: dict[str, str] = {}  # DuckDB param name -> placeholder name
        self.now_sql = now_sql
        self.today_sql = today_sql
        self.aliases = aliases
        self.ctes = ctes
        self.needs_person = False
        self.week_mode = 3

    # -- helpers -------------------------------------------------------------------------------
    def placeholder(self, marker: str) -> exp.Expression:
        name = self.markers[marker]
        pname = "p_" + re.sub(r"[^A-Za-z0-9_]", "_", name)
        self.param_names[pname] = name
        value = _param_value(name, self.values[name])
        self.params[pname] = value
        self.param_values[pname] = value
        return exp.Placeholder(this=pname)

    def const_int(self, node: exp.Expression | None, what: str) -> int:
        if isinstance(node, exp.Placeholder) and node.name in self.param_values:
            value = self.param_values[node.name]
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            raise HogQLError(f"{what} must be an integer")
        if isinstance(node, exp.Literal) and not node.is_string:
            try:
                return int(node.this)
            except ValueError as err:
                raise HogQLError(f"{what} must be an integer") from err
        if isinstance(node, exp.Neg):
            return -self.const_int(node.this, what)
        raise HogQLError(f"{what} must be a constant integer")

    def list_param(self, node: exp.Expression | None) -> list[Any] | None:
        if isinstance(node, exp.Placeholder) and isinstance(self.param_values.get(node.name), list):
            return self.param_values[node.name]
        return None

    # -- the pass ------------------------------------------------------------------------------
    def rewrite(self, node: exp.Expression) -> exp.Expression:
        for key, child in list(node.args.items()):
            if isinstance(child, exp.Expression):
                node.set(key, self.rewrite(child))
            elif isinstance(child, list):
                node.set(key, [self.rewrite(c) if isinstance(c, exp.Expression) else c
                               for c in child])
        return self.visit(node)

    def visit(self, node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column):
            return self.column(node)
        if isinstance(node, exp.Table):
            return self.table(node)
        if isinstance(node, exp.Bracket):
            base = node.this
            if len(node.expressions) == 1 and (
                    base.meta.get(_JSON_ACCESS) or (isinstance(base, exp.Column) and base.name == "properties")
                    or (isinstance(base, exp.Column) and base.name == "__person_properties")):
                return _json_access(base, node.expressions[0])
            return node
        if isinstance(node, exp.In):
            return self.in_(node)
        if isinstance(node, exp.Interval):
            return self.interval(node)
        if isinstance(node, exp.Offset):
            raise HogQLError(OFFSET_MESSAGE)
        if isinstance(node, exp.ParameterizedAgg):
            return self.parameterized(node)
        if isinstance(node, exp.CountIf):
            # ClickHouse: countIf over no matching row is 0 (DuckDB's count_if gives NULL there).
            return exp.Filter(this=exp.Count(this=exp.Star()), expression=exp.Where(this=node.this))
        if isinstance(node, exp.DateDiff):
            return self.date_diff(node)
        if isinstance(node, exp.ApproxDistinct):
            return exp.Count(this=exp.Distinct(expressions=[node.this]))
        if isinstance(node, exp.Count) and node.this is None:
            return exp.Count(this=exp.Star())
        if isinstance(node, exp.Length):
            return _fn("length", node.this)
        if isinstance(node, exp.Quantile):
            return _fn("quantile_cont", node.this, node.args["quantile"])
        if isinstance(node, exp.JSONExtractScalar):
            return self.json_extract(node.this, node.expression, "string")
        if isinstance(node, exp.JSONExtract):
            raise HogQLError("The -> operator is not supported; use properties.name or properties['name']")
        if isinstance(node, exp.CombinedAggFunc):
            return self.combined(node)
        if isinstance(node, exp.AnonymousAggFunc):
            return self.anon_agg(node)
        if isinstance(node, exp.Anonymous):
            return self.anonymous(node)
        if isinstance(node, exp.Func) and not isinstance(node, _SAFE_FUNCS) and not isinstance(
                node, (exp.Connector, exp.Binary, exp.Unary, exp.Predicate)):
            raise _not_implemented(node.sql_name())
        return node

    def date_diff(self, node: exp.DateDiff) -> exp.Expression:
        """dateDiff(unit, a, b) counts unit boundaries crossed (ClickHouse), in the session's time
        zone. DuckDB's date_diff does the same except for weeks, which ClickHouse counts as Monday
        boundaries (toRelativeWeekNum); DuckDB counts whole 7-day spans."""
        unit = (node.unit.name if node.unit is not None else "").lower().strip("'")
        if unit.startswith(PH_PREFIX):  # dateDiff({unit}, …): PostHog prints the value as a constant
            name = next((n for m, n in self.markers.items() if m.lower() == unit), None)
            value = self.values.get(name) if name is not None else None
            if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z]{1,12}", value):
                raise HogQLError("dateDiff's unit must be a constant string such as 'day' or 'week'")
            unit = value.lower()
            node.set("unit", exp.Var(this=unit.upper()))
        if unit not in ("week", "weeks", "wk", "ww"):
            return node
        start, end = node.expression, node.this

        def monday(x: exp.Expression) -> exp.Expression:
            return _cast(_fn("date_trunc", exp.Literal.string("week"), x), "DATE")

        days = _fn("date_diff", exp.Literal.string("day"), monday(start), monday(end))
        return exp.Paren(this=exp.IntDiv(this=days, expression=exp.Literal.number(7)))

    def column(self, node: exp.Column) -> exp.Expression:
        if isinstance(node.this, exp.Star):
            return node
        parts = [p.name for p in node.parts]
        if len(parts) == 1 and parts[0] in self.markers:
            return self.placeholder(parts[0])
        if any(p.startswith(PH_PREFIX) for p in parts):
            raise HogQLError("A placeholder cannot name a table, column or property")
        qualifier: str | None = None
        rest = parts
        if len(parts) >= 2 and parts[0] in self.aliases and parts[0] not in ("properties", "person"):
            qualifier, rest = parts[0], parts[1:]

        def ref(column: str) -> exp.Column:
            return exp.column(column, table=qualifier, quoted=True)

        if rest[0] == "properties" and len(rest) >= 2:
            return _json_access(ref("properties"), rest[1:])
        if rest[0] == "person" and len(rest) >= 2:
            self.needs_person = True
            if rest[1] == "properties":
                if len(rest) == 2:
                    return ref("__person_properties")
                return _json_access(ref("__person_properties"), rest[2:])
            if rest[1] == "id" and len(rest) == 2:
                return ref("person_id")
            if rest[1] == "created_at" and len(rest) == 2:
                return ref("__person_created_at")
            raise HogQLError(f"Unknown field person.{'.'.join(rest[1:])}")
        if rest[0] == "pdi" and len(rest) == 2 and rest[1] == "person_id":
            return ref("person_id")
        if len(rest) > 1:
            raise HogQLError(f"Unknown field {'.'.join(parts)}")
        return node

    def table(self, node: exp.Table) -> exp.Expression:
        if not isinstance(node.this, exp.Identifier):
            raise HogQLError("Table functions are not supported: select from events, persons, "
                             "person_distinct_ids or cohort_people")
        name = node.name
        if node.args.get("db") or node.args.get("catalog"):
            raise HogQLError(f"Unknown table `{'.'.join(p.name for p in node.parts)}`.")
        if name in self.ctes:
            return node
        if name.startswith(PH_PREFIX):
            raise HogQLError("A placeholder cannot name a table, column or property")
        if name not in ALLOWED_TABLES:
            raise HogQLError(f"Unknown table `{name}`.")
        return node

    def in_(self, node: exp.In) -> exp.Expression:
        candidate = node.args.get("field")
        if candidate is None and len(node.expressions) == 1:
            candidate = node.expressions[0]
        items = self.list_param(candidate)
        if items is None:
            if isinstance(candidate, exp.Column) and not node.args.get("query"):
                raise HogQLError("IN needs a list, a subquery or a list placeholder")
            return node
        if not items:
            return exp.false()
        return _fn("list_contains", candidate, node.this)

    def interval(self, node: exp.Interval) -> exp.Expression:
        unit = (node.unit.name if node.unit else "").lower().rstrip("s")
        value = node.this
        if isinstance(value, exp.Literal):
            return node  # INTERVAL 7 DAY, INTERVAL '7 days': DuckDB reads these as they are
        if unit not in _INTERVAL_FN:
            raise HogQLError(f"Unsupported INTERVAL unit {unit!r}")
        amount = _cast(value, "INTEGER")
        if unit == "quarter":
            amount = exp.Mul(this=amount, expression=exp.Literal.number(3))
        return _fn(_INTERVAL_FN[unit], amount)

    def json_extract(self, base: exp.Expression, key: exp.Expression | None, kind: str) -> exp.Expression:
        keys: list[str] | None = None
        if isinstance(key, exp.JSONPath):
            keys = [k.name for k in key.expressions if isinstance(k, exp.JSONPathKey)]
            access = _json_access(base, keys)
        elif key is not None:
            access = _json_access(base, key)
        else:
            raise HogQLError("JSONExtract needs a key")
        if kind == "int":
            return _cast(_fn("trunc", _cast(access, "DOUBLE", safe=True)), "BIGINT", safe=True)
        if kind == "float":
            return _cast(access, "DOUBLE", safe=True)
        if kind == "bool":
            return _cast(access, "BOOLEAN", safe=True)
        return access

    def parameterized(self, node: exp.ParameterizedAgg) -> exp.Expression:
        name = node.name
        params = node.expressions
        args = node.args.get("params") or []
        if name == "windowFunnel":
            if len(params) != 1:
                raise HogQLError("windowFunnel(window)(timestamp, cond1, ...) takes one parameter")
            window = self.const_int(params[0], "windowFunnel window")
            if len(args) < 2:
                raise HogQLError("windowFunnel needs a timestamp and at least one condition")
            return _window_funnel(window, args[0], args[1:])
        if name in ("quantile", "quantileExact", "quantileTDigest") and len(params) == 1 and len(args) == 1:
            return _fn("quantile_cont", args[0], params[0])
        raise _not_implemented(name)

    def combined(self, node: exp.CombinedAggFunc) -> exp.Expression:
        name = str(node.this)
        args = node.expressions
        if name == "countDistinct" and len(args) == 1:
            return exp.Count(this=exp.Distinct(expressions=[args[0]]))
        if name.endswith("If") and name[:-2] in _IF_AGGS and args:
            base, cond = name[:-2], args[-1]
            values = args[:-1]
            target = _IF_AGGS[base]
            if target == "count_distinct":
                agg: exp.Expression = exp.Count(this=exp.Distinct(expressions=values))
            elif target == "count":
                agg = exp.Count(this=values[0] if values else exp.Star())
            else:
                agg = _fn(target, *values)
            return exp.Filter(this=agg, expression=exp.Where(this=cond))
        raise _not_implemented(name)

    def anon_agg(self, node: exp.AnonymousAggFunc) -> exp.Expression:
        name = str(node.this)
        args = node.expressions
        if name in _DISTINCT_AGGS:
            return exp.Count(this=exp.Distinct(expressions=args))
        if name == "groupUniqArray" and len(args) == 1:
            return _fn("list", exp.Distinct(expressions=args))
        target = _SIMPLE_AGGS.get(name)
        if target:
            return _fn(target, *args)
        raise _not_implemented(name)

    def anonymous(self, node: exp.Anonymous) -> exp.Expression:
        name = str(node.this)
        low = name.lower()
        args = list(node.expressions)
        handler = _ANON.get(low)
        if handler is None:
            if low in _TRUNC_UNITS and _TRUNC_UNITS[low] and len(args) >= 1:
                return _cast(_fn("date_trunc", exp.Literal.string(_TRUNC_UNITS[low]), args[0]),
                             "TIMESTAMPTZ")
            if low in _DATE_TRUNC and len(args) >= 1:
                return _cast(_fn("date_trunc", exp.Literal.string(_DATE_TRUNC[low]), args[0]), "DATE")
            if low in _PARTS and len(args) >= 1:
                return _fn(_PARTS[low], args[0])
            m = re.fullmatch(r"(tointerval|add|subtract)(second|minute|hour|day|week|month|quarter|year)s?", low)
            if m:
                return _interval_fn(m.group(1), m.group(2), args)
            raise _not_implemented(name)
        return handler(self, args, name)


def _interval_fn(kind: str, unit: str, args: list[exp.Expression]) -> exp.Expression:
    if kind == "tointerval":
        if len(args) != 1:
            raise HogQLError(f"toInterval{unit.title()} takes one argument")
        amount = _cast(args[0], "INTEGER")
        if unit == "quarter":
            amount = exp.Mul(this=amount, expression=exp.Literal.number(3))
        return _fn(_INTERVAL_FN[unit], amount)
    if len(args) != 2:
        raise HogQLError(f"{kind}{unit.title()}s takes two arguments")
    amount = _cast(args[1], "INTEGER")
    if unit == "quarter":
        amount = exp.Mul(this=amount, expression=exp.Literal.number(3))
    delta = _fn(_INTERVAL_FN[unit], amount)
    return exp.Add(this=args[0], expression=delta) if kind == "add" else exp.Sub(this=args[0], expression=delta)


def _funnel_time(ts: exp.Expression) -> str:
    """The funnel's clock as an integer: days for a Date, seconds for a DateTime, a number as is."""
    inner = ts.this if isinstance(ts, exp.Paren) else ts
    if isinstance(inner, exp.Cast) and inner.to.is_type("date"):
        return f"CAST(({ts.sql('duckdb')}) - DATE '1970-01-01' AS BIGINT)"
    if (isinstance(inner, exp.Cast) and inner.to.is_type(*exp.DataType.INTEGER_TYPES)) or (
            isinstance(inner, exp.Literal) and not inner.is_string):
        return f"CAST(({ts.sql('duckdb')}) AS BIGINT)"
    return f"CAST(floor(epoch({ts.sql('duckdb')})) AS BIGINT)"


def _window_funnel(window: int, ts: exp.Expression, conds: list[exp.Expression]) -> exp.Expression:
    """ClickHouse's windowFunnel (default mode) as one pass over each group's sorted events.

    AggregateFunctionWindowFunnel: every row adds (timestamp, step) for each condition it meets,
    highest step first; the list is stably sorted by timestamp; then, in order, step 1 starts a
    chain at its timestamp and step k takes over step k-1's chain start when the event is at most
    `window` after that start. The level is the highest step holding a chain. Timestamps are
    whole seconds for DateTime (and Date as days), the value itself for unsigned numbers; `window`
    is in the same unit. Here the events become [time, -step] pairs (list_sort then gives time
    order, higher steps first) folded by list_reduce into the k chain starts (-1: none): linear
    per person, so a 5-step funnel over the whole dataset stays well under a second."""
    k = len(conds)
    t = _funnel_time(ts)
    pairs = ", ".join(f"CASE WHEN coalesce(({c.sql('duckdb')}), false) THEN [{t}, -{i + 1}] END"
                      for i, c in enumerate(conds))
    steps = ["CASE WHEN __x[2] = -1 THEN __x[1] ELSE __acc[1] END"]
    for j in range(2, k + 1):
        steps.append(f"CASE WHEN __x[2] = -{j} AND __acc[{j - 1}] >= 0 AND __x[1] <= __acc[{j - 1}] + {int(window)} "
                     f"THEN __acc[{j - 1}] ELSE __acc[{j}] END")
    fold = "(__acc, __x) -> [" + ", ".join(steps) + "]"
    start = "[" + ", ".join(["-1"] * k) + "]::BIGINT[]"
    events = f"list_sort(flatten(list(list_filter([{pairs}], __e -> __e IS NOT NULL))))"
    # chains fill from step 1 upwards and never empty, so the set ones are a prefix
    return _raw(f"CAST(length(list_filter(list_reduce({events}, {fold}, {start}), __v -> __v >= 0)) AS UBIGINT)")


def _week_start(arg: exp.Expression, mode: int) -> exp.Expression:
    if mode % 2 == 1:  # Monday first
        return _cast(_fn("date_trunc", exp.Literal.string("week"), arg), "DATE")
    shifted = exp.Add(this=_cast(arg, "DATE"), expression=exp.Literal.number(1))
    return exp.Sub(this=_cast(_fn("date_trunc", exp.Literal.string("week"), shifted), "DATE"),
                   expression=exp.Literal.number(1))


def _int_cast(arg: exp.Expression, safe: bool) -> exp.Expression:
    return _cast(_fn("trunc", _cast(arg, "DOUBLE", safe=safe)), "BIGINT", safe=safe)


def _need(args: list[exp.Expression], lo: int, hi: int, name: str) -> None:
    if not lo <= len(args) <= hi:
        raise HogQLError(f"Function '{name}' takes {lo if lo == hi else f'{lo} to {hi}'} arguments")


def _h_now(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
    return _raw(r.now_sql)


def _h_today(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
    return _raw(r.today_sql)


def _h_yesterday(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
    return _raw(f"(CAST({r.today_sql} AS DATE) - 1)")


def _h_todate(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
    _need(args, 1, 2, name)
    return _cast(args[0], "DATE", safe=name.lower().endswith("ornull"))


def _h_todatetime(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
    """toDateTime: a DateTime64 column becomes DateTime (whole seconds, ClickHouse toDateTime); text
    is parsed like parseDateTime64BestEffortOrNull (NULL when unreadable), a text without offset
    in the session's (the project's) time zone."""
    _need(args, 1, 3, name)
    arg = args[0]
    if isinstance(arg, exp.Column) and arg.name in ("timestamp", "created_at"):
        return _fn("date_trunc", exp.Literal.string("second"), arg)
    if name == "toDateTime64" and not isinstance(arg, (exp.Literal, exp.Placeholder)):
        return arg
    return _cast(arg, "TIMESTAMPTZ", safe=True)


def _h_startofweek(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
    """toStartOfWeek(x[, mode]): without a mode PostHog's printer inserts the project's week start
    (WeekStartDay.clickhouse_mode: Sunday 0, Monday 3); odd modes start weeks on Monday."""
    _need(args, 1, 3, name)
    mode = r.const_int(args[1], "toStartOfWeek mode") if len(args) >= 2 else r.week_mode
    if not 0 <= mode <= 9:
        raise HogQLError(f"The last argument of function toStartOfWeek must be a week mode from 0 to 9, not {mode}")
    return _week_start(args[0], mode)


def _h_monday(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
    _need(args, 1, 2, name)
    return _week_start(args[0], 1)


def _h_startofinterval(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
    _need(args, 2, 3, name)
    return _fn("time_bucket", args[1], _cast(args[0], "TIMESTAMPTZ"), _raw("TIMESTAMPTZ '1970-01-01 00:00:00+00'"))


def _h_float(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
    _need(args, 1, 2, name)
    low = name.lower()
    if low.endswith("orzero") or low.endswith("ordefault"):
        fallback = args[1] if len(args) > 1 else exp.Literal.number(0)
        return exp.Coalesce(this=_cast(args[0], "DOUBLE", safe=True), expressions=[fallback])
    return _cast(args[0], "DOUBLE", safe=not name.startswith("_"))


def _h_int(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
    _need(args, 1, 1, name)
    low = name.lower()
    if low.endswith("orzero"):
        return exp.Coalesce(this=_int_cast(args[0], True), expressions=[exp.Literal.number(0)])
    return _int_cast(args[0], not name.startswith("_"))


def _h_string(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
    _need(args, 1, 2, name)
    return _cast(args[0], "VARCHAR")


def _h_bool(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
    _need(args, 1, 1, name)
    return _cast(args[0], "BOOLEAN")


def _h_multiif(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
    if len(args) < 3 or len(args) % 2 == 0:
        raise HogQLError("multiIf takes cond1, then1, [cond2, then2, ...], else")
    case = exp.Case()
    for i in range(0, len(args) - 1, 2):
        case = case.when(args[i], args[i + 1])
    return case.else_(args[-1])


def _h_isnull(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
    _need(args, 1, 1, name)
    test = exp.Is(this=args[0], expression=exp.Null())
    return test if name.lower() == "isnull" else exp.Not(this=test)


def _h_empty(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
    _need(args, 1, 1, name)
    length = exp.Coalesce(this=_fn("length", args[0]), expressions=[exp.Literal.number(0)])
    if name.lower() == "empty":
        return exp.EQ(this=length, expression=exp.Literal.number(0))
    return exp.GT(this=length, expression=exp.Literal.number(0))


def _h_has(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
    _need(args, 2, 2, name)
    items = r.list_param(args[0])
    if items is not None and not items:
        return exp.false()
    return _fn("list_contains", args[0], args[1])


def _h_indexof(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
    _need(args, 2, 2, name)
    return exp.Coalesce(this=_fn("list_position", args[0], args[1]), expressions=[exp.Literal.number(0)])


def _h_simple(target: str, lo: int, hi: int) -> Callable[[_Rewriter, list[exp.Expression], str], exp.Expression]:
    def handler(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
        _need(args, lo, hi, name)
        return _fn(target, *args)
    return handler


def _h_split(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
    _need(args, 2, 2, name)
    return _fn("string_split", args[1], args[0])


def _h_replace_regex(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
    _need(args, 3, 3, name)
    extra = [exp.Literal.string("g")] if name.lower() == "replaceregexpall" else []
    return _fn("regexp_replace", *args, *extra)


def _h_unix(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
    _need(args, 1, 2, name)
    return _cast(_fn("epoch", args[0]), "BIGINT")


def _h_yyyymm(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
    _need(args, 1, 2, name)
    fmt = "%Y%m" if name.lower() == "toyyyymm" else "%Y%m%d"
    return _cast(_fn("strftime", _cast(args[0], "TIMESTAMP"), exp.Literal.string(fmt)), "BIGINT")


def _h_identity(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
    _need(args, 1, 2, name)
    return args[0]


def _h_intdiv(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
    _need(args, 2, 2, name)
    return exp.IntDiv(this=args[0], expression=args[1])


def _binary(cls: type[exp.Expression]) -> Callable[[_Rewriter, list[exp.Expression], str], exp.Expression]:
    def handler(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
        _need(args, 2, 2, name)
        return exp.Paren(this=cls(this=args[0], expression=args[1]))
    return handler


def _h_notlike(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
    _need(args, 2, 2, name)
    cls = exp.ILike if "ilike" in name.lower() else exp.Like
    return exp.Not(this=cls(this=args[0], expression=args[1]))


def _h_pos_ci(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
    _need(args, 2, 2, name)
    return _fn("strpos", _fn("lower", args[0]), _fn("lower", args[1]))


def _h_json(kind: str) -> Callable[[_Rewriter, list[exp.Expression], str], exp.Expression]:
    def handler(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
        if len(args) < 2:
            raise HogQLError(f"{name} needs a JSON value and a key")
        node = args[0]
        for key in args[1:-1]:
            node = _json_access(node, key)
        if kind == "has":
            return exp.Not(this=exp.Is(this=_fn("json_extract", args[0], exp.Literal.string(
                _pointer([args[-1].this])) if isinstance(args[-1], exp.Literal) else args[-1]),
                expression=exp.Null()))
        return r.json_extract(node, args[-1], kind)
    return handler


def _h_lambda_map(target: str) -> Callable[[_Rewriter, list[exp.Expression], str], exp.Expression]:
    def handler(r: _Rewriter, args: list[exp.Expression], name: str) -> exp.Expression:
        _need(args, 2, 2, name)
        result = _fn(target, args[1], args[0])
        if name.lower() == "arrayexists":
            return exp.GT(this=_fn("length", _fn("list_filter", args[1], args[0])),
                          expression=exp.Literal.number(0))
        return result
    return handler


_ANON: dict[str, Callable[[_Rewriter, list[exp.Expression], str], exp.Expression]] = {
    "now": _h_now, "today": _h_today, "yesterday": _h_yesterday,
    "todate": _h_todate, "todateornull": _h_todate, "todate32": _h_todate,
    "todatetime": _h_todatetime, "todatetime64": _h_todatetime, "todatetimeornull": _h_todatetime,
    "parsedatetimebesteffort": _h_todatetime, "parsedatetime64besteffort": _h_todatetime,
    "parsedatetimebesteffortornull": _h_todatetime,
    "tostartofweek": _h_startofweek, "tomonday": _h_monday, "tostartofisoweek": _h_monday,
    "tostartofinterval": _h_startofinterval,
    "tofloat": _h_float, "tofloat64": _h_float, "tofloat32": _h_float, "tofloatornull": _h_float,
    "tofloat64ornull": _h_float, "tofloatorzero": _h_float, "tofloat64orzero": _h_float,
    "tofloatordefault": _h_float,
    "todecimal": _h_float, "todecimal32": _h_float, "todecimal64": _h_float,
    "toint": _h_int, "_toint64": _h_int, "_touint64": _h_int, "_toint32": _h_int, "toint64": _h_int, "toint32": _h_int, "toint16": _h_int, "toint8": _h_int,
    "touint64": _h_int, "touint32": _h_int, "touint16": _h_int, "touint8": _h_int,
    "tointornull": _h_int, "toint64ornull": _h_int, "tointorzero": _h_int, "toint64orzero": _h_int,
    "tostring": _h_string, "touuid": _h_string, "tobool": _h_bool,
    "multiif": _h_multiif, "isnull": _h_isnull, "isnotnull": _h_isnull,
    "empty": _h_empty, "notempty": _h_empty, "has": _h_has, "indexof": _h_indexof,
    "arrayelement": _h_simple("list_extract", 2, 2),
    "arraysort": _h_simple("list_sort", 1, 1), "arraydistinct": _h_simple("list_distinct", 1, 1),
    "arrayreverse": _h_simple("list_reverse", 1, 1),
    "arraystringconcat": _h_simple("array_to_string", 1, 2),
    "arrayslice": _h_simple("list_slice", 2, 3),
    "arraymap": _h_lambda_map("list_transform"), "arrayfilter": _h_lambda_map("list_filter"),
    "arrayexists": _h_lambda_map("list_filter"),
    "splitbychar": _h_split, "splitbystring": _h_split,
    "replaceall": _h_simple("replace", 3, 3), "replace": _h_simple("replace", 3, 3),
    "replaceregexpall": _h_replace_regex, "replaceregexpone": _h_replace_regex,
    "lowerutf8": _h_simple("lower", 1, 1), "upperutf8": _h_simple("upper", 1, 1),
    "lengthutf8": _h_simple("length", 1, 1),
    "positioncaseinsensitive": _h_pos_ci,
    "tounixtimestamp": _h_unix, "toyyyymm": _h_yyyymm, "toyyyymmdd": _h_yyyymm,
    "totimezone": _h_identity, "assumenotnull": _h_identity, "tonullable": _h_identity,
    "intdiv": _h_intdiv, "modulo": _binary(exp.Mod), "plus": _binary(exp.Add),
    "minus": _binary(exp.Sub), "multiply": _binary(exp.Mul), "divide": _binary(exp.Div),
    "equals": _binary(exp.EQ), "notequals": _binary(exp.NEQ), "less": _binary(exp.LT),
    "greater": _binary(exp.GT), "lessorequals": _binary(exp.LTE),
    "greaterorequals": _binary(exp.GTE), "like": _binary(exp.Like), "ilike": _binary(exp.ILike),
    "notlike": _h_notlike, "notilike": _h_notlike,
    "min2": _h_simple("least", 2, 2), "max2": _h_simple("greatest", 2, 2),
    "jsonextractint": _h_json("int"), "jsonextractfloat": _h_json("float"),
    "jsonextractbool": _h_json("bool"), "jsonextractstring": _h_json("string"),
    "jsonextractraw": _h_json("string"), "jsonhas": _h_json("has"),
    "datetrunc": _h_simple("date_trunc", 2, 3),
    "length": _h_simple("length", 1, 1), "lower": _h_simple("lower", 1, 1),
    "upper": _h_simple("upper", 1, 1), "trunc": _h_simple("trunc", 1, 1),
    "truncate": _h_simple("trunc", 1, 1), "log2": _h_simple("log2", 1, 1),
    "log10": _h_simple("log10", 1, 1), "exp": _h_simple("exp", 1, 1),
    "tupleelement": _h_simple("struct_extract", 2, 2),
    "percentile": _h_simple("quantile_cont", 2, 2),
    "dateadd": _h_simple("date_add", 2, 2),
    "laginframe": _h_simple("lag", 1, 3), "leadinframe": _h_simple("lead", 1, 3),
}


# --- 4. names, limits, entry point ---------------------------------------------------------------

def _display_name(node: exp.Expression, markers: dict[str, str]) -> str:
    if isinstance(node, exp.Alias):
        return node.alias
    if isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
        text = ".".join(p.name for p in node.parts)
        return "{" + markers[text] + "}" if text in markers else text
    text = node.sql("clickhouse")
    for marker, name in markers.items():
        text = text.replace(marker, "{" + name + "}")
    return text.replace("`", "")


def _ast_columns(ast: dict[str, Any], query: str) -> list[str] | None:
    """Column names as PostHog gives them: the alias, the field path, else the expression's text."""
    node = ast
    while node.get("node") == "SelectSetQuery":
        node = node.get("initial_select_query") or {}
    if node.get("node") != "SelectQuery":
        return None
    names = []
    for item in node.get("select") or []:
        kind = item.get("node")
        if kind == "Alias":
            names.append(str(item.get("alias")))
        elif kind == "Field":
            names.append(".".join(str(c) for c in item.get("chain") or []))
        else:
            start, end = (item.get("start") or {}).get("offset"), (item.get("end") or {}).get("offset")
            if not isinstance(start, int) or not isinstance(end, int):
                return None
            names.append(query[start:end])
    return names


def _first_select(node: exp.Expression) -> exp.Select | None:
    while isinstance(node, (exp.Union, exp.Except, exp.Intersect)):
        node = node.this
    if isinstance(node, exp.Subquery):
        return _first_select(node.this)
    return node if isinstance(node, exp.Select) else None


_HIDDEN = ["__person_properties", "__person_created_at"]


def _join_persons(tree: exp.Expression, ctes: set[str]) -> None:
    """Read `events` through the view that carries the person columns, keeping them out of `*`."""
    swapped: set[str] = set()
    for table in list(tree.find_all(exp.Table)):
        if table.name == "events" and "events" not in ctes:
            alias = table.alias or "events"
            swapped.add(alias)
            table.replace(exp.Table(this=exp.to_identifier(EVENTS_WITH_PERSON),
                                    alias=exp.TableAlias(this=exp.to_identifier(alias))))
    for select in tree.find_all(exp.Select):
        sources = [select.args.get("from")] + list(select.args.get("joins") or [])
        local = {s.this.alias_or_name for s in sources if s is not None and isinstance(s.this, exp.Table)}
        if not local & swapped:
            continue
        hidden = [exp.column(c) for c in _HIDDEN]
        for index, item in enumerate(select.expressions):
            if isinstance(item, exp.Star):
                select.expressions[index] = exp.Star(**{"except": hidden})
            elif isinstance(item, exp.Column) and isinstance(item.this, exp.Star) and item.table in swapped:
                item.set("this", exp.Star(**{"except": hidden}))


def _is_sum(node: exp.Expression) -> bool:
    if isinstance(node, exp.Sum):
        return True
    if isinstance(node, exp.Filter):
        inner = node.this
        return isinstance(inner, exp.Sum) or (isinstance(inner, exp.Anonymous) and str(inner.this).lower() == "sum")
    return False


def _zero_empty_sums(tree: exp.Expression) -> None:
    """ClickHouse's sum and sumIf over no rows are 0 (DuckDB: NULL); window sums are left alone."""
    for node in list(tree.find_all(exp.Sum, exp.Filter)):
        if not _is_sum(node) or isinstance(node.parent, (exp.Window, exp.Filter)):
            continue
        node.replace(exp.Coalesce(this=node.copy(), expressions=[exp.Literal.number(0)]))


def _shape(value: Any) -> Any:
    """What of a value can change the SQL: its type; an int's value (a LIMIT, a window, a week
    mode are printed); a list's emptiness and item types. Strings never reach the SQL text."""
    if isinstance(value, bool) or value is None:
        return (type(value).__name__, value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, list):
        return ("list", len(value) == 0, tuple(sorted({type(v).__name__ for v in value})))
    if isinstance(value, str) and len(value) <= 12 and value.isalpha():
        return ("word", value.lower())  # e.g. dateDiff({unit}, …) prints the unit
    return (type(value).__name__,)


_CACHE: dict[Any, tuple[Translation, dict[str, str]]] = {}
_CACHE_LOCK = threading.Lock()


def translate(query: str, values: dict[str, Any] | None, now_sql: str, today_sql: str,
              default_limit: int = DEFAULT_LIMIT, max_limit: int = MAX_LIMIT, week_start_day: int = 1) -> Translation:
    """Translate one HogQL SELECT. Raises HogQLError for anything outside the supported subset.
    Translations are remembered by query text and the shape of its values (export pages send one
    text with new values): a hit only binds the new values."""
    if not isinstance(query, str) or not query.strip():
        raise HogQLError("Query is empty")
    values = dict(values or {})
    key = (query, now_sql, today_sql, default_limit, max_limit, week_start_day,
           tuple(sorted((k, _shape(v)) for k, v in values.items())))
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
    if hit is not None:
        cached, names = hit
        params = {pname: _param_value(name, values[name]) for pname, name in names.items()}
        return Translation(sql=cached.sql, params=params, columns=cached.columns, limit=cached.limit,
                           fetch=cached.fetch, has_explicit_limit=cached.has_explicit_limit)
    tr, names = _translate(query, values, now_sql, today_sql, default_limit, max_limit, week_start_day)
    with _CACHE_LOCK:
        if len(_CACHE) > 512:
            _CACHE.clear()
        _CACHE[key] = (tr, names)
    return tr


def _translate(query: str, values: dict[str, Any], now_sql: str, today_sql: str, default_limit: int,
               max_limit: int, week_start_day: int) -> tuple[Translation, dict[str, str]]:
    ast = check(query, values)  # PostHog's parser and function registry first: refuse what PostHog refuses
    text, markers = _scan(query, values)
    try:
        statements = [s for s in sqlglot.parse(text, read="clickhouse") if s is not None]
    except (ParseError, TokenError) as err:
        message = str(err).split("\n")[0]
        message = re.sub(r"\x1b\[[0-9;]*m", "", message)
        for marker, name in markers.items():
            message = message.replace(marker, "{" + name + "}")
        raise HogQLError(f"Syntax error: {message}", "hogql_syntax_error") from err
    if len(statements) != 1:
        raise HogQLError("Send exactly one SELECT statement (no ';'-separated statements)")
    tree = statements[0]
    if not isinstance(tree, (exp.Select, exp.Union, exp.Except, exp.Intersect, exp.Subquery)):
        raise HogQLError("Only SELECT queries are allowed")
    if tree.find(exp.Offset) is not None or any(
            isinstance(s.args.get("offset"), exp.Expression) for s in tree.find_all(exp.Select)):
        raise HogQLError(OFFSET_MESSAGE)
    for limit in tree.find_all(exp.Limit):
        if limit.expressions:
            raise HogQLError("LIMIT ... BY is not supported by posthog-local")

    first = _first_select(tree)
    columns: list[str] | None = None
    def is_star(e: exp.Expression) -> bool:
        return isinstance(e, exp.Star) or (isinstance(e, exp.Column) and isinstance(e.this, exp.Star))

    if first is not None and not any(is_star(e) for e in first.expressions):
        columns = _ast_columns(ast, query) or [_display_name(e, markers) for e in first.expressions]

    ctes = {cte.alias for cte in tree.find_all(exp.CTE)}
    aliases = set()
    for table in tree.find_all(exp.Table):
        aliases.add(table.alias_or_name)
        aliases.add(table.name)
    for sub in tree.find_all(exp.Subquery):
        if sub.alias:
            aliases.add(sub.alias)

    rewriter = _Rewriter(values, markers, now_sql, today_sql, aliases, ctes)
    rewriter.week_mode = 0 if week_start_day == 0 else 3
    # Read the top-level LIMIT before the pass (a placeholder limit becomes a parameter).
    tree = rewriter.rewrite(tree)

    if rewriter.needs_person:
        _join_persons(tree, ctes)
    _zero_empty_sums(tree)

    limit_node = tree.args.get("limit")
    explicit = isinstance(limit_node, exp.Limit)
    if explicit:
        requested = rewriter.const_int(limit_node.expression, "LIMIT")
        if requested < 0:
            raise HogQLError("LIMIT must not be negative")
        limit = min(requested, max_limit)
    else:
        limit = default_limit
    fetch = limit + 1
    tree.set("limit", exp.Limit(expression=exp.Literal.number(fetch)))
    try:
        sql = tree.sql(dialect="duckdb", unsupported_level=ErrorLevel.RAISE)
    except (UnsupportedError, ValueError) as err:
        raise HogQLError(f"Unsupported syntax: {err}") from err
    # Bind only the parameters the final SQL uses (a LIMIT placeholder became a literal, an
    # empty-list IN became FALSE).
    params = {k: v for k, v in rewriter.params.items() if re.search(rf"\${k}\b", sql)}
    names = {k: rewriter.param_names[k] for k in params}
    return Translation(sql=sql, params=params, columns=columns, limit=limit, fetch=fetch,
                       has_explicit_limit=explicit), names
