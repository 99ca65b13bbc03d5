#!/usr/bin/env python3
"""Writes posthog_local/hogql_functions.json: HogQL's function registry, read from PostHog's source.

    python tools/posthog-local/gen_hogql_functions.py PATH/TO/posthog [--out FILE]

PATH is a checkout (or a copy of the files below) of PostHog/posthog. The script never imports
PostHog: it reads each file with Python's `ast` and collects every dict entry of the form
`"name": HogQLFunctionMeta(clickhouse_name, min_args, max_args, min_params, max_params, ...,
aggregate=..., case_sensitive=...)`, including `**{name: HogQLFunctionMeta(...) for name in [...]}`
comprehensions. Entries whose name starts with `_` are kept (HogQL exposes `_toUInt64` etc.).

The files read, and the commit each was taken from when the JSON was last generated (the JSON
records them), are in SOURCES. posthog-local refuses any function that is not in the JSON, checks
arities against it, and resolves names the way `posthog/hogql/functions/mapping.py:_find_function`
does (exact name first; else the lower-cased name, only when that entry is not case-sensitive).
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

# path inside PostHog/posthog -> commit read (as listed by the code index on 2026-11-30)
SOURCES = {
    "posthog/hogql/functions/aggregations.py": "ad219e56a6a6979477963436ba98477a40171465",
    "posthog/hogql/functions/mapping.py": "af2acc5c0e3808d0f5443f6cb074b3b434e1d666",
    "posthog/hogql/functions/clickhouse/arithmetic.py": "f9c86077a97bbe169438c0c8704caa5408a97b7e",
    "posthog/hogql/functions/clickhouse/arrays.py": "0fcf918e93fe26ef7543b27b5de96e4ad7e8d7b9",
    "posthog/hogql/functions/clickhouse/conversions.py": "d0e90f4d517d08fc6c32e667b4d3cf89fb85f818",
    "posthog/hogql/functions/clickhouse/datetime.py": "4f155f7be116e3be1cf21c560e3874764cd5b254",
    "posthog/hogql/functions/clickhouse/json.py": "1199aac47cddc51e2b621803466f1aa98f4abcd9",
    "posthog/hogql/functions/clickhouse/mathematical.py": "efcc75f3d369e938412c29161ffbc097c1f0fd2c",
    "posthog/hogql/functions/clickhouse/strings.py": "a6cae86d229342ee93037de34a6ea80657427f30",
}
PARAMETRIC_SOURCE = ("posthog/hogql/functions/config.py", "aa7bb9adf5a9ee3b705ffb055ca6c09cda5e5302")
POSITIONAL = ("clickhouse_name", "min_args", "max_args", "min_params", "max_params")


def _const(node: ast.AST) -> object:
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def _meta(call: ast.Call) -> dict[str, object] | None:
    func = call.func
    if not (isinstance(func, ast.Name) and func.id == "HogQLFunctionMeta"):
        return None
    fields: dict[str, object] = {"min_args": 0, "max_args": 0, "min_params": 0, "max_params": 0,
                                 "aggregate": False, "case_sensitive": True, "tz_aware": False}
    for name, arg in zip(POSITIONAL, call.args):
        fields[name] = _const(arg)
    for keyword in call.keywords:
        if keyword.arg in fields or keyword.arg == "clickhouse_name":
            fields[keyword.arg] = _const(keyword.value)
    return fields


def _entries(tree: ast.AST) -> dict[str, dict[str, object]]:
    found: dict[str, dict[str, object]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if key is None and isinstance(value, ast.DictComp):  # **{name: Meta() for name in [...]}
                    meta = _meta(value.value) if isinstance(value.value, ast.Call) else None
                    names = _const(value.generators[0].iter) if value.generators else None
                    if meta is not None and isinstance(names, (list, tuple)):
                        for name in names:
                            found[str(name)] = dict(meta)
                elif isinstance(key, ast.Constant) and isinstance(key.value, str) and isinstance(value, ast.Call):
                    meta = _meta(value)
                    if meta is not None:
                        found[key.value] = meta
    return found


def generate(root: Path) -> dict[str, object]:
    functions: dict[str, dict[str, object]] = {}
    aggregations: dict[str, dict[str, object]] = {}
    for rel in SOURCES:
        path = root / rel
        if not path.exists():
            raise SystemExit(f"gen_hogql_functions: {path} is missing; pass the root of a PostHog checkout.")
        entries = _entries(ast.parse(path.read_text(encoding="utf-8")))
        target = aggregations if rel.endswith("aggregations.py") else functions
        for name, meta in entries.items():
            target[name] = {k: meta[k] for k in ("min_args", "max_args", "min_params", "max_params",
                                                  "case_sensitive", "tz_aware")}
    parametric: list[str] = []
    config = root / PARAMETRIC_SOURCE[0]
    if config.exists():
        for node in ast.walk(ast.parse(config.read_text(encoding="utf-8"))):
            if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "HOGQL_PERMITTED_PARAMETRIC_FUNCTIONS":
                parametric = sorted(_const(node.value) or [])  # type: ignore[arg-type]
    return {
        "generated_by": "tools/posthog-local/gen_hogql_functions.py",
        "source": {"repository": "PostHog/posthog", "files": {**SOURCES, PARAMETRIC_SOURCE[0]: PARAMETRIC_SOURCE[1]}},
        "functions": dict(sorted(functions.items())),
        "aggregations": dict(sorted(aggregations.items())),
        "parametric_first_arg_functions": parametric,
    }


def render(data: dict[str, object]) -> str:
    """JSON with one line per function, so that a regeneration's diff reads function by function."""
    lines = ["{"]
    keys = list(data)
    for i, key in enumerate(keys):
        value = data[key]
        end = "," if i < len(keys) - 1 else ""
        if key in ("functions", "aggregations") and isinstance(value, dict):
            lines.append(f" {json.dumps(key)}: {{")
            names = list(value)
            for j, name in enumerate(names):
                comma = "," if j < len(names) - 1 else ""
                lines.append(f"  {json.dumps(name)}: {json.dumps(value[name], sort_keys=True)}{comma}")
            lines.append(f" }}{end}")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value, sort_keys=True)}{end}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("posthog_root", type=Path, help="root of a PostHog/posthog checkout")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "posthog_local" / "hogql_functions.json")
    args = parser.parse_args(argv)
    data = generate(args.posthog_root)
    args.out.write_text(render(data), encoding="utf-8")
    print(f"{args.out}: {len(data['functions'])} functions, {len(data['aggregations'])} aggregations",  # type: ignore[arg-type]
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
