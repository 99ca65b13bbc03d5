"""Command line: serve (default), `truth TEMPLATE`, `generate`.

    server.py [--host 127.0.0.1] [--port 0] [--data DIR] [--now ISO] [--seed N] [--users N]
              [--bulk-events N] [--fault SPEC ...] [--verbose]
    server.py truth TEMPLATE [--data DIR | --seed N --users N --now ISO] [--param k=v ...]
    server.py generate [--seed N] [--users N] [--now ISO] [--bulk-events N] [DIR]

Exit codes: 0 (clean stop on SIGTERM/SIGINT), 64 bad usage, 70 the server could not start.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import NoReturn

from . import generator, truths
from .app import App
from .config import Settings, mask
from .dataset import load_dataset
from .faults import FaultRegistry, FaultSpecError, parse_spec
from .limits import LimitSettings, LimitSpecError, parse_rate
from .resources import Resources
from .store import Store
from .timeutil import parse_iso, to_ms

EX_USAGE = 64
EX_SOFTWARE = 70


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors exit 64 (EX_USAGE) like the rest of the project."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


def _log(message: str) -> None:
    print(f"posthog-local: {message}", file=sys.stderr, flush=True)


def _dataset_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, help="dataset directory (generated there if absent)")
    parser.add_argument("--seed", type=int, default=generator.DEFAULT_SEED, help="generator seed")
    parser.add_argument("--users", type=int, default=generator.DEFAULT_USERS, help="number of users")
    parser.add_argument("--now", default=generator.DEFAULT_NOW,
                        help="reference time R: HogQL now(); the data ends before it")
    parser.add_argument("--bulk-events", type=int, default=0,
                        help="add N simple events for export benchmarks (own data dir)")


def _resolve_data(args: argparse.Namespace) -> tuple[Path, dict]:
    now_ms = to_ms(parse_iso(args.now))
    data_dir = args.data or generator.default_data_dir(args.seed, args.users, now_ms, args.bulk_events)
    meta = generator.ensure_dataset(data_dir, args.seed, args.users, now_ms, args.bulk_events, log=_log)
    return data_dir, meta


def serve(argv: list[str]) -> int:
    parser = _Parser(prog="posthog-local",
                                     description="PostHog-compatible HTTP server over DuckDB.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (0: pick a free one)")
    parser.add_argument("--fault", action="append", default=[], metavar="SPEC",
                        help="inject a fault, e.g. 429:count=2:retry_after=1:path=/api/")
    parser.add_argument("--verbose", action="store_true", help="log requests to stderr")
    parser.add_argument("--threads", type=int, default=2, help="DuckDB worker threads")
    parser.add_argument("--keep-duplicate-uuids", action="store_true",
                        default=os.environ.get("POSTHOG_LOCAL_KEEP_DUPLICATE_UUIDS") == "1",
                        help="store an event re-sent with a uuid already stored, as ClickHouse shows it until a merge")
    env = os.environ
    limits = parser.add_argument_group("limits (PostHog's by default; env POSTHOG_LOCAL_<NAME>)")
    limits.add_argument("--query-rate", default=env.get("POSTHOG_LOCAL_QUERY_RATE", "120/hour"),
                        help="HogQL queries per personal key and period: 120/hour, 5/minute, 5/10s")
    limits.add_argument("--concurrency", type=int, default=env.get("POSTHOG_LOCAL_CONCURRENCY", "3"),
                        help="queries running at once (per organization)")
    limits.add_argument("--concurrency-wait", type=float, default=env.get("POSTHOG_LOCAL_CONCURRENCY_WAIT", "30"),
                        help="seconds a query waits for a free slot before 429")
    limits.add_argument("--max-execution-time", type=float,
                        default=env.get("POSTHOG_LOCAL_MAX_EXECUTION_TIME", "60"),
                        help="seconds a query may run")
    limits.add_argument("--cohort-batch", type=int, default=env.get("POSTHOG_LOCAL_COHORT_BATCH", "1000"),
                        help="persons per add_persons_to_static_cohort call")
    limits.add_argument("--max-body-bytes", type=int, default=env.get("POSTHOG_LOCAL_MAX_BODY_BYTES", str(20 << 20)),
                        help="largest request body")
    limits.add_argument("--cache-ttl", type=float, default=env.get("POSTHOG_LOCAL_CACHE_TTL", "300"),
                        help="seconds a query answer stays fresh for refresh=blocking")
    limits.add_argument("--no-limits", action="store_true", default=env.get("POSTHOG_LOCAL_NO_LIMITS") == "1",
                        help="no query rate or concurrency limit")
    _dataset_args(parser)
    args = parser.parse_args(argv)
    try:
        faults = [parse_spec(spec) for spec in args.fault]
        settings = Settings.from_env()
        parse_iso(args.now)
        rate, period = parse_rate(args.query_rate)
        limit_settings = LimitSettings(query_rate=rate, query_period_s=period, concurrency=args.concurrency,
                                       concurrency_wait_s=args.concurrency_wait, max_execution_s=args.max_execution_time,
                                       cohort_batch=args.cohort_batch, max_body_bytes=args.max_body_bytes,
                                       cache_ttl_s=args.cache_ttl, enabled=not args.no_limits)
    except (FaultSpecError, LimitSpecError, ValueError) as err:
        print(f"posthog-local: {err}", file=sys.stderr)
        return EX_USAGE
    try:
        data_dir, meta = _resolve_data(args)
        store = Store(data_dir, meta, threads=args.threads)
        store.keep_duplicate_uuids = args.keep_duplicate_uuids
        resources = Resources(store, json.loads((data_dir / "resources.json").read_text()))
        app = App(settings, store, resources, FaultRegistry(faults), data_dir, log=_log, limits=limit_settings)
        from .httpd import make_server
        server = make_server(args.host, args.port, app, verbose=args.verbose)
    except generator.DatasetMismatch as err:
        print(f"posthog-local: {err}", file=sys.stderr)
        return EX_USAGE
    except OSError as err:
        print(f"posthog-local: cannot start: {err.strerror or err}", file=sys.stderr)
        return EX_SOFTWARE
    host, port = str(server.server_address[0]), int(server.server_address[1])
    shown_host = f"[{host}]" if ":" in str(host) else host
    print(f"posthog-local listening on http://{shown_host}:{port}", flush=True)
    print(f"project id: {settings.project_id}", flush=True)
    print(f"personal API key accepted: {mask(settings.personal_key)}", flush=True)
    if settings.readonly_key:
        print(f"read-only personal API key accepted: {mask(settings.readonly_key)}", flush=True)
    print(f"project API key accepted: {mask(settings.project_key)}", flush=True)
    ny = settings.projects[settings.ny_project_id]
    print(f"second project: id {ny.id}, {ny.timezone}, weeks from Sunday, project API key {mask(ny.project_key)}",
          flush=True)
    lim = limit_settings
    print(f"limits: {lim.query_rate} queries per {lim.query_period_s:g} s per key, {lim.concurrency} at once, "
          f"{lim.max_execution_s:g} s each, cohort batches of {lim.cohort_batch}, cache {lim.cache_ttl_s:g} s"
          + ("" if lim.enabled else " (rate and concurrency limits off)"), flush=True)
    print(f"data: {data_dir} ({meta['counts']['events']} events, {meta['counts']['persons']} persons, "
          f"now() = {meta['reference_time']})", flush=True)

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="posthog-local-http", daemon=True)
    thread.start()
    while not stop.wait(0.05):
        pass
    store.interrupt_all()  # a running query must not hold the exit up
    server.shutdown()
    server.server_close()
    store.close(wait_s=0.2)
    # Handler threads may still be unwinding inside DuckDB: leave without the interpreter's
    # teardown (everything lives in memory; nothing is left to flush but our own streams).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def truth(argv: list[str]) -> int:
    parser = _Parser(prog="posthog-local truth",
                                     description="Print a template's true answer as JSON.")
    parser.add_argument("template", choices=sorted(truths.TEMPLATES))
    parser.add_argument("--param", action="append", default=[], metavar="K=V",
                        help="a template parameter (JSON value, or text; lists as a,b,c or JSON)")
    parser.add_argument("--timezone", default="UTC", help="the project's time zone (the New York demo project: "
                        "America/New_York)")
    parser.add_argument("--week-start-day", type=int, choices=(0, 1), default=1,
                        help="the project's week start: 0 Sunday, 1 Monday")
    _dataset_args(parser)
    args = parser.parse_args(argv)
    params = {}
    try:
        for item in args.param:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--param {item!r} must look like key=value")
            params[key] = truths.parse_param(key, value, args.template)
        data_dir, _ = _resolve_data(args)
        dataset = load_dataset(data_dir)
        answer = truths.answer(dataset, args.template, params, args.timezone, args.week_start_day)
    except (KeyError, ValueError, TypeError) as err:
        print(f"posthog-local truth: {err}", file=sys.stderr)
        return EX_USAGE
    except generator.DatasetMismatch as err:
        print(f"posthog-local truth: {err}", file=sys.stderr)
        return EX_USAGE
    print(json.dumps(answer, indent=1, sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "truth":
        return truth(argv[1:])
    if argv and argv[0] == "generate":
        started = time.monotonic()
        code = generator.main(argv[1:])
        _log(f"done in {time.monotonic() - started:.1f}s")
        return code
    if argv and argv[0] == "serve":
        argv = argv[1:]
    return serve(argv)
