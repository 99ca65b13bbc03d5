"""What PostHog refuses before a query runs, checked with PostHog's own parser and function registry.

- Parsing: `hogql_parser.parse_select_json` (PostHog's C++ HogQL parser, the PyPI package
  `hogql-parser`). A syntax error is PostHog's `SyntaxError`: 400 `hogql_syntax_error` with the
  parser's message (posthog/hogql/errors.py: code_name).
- Placeholders: every `{name}` must have a value (`Unresolved placeholder: {name}`, printer.py
  visit_placeholder); an expression inside braces is refused; a placeholder naming a table is
  refused (values become constants, never identifiers: posthog/hogql/placeholders.py).
- Functions: the registry in hogql_functions.json, generated from PostHog's source by
  gen_hogql_functions.py. Names resolve as mapping.py `_find_function` does (exact, then the
  lower-cased name when that entry is not case-sensitive); unknown names get printer.py's
  `Unsupported function call 'x(...)'. Perhaps you meant 'y(...)'?`; arities and parameter counts
  get core.py `validate_function_args` messages. These are QueryErrors: 400 `hogql_query_error`.
- ClickHouse's type rule for windowFunnel: the first argument must be Date, DateTime or an
  unsigned number (ClickHouse AggregateFunctionWindowFunnel.cpp: ILLEGAL_TYPE_OF_ARGUMENT), so
  PostHog's DateTime64 `timestamp` must go through toDateTime() first.

The hogql_parser extension imports `posthog.hogql.errors` when it loads; `_load_parser` registers a
small module of that name (the error classes it may raise) so that no PostHog code is needed.
"""
from __future__ import annotations

import difflib
import json
import sys
import types
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

REGISTRY_FILE = Path(__file__).resolve().parent / "hogql_functions.json"
DATETIME64_FIELDS = {"timestamp", "created_at", "$start_timestamp", "$end_timestamp"}


class HogQLError(Exception):
    """A problem with the query itself: HTTP 400 `validation_error` with this code and detail."""

    def __init__(self, detail: str, code: str = "hogql_query_error") -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code


def syntax_error(detail: str) -> HogQLError:
    return HogQLError(detail, "hogql_syntax_error")


_ERRORS_SOURCE = '''
class BaseHogQLError(Exception):
    def __init__(self, message, *, start=None, end=None, node=None, fix=None):
        super().__init__(message)
        self.message, self.start, self.end, self.fix = message, start, end, fix
class ExposedHogQLError(BaseHogQLError):
    code_name = "hogql_error"
class InternalHogQLError(BaseHogQLError):
    pass
class SyntaxError(ExposedHogQLError):
    code_name = "hogql_syntax_error"
class QueryError(ExposedHogQLError):
    code_name = "hogql_query_error"
class NotImplementedError(InternalHogQLError):
    pass
class ParsingError(InternalHogQLError):
    pass
class ImpossibleASTError(InternalHogQLError):
    pass
class ResolutionError(InternalHogQLError):
    pass
'''


@lru_cache(maxsize=1)
def _load_parser() -> Any:
    name = "posthog.hogql.errors"
    if name not in sys.modules:
        # Its parents must be importable too. In the test venv `posthog` is PostHog's capture SDK
        # (a different package of the same name); an installed copy has no `posthog` at all, so
        # empty parent packages stand in where the real ones are missing.
        for parent in ("posthog", "posthog.hogql"):
            if parent not in sys.modules:
                try:
                    __import__(parent)
                except ImportError:
                    package = types.ModuleType(parent)
                    package.__path__ = []
                    sys.modules[parent] = package
        module = types.ModuleType(name)
        exec(_ERRORS_SOURCE, module.__dict__)  # noqa: S102 - our own constant source
        sys.modules[name] = module
    import hogql_parser

    return hogql_parser


@lru_cache(maxsize=1)
def registry() -> dict[str, Any]:
    return json.loads(REGISTRY_FILE.read_text(encoding="utf-8"))


def _find(name: str, table: dict[str, Any]) -> dict[str, Any] | None:
    meta = table.get(name)
    if meta is not None:
        return meta
    meta = table.get(name.lower())
    if meta is None or meta.get("case_sensitive", True):
        return None
    return meta


def find_function(name: str) -> tuple[str, dict[str, Any]] | None:
    """('aggregation' | 'function', meta) as PostHog's printer looks names up, or None."""
    reg = registry()
    meta = _find(name, reg["aggregations"])
    if meta is not None:
        return "aggregation", meta
    meta = _find(name, reg["functions"])
    if meta is not None:
        return "function", meta
    return None


def exposed_names() -> list[str]:
    reg = registry()
    return [n for n in [*reg["functions"], *reg["aggregations"]] if not n.startswith("_")]


def validate_args(count: int, lo: int, hi: int | None, name: str, term: str = "function",
                  arg: str = "argument") -> None:
    """posthog/hogql/functions/core.py validate_function_args, message for message."""
    too_few = count < lo
    too_many = hi is not None and count > hi
    if lo == hi and (too_few or too_many):
        raise HogQLError(f"{term.capitalize()} '{name}' expects {lo} {arg}{'s' if lo != 1 else ''}, found {count}")
    if too_few:
        raise HogQLError(f"{term.capitalize()} '{name}' expects at least {lo} {arg}{'s' if lo != 1 else ''}, found {count}")
    if too_many:
        raise HogQLError(f"{term.capitalize()} '{name}' expects at most {hi} {arg}{'s' if hi != 1 else ''}, found {count}")


def parse(query: str) -> dict[str, Any]:
    """PostHog's JSON AST of a SELECT, or the syntax error PostHog answers with. (Parsing costs
    ~25 ms; pages of an export send one text with new values, so texts are remembered.)"""
    return json.loads(_parsed(query))


@lru_cache(maxsize=256)
def _parsed(query: str) -> str:
    parser = _load_parser()
    text = parser.parse_select_json(query)
    doc = json.loads(text)
    if doc.get("error"):
        raise syntax_error(str(doc.get("message") or "Syntax error"))
    return text


def _walk(node: Any, parent_key: str = "") -> Iterator[tuple[dict[str, Any], str]]:
    if isinstance(node, dict):
        if "node" in node:
            yield node, parent_key
        for key, value in node.items():
            if key in ("start", "end"):
                continue
            yield from _walk(value, key)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item, parent_key)


def placeholder_name(node: dict[str, Any]) -> str | None:
    expr = node.get("expr")
    if isinstance(expr, dict) and expr.get("node") == "Field" and len(expr.get("chain") or []) == 1:
        return str(expr["chain"][0])
    return None


def _type_of(expr: Any) -> str:
    """A coarse ClickHouse type of an expression: 'DateTime64', 'DateTime', 'Date', 'UInt',
    'Int', or 'unknown' (when only the query's own data could tell)."""
    if not isinstance(expr, dict):
        return "unknown"
    kind = expr.get("node")
    if kind == "Field":
        chain = [str(c) for c in expr.get("chain") or []]
        return "DateTime64" if chain and chain[-1] in DATETIME64_FIELDS and "properties" not in chain else "unknown"
    if kind == "Alias":
        return _type_of(expr.get("expr"))
    if kind == "Call":
        name = str(expr.get("name"))
        args = expr.get("args") or []
        if name in ("toDateTime", "fromUnixTimestamp", "toStartOfHour", "toStartOfMinute", "toStartOfDay",
                    "toStartOfFiveMinutes", "toStartOfTenMinutes", "toStartOfFifteenMinutes"):
            if name == "toDateTime" and args and _type_of(args[0]) not in ("DateTime64", "DateTime", "Date"):
                return "DateTime64"  # toDateTime('text') is parseDateTime64BestEffortOrNull in HogQL
            return "DateTime"
        if name in ("toDate", "toStartOfWeek", "toStartOfMonth", "toMonday", "toStartOfYear", "today"):
            return "Date"
        if name in ("now", "toDateTime64", "parseDateTimeBestEffort", "toTimeZone"):
            return "DateTime64"
        if name in ("toUnixTimestamp", "_toUInt64", "_toUInt128"):
            return "UInt"
        if name in ("min", "max", "any", "anyLast", "argMin", "argMax") and args:
            return _type_of(args[0])
    if kind == "Constant" and isinstance(expr.get("value"), int) and not isinstance(expr.get("value"), bool):
        return "UInt" if expr["value"] >= 0 else "Int"
    return "unknown"


_CLICKHOUSE_TYPE = {"DateTime64": "DateTime64(6, 'UTC')", "Int": "Int64"}


def check(query: str, values: dict[str, Any]) -> dict[str, Any]:
    """Parse and check one query; returns the AST. Raises HogQLError as PostHog would."""
    ast = parse(query)
    for node, key in _walk(ast):
        kind = node["node"]
        if kind == "Placeholder":
            name = placeholder_name(node)
            if name is None:
                raise HogQLError("You can not use expressions inside placeholders")
            if key == "table":
                raise HogQLError(f"Placeholders, such as {{{name}}}, can not name a table: values are constants")
            if name not in values:
                raise HogQLError(f"Unresolved placeholder: {{{name}}}")
        elif kind == "Call":
            _check_call(node)
    return ast


def _check_call(node: dict[str, Any]) -> None:
    name = str(node.get("name"))
    args = node.get("args") or []
    params = node.get("params")
    found = find_function(name)
    if found is None:
        close = difflib.get_close_matches(name, exposed_names(), 1)
        if close:
            raise HogQLError(f"Unsupported function call '{name}(...)'. Perhaps you meant '{close[0]}(...)'?")
        raise HogQLError(f"Unsupported function call '{name}(...)'")
    kind, meta = found
    term = "aggregation" if kind == "aggregation" else "function"
    validate_args(len(args), meta["min_args"], meta["max_args"], name, term)
    if kind == "aggregation" and meta.get("min_params"):  # printer.py: only where parameters are required
        if params is None:
            raise HogQLError(f"Aggregation '{name}' requires parameters in addition to arguments")
        validate_args(len(params), meta["min_params"], meta["max_params"], name, term, "parameter")
    if name == "windowFunnel" and args:
        if not params:
            raise HogQLError("Aggregate function windowFunnel requires one parameter: the window (windowFunnel(window)(timestamp, cond1, ...))")
        first = _type_of(args[0])
        if first in ("DateTime64", "Int"):
            raise HogQLError(
                f"Illegal type {_CLICKHOUSE_TYPE[first]} of first argument of aggregate function windowFunnel, "
                "must be Unsigned Number, Date, DateTime: convert it, e.g. windowFunnel(w)(toDateTime(timestamp), ...)",
                "illegal_type_of_argument")
