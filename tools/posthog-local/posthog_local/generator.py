"""Seeded, deterministic dataset generator: same seed and settings -> byte-identical files.

Planted behaviour (see README.md): churners, power users, new users with a signup funnel of known
drop-off, the `new-onboarding` experiment with a real lift, the `pricing-page-v2` A/A test, and the
hard cases real data has (`_plant_hard_cases`): funnel restarts, repeats, steps out of order or at
one timestamp and conversions exactly at the window's edge; re-exposures, users seen in two
variants, exposures that are not a variant or come before the experiment started; a three-variant
experiment with a variant that never converts; a flag with several condition groups and a variant
override; events a millisecond either side of day and window boundaries in UTC and New York.
The data directory holds events.parquet, persons.parquet, resources.json (flags, cohorts,
insights, experiments), truths.json and meta.json. The bulk mode adds bulk_events.parquet, made
inside DuckDB with range() so a million events take about a second.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import flags as flaglib
from .dataset import Dataset, EventRow
from .timeutil import DAY_MS, HOUR_MS, MINUTE_MS, date_of_ms, iso_ms, parse_iso, to_ms

GENERATOR_VERSION = 2  # 2: the hard cases of issue 11 (data directories are named -v2)
DEFAULT_SEED = 42
DEFAULT_USERS = 3000
DEFAULT_NOW = "2026-11-01T00:00:00Z"
WINDOW_DAYS = 60
BULK_SPAN_DAYS = 30
HOST = "https://app.example.com"

BROWSERS = [("Chrome", 55), ("Safari", 20), ("Firefox", 12), ("Edge", 10), ("Opera", 3)]
OS_BY_BROWSER = {
    "Chrome": ["Windows", "Mac OS X", "Linux", "Android"],
    "Safari": ["Mac OS X", "iOS"],
    "Firefox": ["Windows", "Linux", "Mac OS X"],
    "Edge": ["Windows"],
    "Opera": ["Windows", "Linux"],
}
PLANS = [("free", 60), ("pro", 28), ("enterprise", 12)]
PATHS = ["/", "/dashboard", "/reports", "/reports/new", "/settings", "/docs", "/integrations",
         "/pricing"]
# session event mix: (event, weight); report_exported weight depends on the plan
SESSION_EVENTS = ["$pageview", "$autocapture", "dashboard_viewed", "report_created",
                  "report_exported"]
EXPORT_WEIGHT = {"free": 2, "pro": 7, "enterprise": 16}
FUNNEL = ["signed_up", "onboarding_completed", "first_report_created", "subscription_started"]
ONBOARDING_RATE = 0.75
REPORT_RATE = 0.50
SUBSCRIBE_RATE = {"control": 0.12, "test": 0.20}
PRICING_EXPOSED_SHARE = 0.45
PRICING_CONVERSION = 0.10
TIPS_CONVERSION = {"control": 0.10, "tips-a": 0.18, "tips-b": 0.0}  # tips-b never converts
TIPS_EXPOSED_SHARE = 0.33
TIPS_START_DAYS = 30  # the onboarding-tips experiment started 30 days before the reference time
EDGE_TIMEZONES = ("UTC", "America/New_York")  # the two demo projects' zones (posthog_local.config)
EDGE_WINDOWS = (1, 7, 14, 28, 30)  # "last N days" windows the templates use by default (all inside the
# 60 days of data: the bulk events own the time before them)
UUID_NAMESPACE = uuid.UUID("6f0c9a8e-2b51-4d4e-9c1e-5f3a1d2b7c90")


@dataclass
class Generated:
    dataset: Dataset
    resources: dict[str, Any]
    persons_rows: list[tuple[str, str, str, int, bool]]  # id, distinct_id, props json, created, ident
    segments: dict[str, list[str]]
    planted: dict[str, Any]


def _weighted(rng: random.Random, table: list[tuple[str, int]]) -> str:
    total = sum(w for _, w in table)
    pick = rng.random() * total
    for name, weight in table:
        pick -= weight
        if pick < 0:
            return name
    return table[-1][0]


def _uuid7(rng: random.Random, ts_ms: int) -> str:
    """A UUIDv7 (time-ordered, like PostHog's event uuids) with seeded random bits."""
    value = (ts_ms & 0xFFFFFFFFFFFF) << 80 | 0x7 << 76 | rng.getrandbits(12) << 64
    value |= 0b10 << 62 | rng.getrandbits(62)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def feature_flag_definitions(created_ms: int) -> list[dict[str, Any]]:
    created = iso_ms(created_ms)

    def flag(fid: int, key: str, name: str, active: bool, groups: list[dict[str, Any]],
             variants: list[tuple[str, int]] | None = None,
             payloads: dict[str, Any] | None = None) -> dict[str, Any]:
        filters: dict[str, Any] = {"groups": groups, "payloads": payloads or {}}
        if variants:
            filters["multivariate"] = {"variants": [
                {"key": k, "name": k.title(), "rollout_percentage": p} for k, p in variants]}
        return {"id": fid, "key": key, "name": name, "active": active, "deleted": False,
                "filters": filters, "created_at": created, "created_by": None, "version": 1,
                "ensure_experience_continuity": False, "tags": [], "is_simple_flag": not variants}

    return [
        flag(1, "new-onboarding", "New onboarding flow experiment", True,
             [{"properties": [], "rollout_percentage": 100}], [("control", 50), ("test", 50)]),
        flag(2, "pricing-page-v2", "Pricing page redesign (A/A check)", True,
             [{"properties": [], "rollout_percentage": 100}], [("control", 50), ("test", 50)]),
        flag(3, "beta-dashboards", "Beta dashboards", True,
             [{"properties": [], "rollout_percentage": 30}], payloads={"true": {"layout": "grid"}}),
        flag(4, "enterprise-sso", "SSO for enterprise plans", True,
             [{"properties": [{"key": "plan", "type": "person", "operator": "exact",
                               "value": ["enterprise"]}], "rollout_percentage": 100}]),
        flag(5, "legacy-export", "Legacy CSV export (retired)", False,
             [{"properties": [], "rollout_percentage": 100}]),
        flag(6, "onboarding-tips", "Onboarding tips (three variants)", True,
             [{"properties": [], "rollout_percentage": 100}],
             [("control", 34), ("tips-a", 33), ("tips-b", 33)]),
        # Several condition groups, one with a variant override that PostHog evaluates first
        # (posthog/models/feature_flag/flag_matching.py) although it is listed second.
        flag(7, "checkout-redesign", "Checkout redesign", True,
             [{"properties": [], "rollout_percentage": 30},
              {"properties": [{"key": "plan", "type": "person", "operator": "exact", "value": ["enterprise"]}],
               "rollout_percentage": 100, "variant": "redesign-b"},
              {"properties": [{"key": "email", "type": "person", "operator": "icontains", "value": "user01"}],
               "rollout_percentage": 60}],
             [("control", 50), ("redesign-a", 25), ("redesign-b", 25)]),
    ]


class _Builder:
    """Accumulates events for one dataset; every draw comes from one seeded Random."""

    def __init__(self, seed: int, users: int, now_ms: int) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.users = users
        self.now = now_ms
        self.window_start = now_ms - WINDOW_DAYS * DAY_MS
        self.rows: list[tuple[int, str, str, str, str, str, str, str]] = []
        self.person_of: dict[str, str] = {}
        self.flags = feature_flag_definitions(self.window_start - 5 * DAY_MS)
        self.flag_by_key = {f["key"]: f for f in self.flags}
        self.dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

    def emit(self, ts: int, event: str, distinct_id: str, props: dict[str, Any],
             session_id: str = "", elements: str = "") -> None:
        if ts >= self.now:
            return
        uid = _uuid7(self.rng, ts)
        self.rows.append((ts, uid, event, distinct_id, self.dumps(props),
                          self.person_of[distinct_id], session_id, elements))

    def session(self, user: dict[str, Any], start: int, n_events: int,
                forced: list[tuple[str, dict[str, Any]]] | None = None) -> int:
        """One browsing session; returns the time of its last event."""
        rng = self.rng
        sid = _uuid7(rng, start)
        base = {"$browser": user["browser"], "$os": user["os"], "$lib": "web"}
        t = start
        export_w = EXPORT_WEIGHT[user["plan"]]
        weights = (45, 25, 14, 7, export_w)
        for i in range(n_events):
            if forced and i < len(forced):
                name, extra = forced[i]
            else:
                name = rng.choices(SESSION_EVENTS, weights)[0]
                extra = {}
            props = dict(base)
            path = rng.choice(PATHS[:-1])
            props["$current_url"] = HOST + extra.pop("$path", path)
            props["$session_id"] = sid
            elements = ""
            if name == "$autocapture":
                props["$event_type"] = "click"
                label = rng.choice(["Save", "Export", "Share", "Open"])
                elements = f'button.btn:nth-child="{rng.randint(1, 4)}"text="{label}"'
            else:
                props["plan"] = user["plan"]
            if name == "$pageview" and rng.random() < 0.03:
                del props["$browser"]  # server-rendered views: no browser, grouped as null
            if name == "report_exported":
                props["format"] = rng.choice(["csv", "pdf", "xlsx"])
            props.update(extra)
            self.emit(t, name, user["distinct_id"], props, sid, elements)
            t += rng.randint(5_000, 150_000)
        return t

    def active_days(self, user: dict[str, Any], first_day: int, last_day: int, p_active: float,
                    sessions: tuple[int, int], events: tuple[int, int]) -> None:
        rng = self.rng
        for day in range(first_day, last_day):
            if rng.random() >= p_active:
                continue
            day_start = day * DAY_MS
            for _ in range(rng.randint(*sessions)):
                start = day_start + rng.randint(6 * HOUR_MS, 22 * HOUR_MS)
                self.session(user, start, rng.randint(*events))


def _build(seed: int, users: int, now_ms: int) -> Generated:
    b = _Builder(seed, users, now_ms)
    rng = b.rng
    n_power = round(users * 0.05)
    n_churn = round(users * 0.10)
    n_new = round(users * 0.35)
    n_casual = users - n_power - n_churn - n_new
    segment_list = (["power"] * n_power + ["churner"] * n_churn + ["new"] * n_new
                    + ["casual"] * n_casual)
    rng.shuffle(segment_list)
    now_day = now_ms // DAY_MS
    start_day = b.window_start // DAY_MS
    people: list[dict[str, Any]] = []
    for index, segment in enumerate(segment_list, start=1):
        distinct_id = f"user-{index:05d}"
        browser = _weighted(rng, BROWSERS)
        user: dict[str, Any] = {
            "distinct_id": distinct_id,
            "segment": segment,
            "browser": browser,
            "os": rng.choice(OS_BY_BROWSER[browser]),
            "plan": "free" if segment == "new" else _weighted(
                rng, [("free", 30), ("pro", 45), ("enterprise", 25)] if segment == "power" else PLANS),
            "person_id": str(uuid.uuid5(UUID_NAMESPACE, f"{seed}:{distinct_id}")),
        }
        if segment == "new":
            user["signup"] = b.window_start + rng.randint(0, WINDOW_DAYS * DAY_MS - 6 * HOUR_MS)
        else:
            user["signup"] = now_ms - rng.randint(61, 400) * DAY_MS - rng.randint(0, DAY_MS - 1)
        b.person_of[distinct_id] = user["person_id"]
        people.append(user)

    # --- existing users: background activity -------------------------------------------------
    for user in people:
        segment = user["segment"]
        if segment == "power":
            b.active_days(user, start_day, now_day, 0.93, (1, 3), (5, 10))
        elif segment == "casual":
            before = len(b.rows)
            b.active_days(user, start_day, now_day - 14, rng.uniform(0.08, 0.2), (1, 1), (1, 3))
            b.active_days(user, now_day - 14, now_day, rng.uniform(0.08, 0.2), (1, 1), (1, 3))
            if not any(r[0] >= (now_day - 14) * DAY_MS for r in b.rows[before:]):
                # casual users are retained: at least one visit in the last 14 days
                day = now_day - rng.randint(1, 14)
                b.session(user, day * DAY_MS + rng.randint(6 * HOUR_MS, 22 * HOUR_MS),
                          rng.randint(1, 4))
        elif segment == "churner":
            churn_day = now_day - rng.randint(15, 40)
            user["churn_day"] = churn_day
            b.active_days(user, start_day, churn_day, rng.uniform(0.3, 0.6), (1, 1), (3, 6))

    # --- new users: signup funnel and the new-onboarding experiment ----------------------------
    onboarding = b.flag_by_key["new-onboarding"]
    new_users = [u for u in people if u["segment"] == "new"]
    by_variant: dict[str, list[dict[str, Any]]] = {"control": [], "test": []}
    for user in new_users:
        variant = flaglib.evaluate(onboarding, user["distinct_id"]).variant or "control"
        user["variant"] = variant
        by_variant.setdefault(variant, []).append(user)
    for variant, group in sorted(by_variant.items()):
        order = list(group)
        rng.shuffle(order)
        n = len(order)
        cut_sub = round(n * SUBSCRIBE_RATE.get(variant, 0.12))
        cut_report = round(n * REPORT_RATE)
        cut_onb = round(n * ONBOARDING_RATE)
        for position, user in enumerate(order):
            user["stage"] = (3 if position < cut_sub else 2 if position < cut_report
                             else 1 if position < cut_onb else 0)
    for user in new_users:
        _new_user_events(b, user, onboarding)

    # --- existing users: pricing-page-v2 A/A exposures -----------------------------------------
    pricing = b.flag_by_key["pricing-page-v2"]
    candidates = [u for u in people if u["segment"] in ("casual", "power")]
    exposed = [u for u in candidates if rng.random() < PRICING_EXPOSED_SHARE]
    exposed_by_variant: dict[str, list[dict[str, Any]]] = {}
    for user in exposed:
        variant = flaglib.evaluate(pricing, user["distinct_id"]).variant or "control"
        exposed_by_variant.setdefault(variant, []).append(user)
        when = now_ms - rng.randint(DAY_MS, 50 * DAY_MS)
        user["pricing_exposure"] = when
        b.session(user, when, 2, forced=[
            ("$pageview", {"$path": "/pricing"}),
            ("$feature_flag_called", {"$feature_flag": "pricing-page-v2",
                                      "$feature_flag_response": variant}),
        ])
    for _variant, group in sorted(exposed_by_variant.items()):
        order = list(group)
        rng.shuffle(order)
        for user in order[: round(len(order) * PRICING_CONVERSION)]:
            when = user["pricing_exposure"] + rng.randint(10 * MINUTE_MS, 3 * DAY_MS)
            b.emit(when, "subscription_started", user["distinct_id"],
                   {"plan": "pro", "previous_plan": user["plan"], "$lib": "posthog-python",
                    "source": "pricing-page"})

    planted = _plant_hard_cases(b, people)

    # --- persons ------------------------------------------------------------------------------
    persons_rows: list[tuple[str, str, str, int, bool]] = []
    persons: list[dict[str, Any]] = []
    for user in people:
        number = user["distinct_id"].split("-")[1]
        props = {
            "email": f"user{number}@example.com",
            "name": f"User {number}",
            "plan": user.get("final_plan", user["plan"]),
            "signup_date": date_of_ms(user["signup"]),
            "$initial_browser": user["browser"],
            "$initial_os": user["os"],
        }
        persons_rows.append((user["person_id"], user["distinct_id"], b.dumps(props),
                             user["signup"], True))
        persons.append({"id": user["person_id"], "distinct_id": user["distinct_id"],
                        "properties": props, "created_at": user["signup"]})
    persons.sort(key=lambda p: p["id"])

    b.rows.sort(key=lambda r: (r[0], r[1]))
    events = [EventRow(r[0], r[1], r[2], r[3], r[4]) for r in b.rows]
    resources = _resources(b, people, now_ms)
    dataset = Dataset(reference_ms=now_ms, events=events, persons=persons, flags=b.flags,
                      cohorts=resources["cohorts"], experiments=resources["experiments"])
    segments = {s: sorted(u["distinct_id"] for u in people if u["segment"] == s)
                for s in ("power", "churner", "new", "casual")}
    generated = Generated(dataset=dataset, resources=resources, persons_rows=persons_rows,
                          segments=segments, planted=planted)
    generated.rows = b.rows  # type: ignore[attr-defined]
    return generated


def _new_user_events(b: _Builder, user: dict[str, Any], flag: dict[str, Any]) -> None:
    rng = b.rng
    did = user["distinct_id"]
    signup = user["signup"]
    variant = user["variant"]
    exposure = {"$feature_flag": flag["key"], "$feature_flag_response": variant}
    landing = signup - rng.randint(30_000, 600_000)
    b.session(user, landing, 2, forced=[("$pageview", {"$path": "/"}),
                                        ("$pageview", {"$path": "/signup"})])
    b.emit(signup, "signed_up", did, {"plan": "free", "$browser": user["browser"],
                                      "$os": user["os"], "signup_method": rng.choice(
                                          ["email", "google", "github"])})
    b.emit(signup + rng.randint(2_000, 20_000), "$feature_flag_called", did,
           {**exposure, "$browser": user["browser"], "$os": user["os"], "$lib": "web"})
    stage = user["stage"]
    t = signup
    times: list[int] = []
    if stage >= 3:
        # subscribers move quickly: signup -> subscription within about 4.5 days
        t += rng.randint(3 * MINUTE_MS, 12 * HOUR_MS)
        times.append(t)
        t += rng.randint(10 * MINUTE_MS, 2 * DAY_MS)
        times.append(t)
        t += rng.randint(HOUR_MS, 2 * DAY_MS)
        times.append(t)
    elif stage >= 1:
        t += rng.randint(3 * MINUTE_MS, 36 * HOUR_MS)
        times.append(t)
        if stage == 2:
            roll = rng.random()
            if roll < 0.6:
                t += rng.randint(10 * MINUTE_MS, 3 * DAY_MS)
            elif roll < 0.85:
                t += rng.randint(4 * DAY_MS, 12 * DAY_MS)  # outside the 7-day activation window
            else:
                t += rng.randint(14 * DAY_MS + HOUR_MS, 20 * DAY_MS)  # outside the 14-day funnel
            times.append(t)
    reached = 0
    for name, when in zip(FUNNEL[1:], times, strict=False):
        if when >= b.now:
            break
        plan = "pro" if name == "subscription_started" else user["plan"]
        b.emit(when, name, did, {"plan": plan, "$browser": user["browser"], "$os": user["os"],
                                 "$lib": "web"})
        reached += 1
    if reached >= 3:
        user["final_plan"] = "pro"
    # ongoing activity after signup, stronger for activated users
    p_active = (0.03, 0.06, 0.15, 0.2)[reached]
    subscribed_at = times[2] if reached >= 3 else None
    for day in range(signup // DAY_MS + 1, b.now // DAY_MS):
        if rng.random() >= p_active:
            continue
        start = day * DAY_MS + rng.randint(6 * HOUR_MS, 22 * HOUR_MS)
        if subscribed_at is not None and start > subscribed_at:
            user["plan"] = "pro"
        forced: list[tuple[str, dict[str, Any]]] = [("$pageview", {"$path": "/dashboard"})]
        if rng.random() < 0.3:
            forced.append(("$feature_flag_called", dict(exposure)))
        b.session(user, start, rng.randint(1, 3), forced=forced)
    user["plan"] = user.get("final_plan", "free")


def _local_midnight_ms(ms: int, zone: str) -> int:
    """Epoch ms of 00:00 in `zone` on the local date of the instant `ms`."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(zone)
    local = dt.datetime.fromtimestamp(ms / 1000, tz)
    midnight = dt.datetime(local.year, local.month, local.day, tzinfo=tz)
    return int(midnight.timestamp() * 1000)


def _plant_hard_cases(b: _Builder, people: list[dict[str, Any]]) -> dict[str, Any]:
    """What real data has and the first dataset lacked (issue 11). A Random of its own, so the
    planted base behaviour above stays as it was. Returns what was planted, by kind."""
    rng = random.Random(b.seed * 7919 + 11)
    now = b.now
    planted: dict[str, Any] = {}
    news = [u for u in people if u["segment"] == "new"]
    olds = [u for u in people if u["segment"] in ("casual", "power")]

    def props(user: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"plan": user["plan"], "$browser": user["browser"], "$os": user["os"], "$lib": "web", **extra}

    taken: set[str] = set()

    def pick(pool: list[dict[str, Any]], n: int, ok: Any) -> list[dict[str, Any]]:
        chosen = [u for u in pool if u["distinct_id"] not in taken and ok(u)]
        chosen = rng.sample(chosen, min(n, len(chosen)))
        chosen.sort(key=lambda u: u["distinct_id"])
        taken.update(u["distinct_id"] for u in chosen)
        return chosen

    # -- funnels: restarts, repeats, order, one timestamp, the window's edge --------------------
    restarters = pick(news, 40, lambda u: u["stage"] <= 1 and u["signup"] < now - 22 * DAY_MS)
    for user in restarters:  # a second attempt 15-18 days later that goes all the way
        t = user["signup"] + rng.randint(15, 18) * DAY_MS + rng.randint(0, DAY_MS)
        for name, gap in (("signed_up", 0), ("onboarding_completed", rng.randint(HOUR_MS, 5 * HOUR_MS)),
                          ("first_report_created", rng.randint(HOUR_MS, DAY_MS)),
                          ("subscription_started", rng.randint(HOUR_MS, 2 * DAY_MS))):
            t += gap
            b.emit(t, name, user["distinct_id"], props(user, restarted=True))
    repeaters = pick(news, 40, lambda u: u["stage"] >= 1 and u["signup"] < now - 10 * DAY_MS)
    for user in repeaters:  # the same step done again later
        t = user["signup"] + rng.randint(2, 9) * DAY_MS
        b.emit(t, "onboarding_completed", user["distinct_id"], props(user, repeated=True))
        if rng.random() < 0.5:
            b.emit(t + rng.randint(MINUTE_MS, DAY_MS), "first_report_created", user["distinct_id"], props(user))
    disorder = pick(news, 15, lambda u: u["stage"] == 0 and u["signup"] < now - 3 * DAY_MS)
    for user in disorder:  # step 3 before step 2
        t = user["signup"] + HOUR_MS
        b.emit(t, "first_report_created", user["distinct_id"], props(user))
        b.emit(t + HOUR_MS, "onboarding_completed", user["distinct_id"], props(user))
    same_time = pick(news, 12, lambda u: u["stage"] == 0 and u["signup"] < now - 3 * DAY_MS)
    for user in same_time:  # steps 2 and 3 at one timestamp (PostHog's funnel counts both)
        t = user["signup"] + 3 * HOUR_MS + 123
        b.emit(t, "first_report_created", user["distinct_id"], props(user))
        b.emit(t, "onboarding_completed", user["distinct_id"], props(user))
    edge = pick(news, 12, lambda u: u["stage"] == 0 and u["signup"] < now - 16 * DAY_MS)
    for i, user in enumerate(edge):  # the last step exactly at the 14-day window's end, or 1 ms after
        t = user["signup"]
        b.emit(t + HOUR_MS, "onboarding_completed", user["distinct_id"], props(user))
        b.emit(t + 2 * HOUR_MS, "first_report_created", user["distinct_id"], props(user))
        b.emit(t + 14 * DAY_MS + (i % 2), "subscription_started", user["distinct_id"],
               props(user, plan="pro", edge=True))
    planted["funnel"] = {"restarters": [u["distinct_id"] for u in restarters],
                         "repeaters": [u["distinct_id"] for u in repeaters],
                         "out_of_order": [u["distinct_id"] for u in disorder],
                         "same_timestamp": [u["distinct_id"] for u in same_time],
                         "window_edge": [u["distinct_id"] for u in edge]}

    # -- new-onboarding: two variants, non-variant responses, exposures before the start ------------
    onboarding = b.flag_by_key["new-onboarding"]
    start = b.window_start  # the experiment's start_date (resources.json)
    two = pick(news, 25, lambda u: u["signup"] < now - 4 * DAY_MS)
    for user in two:
        other = "test" if user["variant"] == "control" else "control"
        b.emit(user["signup"] + rng.randint(DAY_MS, 3 * DAY_MS), "$feature_flag_called", user["distinct_id"],
               props(user, **{"$feature_flag": onboarding["key"], "$feature_flag_response": other}))
    odd = pick(news, 25, lambda u: u["signup"] < now - 2 * DAY_MS)
    for i, user in enumerate(odd):  # responses that are no variant: false, or no response at all
        extra: dict[str, Any] = {"$feature_flag": onboarding["key"]}
        if i % 5 < 3:
            extra["$feature_flag_response"] = False
        b.emit(user["signup"] + rng.randint(HOUR_MS, DAY_MS), "$feature_flag_called", user["distinct_id"],
               props(user, **extra))
    outsiders = pick(olds, 10, lambda u: True)
    for user in outsiders:  # only ever answered `false`: never exposed
        b.emit(now - rng.randint(2, 40) * DAY_MS, "$feature_flag_called", user["distinct_id"],
               props(user, **{"$feature_flag": onboarding["key"], "$feature_flag_response": False}))
    planted["experiment"] = {"two_variants": [u["distinct_id"] for u in two],
                             "non_variant_responses": [u["distinct_id"] for u in odd],
                             "only_non_variant": [u["distinct_id"] for u in outsiders]}

    # -- onboarding-tips: three variants, tips-b never converts ------------------------------------
    tips = b.flag_by_key["onboarding-tips"]
    tips_start = now - TIPS_START_DAYS * DAY_MS
    early = pick(olds, 20, lambda u: True)
    for i, user in enumerate(early):  # QA exposures before the start, converting before it too
        variant = flaglib.evaluate(tips, user["distinct_id"]).variant or "control"
        exposure = props(user, **{"$feature_flag": tips["key"], "$feature_flag_response": variant})
        t = tips_start - rng.randint(2, 4) * DAY_MS
        b.emit(t, "$feature_flag_called", user["distinct_id"], exposure)
        b.emit(t + HOUR_MS, "checklist_completed", user["distinct_id"], props(user, qa=True))
        if i % 2 == 0:  # and seen again after the start: counted from then, the early conversion not
            b.emit(tips_start + rng.randint(5, 25) * DAY_MS, "$feature_flag_called", user["distinct_id"], exposure)
    planted["experiment"]["before_start"] = [u["distinct_id"] for u in early]
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for user in olds:
        if user["distinct_id"] in taken or rng.random() >= TIPS_EXPOSED_SHARE:
            continue
        variant = flaglib.evaluate(tips, user["distinct_id"]).variant or "control"
        when = tips_start + rng.randint(HOUR_MS, 25 * DAY_MS)
        user["tips"] = (variant, when)
        by_variant.setdefault(variant, []).append(user)
        exposure = props(user, **{"$feature_flag": tips["key"], "$feature_flag_response": variant})
        b.emit(when, "$feature_flag_called", user["distinct_id"], exposure)
        if rng.random() < 0.3:  # seen again: still one user, counted from the first exposure
            b.emit(when + rng.randint(DAY_MS, 4 * DAY_MS), "$feature_flag_called", user["distinct_id"], exposure)
    for variant, group in sorted(by_variant.items()):
        for user in rng.sample(group, round(len(group) * TIPS_CONVERSION.get(variant, 0.0))):
            b.emit(user["tips"][1] + rng.randint(10 * MINUTE_MS, 3 * DAY_MS), "checklist_completed",
                   user["distinct_id"], props(user))
    planted["three_variants"] = {v: len(g) for v, g in sorted(by_variant.items())}

    # -- time: a millisecond either side of each window's start, in both projects' zones -------------
    edges = []
    users = pick(olds, 2 * len(EDGE_TIMEZONES) * len(EDGE_WINDOWS) + 1, lambda u: u["segment"] == "casual") \
        or olds[:1] or people[:1]
    users = [users[i % len(users)] for i in range(2 * len(EDGE_TIMEZONES) * len(EDGE_WINDOWS) + 1)]
    last_second = now - 1000  # "today" is the local date of the last second before now
    for zone in EDGE_TIMEZONES:
        today_start = _local_midnight_ms(last_second, zone)
        for days in EDGE_WINDOWS:
            boundary = _local_midnight_ms(today_start - (days - 1) * DAY_MS + 12 * HOUR_MS, zone)
            for offset in (0, -1):  # at the window's first instant (inside) and 1 ms before (outside)
                user = users[len(edges)]
                b.emit(boundary + offset, "$pageview", user["distinct_id"],
                       props(user, **{"$current_url": HOST + "/edge", "edge": f"{zone} {days}d {offset}ms"}))
                edges.append({"distinct_id": user["distinct_id"], "timestamp": iso_ms(boundary + offset),
                              "label": f"{zone} {days}d {offset}ms"})
    b.emit(now - 1, "$pageview", users[-1]["distinct_id"], props(users[-1], **{"$current_url": HOST + "/edge"}))
    edges.append({"distinct_id": users[-1]["distinct_id"], "timestamp": iso_ms(now - 1), "label": "1 ms before now"})
    planted["time_edges"] = edges
    return planted


def _resources(b: _Builder, people: list[dict[str, Any]], now_ms: int) -> dict[str, Any]:
    window_start = b.window_start
    enterprise = sorted(u["person_id"] for u in people if u.get("final_plan", u["plan"]) == "enterprise")
    cohorts = [{
        "id": 1, "name": "Enterprise accounts", "description": "People on the enterprise plan",
        "is_static": True, "deleted": False, "filters": {}, "query": None,
        "created_at": iso_ms(window_start - 3 * DAY_MS), "created_by": None,
        "is_calculating": False, "errors_calculating": 0, "members": enterprise,
    }]
    insights = [
        {"id": 1, "short_id": "wau0001", "name": "Weekly active users",
         "description": "Distinct users per week", "saved": True, "deleted": False,
         "query": {"kind": "InsightVizNode", "source": {
             "kind": "TrendsQuery", "interval": "week",
             "series": [{"kind": "EventsNode", "event": "$pageview", "math": "dau"}],
             "dateRange": {"date_from": "-60d"}}},
         "created_at": iso_ms(window_start), "last_refresh": None, "result": None,
         "tags": ["growth"]},
        {"id": 2, "short_id": "fun0002", "name": "Signup funnel",
         "description": "Signup to subscription", "saved": True, "deleted": False,
         "query": {"kind": "InsightVizNode", "source": {
             "kind": "FunnelsQuery",
             "series": [{"kind": "EventsNode", "event": e} for e in FUNNEL],
             "funnelsFilter": {"funnelWindowInterval": 14, "funnelWindowIntervalUnit": "day"},
             "dateRange": {"date_from": "-60d"}}},
         "created_at": iso_ms(window_start + DAY_MS), "last_refresh": None, "result": None,
         "tags": ["activation"]},
    ]
    metric = {"kind": "ExperimentMetric", "metric_type": "funnel",
              "series": [{"kind": "EventsNode", "event": "subscription_started"}]}
    experiments = [
        {"id": 1, "name": "New onboarding flow", "description": "Does the new onboarding lift subscriptions?",
         "feature_flag_key": "new-onboarding", "feature_flag": 1,
         "start_date": iso_ms(window_start), "end_date": None, "archived": False,
         "parameters": {"feature_flag_variants": [{"key": "control", "rollout_percentage": 50},
                                                  {"key": "test", "rollout_percentage": 50}],
                        "minimum_detectable_effect": 30},
         "metrics": [metric], "created_at": iso_ms(window_start - DAY_MS), "type": "product"},
        {"id": 2, "name": "Pricing page v2", "description": "A/A check of the pricing page",
         "feature_flag_key": "pricing-page-v2", "feature_flag": 2,
         "start_date": iso_ms(now_ms - 50 * DAY_MS), "end_date": None, "archived": False,
         "parameters": {"feature_flag_variants": [{"key": "control", "rollout_percentage": 50},
                                                  {"key": "test", "rollout_percentage": 50}],
                        "minimum_detectable_effect": 20},
         "metrics": [metric], "created_at": iso_ms(now_ms - 51 * DAY_MS), "type": "product"},
        {"id": 3, "name": "Onboarding tips", "description": "Which tips get people through the checklist?",
         "feature_flag_key": "onboarding-tips", "feature_flag": 6,
         "start_date": iso_ms(now_ms - TIPS_START_DAYS * DAY_MS), "end_date": None, "archived": False,
         "parameters": {"feature_flag_variants": [{"key": "control", "rollout_percentage": 34},
                                                  {"key": "tips-a", "rollout_percentage": 33},
                                                  {"key": "tips-b", "rollout_percentage": 33}],
                        "minimum_detectable_effect": 25},
         "metrics": [{"kind": "ExperimentMetric", "metric_type": "funnel",
                      "series": [{"kind": "EventsNode", "event": "checklist_completed"}]}],
         "created_at": iso_ms(now_ms - (TIPS_START_DAYS + 1) * DAY_MS), "type": "product"},
    ]
    return {"feature_flags": b.flags, "cohorts": cohorts, "insights": insights,
            "experiments": experiments}


# --- writing -------------------------------------------------------------------------------------

EVENT_COLUMNS = ("uuid VARCHAR, event VARCHAR, properties VARCHAR, ts BIGINT, distinct_id VARCHAR, "
                 "person_id VARCHAR, session_id VARCHAR, elements_chain VARCHAR")


def _write_parquet_from_csv(con: Any, csv_path: Path, columns: str, select: str, out: Path) -> None:
    col_map = ", ".join(
        f"'{c.split()[0]}': '{c.split()[1]}'" for c in columns.split(", "))
    con.execute(
        f"COPY (SELECT {select} FROM read_csv('{csv_path}', header=false, quote='\"', "
        f"escape='\"', columns={{{col_map}}}, auto_detect=false, parallel=false)) "
        f"TO '{out}' (FORMAT parquet, COMPRESSION zstd)"
    )


def write_dataset(target: Path, seed: int, users: int, now_ms: int, bulk_events: int = 0) -> dict[str, Any]:
    """Generate into `target` (an empty directory) and return meta.json's content."""
    import duckdb

    from . import truths as truthlib

    generated = _build(seed, users, now_ms)
    rows = generated.rows  # type: ignore[attr-defined]
    tmp_csv = target / "events.csv"
    with tmp_csv.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        for ts, uid, name, did, props, pid, sid, elements in rows:
            writer.writerow((uid, name, props, ts, did, pid, sid, elements))
    persons_csv = target / "persons.csv"
    with persons_csv.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        for pid, did, props, created, identified in sorted(generated.persons_rows):
            writer.writerow((pid, did, props, created, "true" if identified else "false"))
    con = duckdb.connect()
    try:
        con.execute("SET threads = 1")
        _write_parquet_from_csv(
            con, tmp_csv, EVENT_COLUMNS,
            "uuid, event, properties, epoch_ms(ts) AS timestamp, distinct_id, person_id, "
            "elements_chain, epoch_ms(ts + 250) AS created_at, session_id AS \"$session_id\"",
            target / "events.parquet")
        _write_parquet_from_csv(
            con, persons_csv,
            "id VARCHAR, distinct_id VARCHAR, properties VARCHAR, created BIGINT, is_identified BOOLEAN",
            "id, distinct_id, properties, epoch_ms(created) AS created_at, is_identified",
            target / "persons.parquet")
        bulk: dict[str, Any] | None = None
        if bulk_events > 0:
            bulk = _write_bulk(con, target / "bulk_events.parquet", bulk_events, seed, now_ms)
    finally:
        con.close()
    tmp_csv.unlink()
    persons_csv.unlink()
    (target / "resources.json").write_text(json.dumps(generated.resources, indent=1, sort_keys=True) + "\n")
    truths = truthlib.compute_all(generated.dataset)
    truths["planted"] = {
        "segments": {k: len(v) for k, v in generated.segments.items()},
        "churners_sample": generated.segments["churner"][:5],
        "power_users_sample": generated.segments["power"][:5],
        "new_users_sample": generated.segments["new"][:5],
        "experiment": {"flag": "new-onboarding", "planted_rates": SUBSCRIBE_RATE},
        "aa_test": {"flag": "pricing-page-v2", "planted_rate": PRICING_CONVERSION},
        "three_variants": {"flag": "onboarding-tips", "planted_rates": TIPS_CONVERSION},
        "hard_cases": generated.planted,
    }
    if bulk is not None:
        truths["bulk"] = bulk
    (target / "truths.json").write_text(json.dumps(truths, indent=1, sort_keys=True) + "\n")
    counts: dict[str, int] = {}
    for row in generated.dataset.events:
        counts[row.event] = counts.get(row.event, 0) + 1
    meta = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "users": users,
        "reference_time": iso_ms(now_ms),
        "reference_ms": now_ms,
        "window_days": WINDOW_DAYS,
        "bulk_events": bulk_events,
        "counts": {"events": len(generated.dataset.events) + bulk_events,
                   "base_events": len(generated.dataset.events),
                   "persons": len(generated.dataset.persons),
                   "by_event": dict(sorted(counts.items()))},
        "timestamp_format": "YYYY-MM-DDTHH:MM:SS.ffffffZ",
    }
    (target / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return meta


BULK_EVENTS = ["$pageview", "$autocapture", "dashboard_viewed", "report_created", "report_exported"]


def _write_bulk(con: Any, out: Path, n: int, seed: int, now_ms: int) -> dict[str, Any]:
    """N simple events spread over the 30 days before the base window, generated in SQL."""
    end = now_ms - WINDOW_DAYS * DAY_MS
    start = end - BULK_SPAN_DAYS * DAY_MS
    span = end - start
    con.execute(
        f"""
        COPY (
          WITH base AS (
            SELECT i, hash(i, {seed}) AS h, md5('{seed}:bulk:' || i) AS m FROM range({n}) t(i)
          ), shaped AS (
            SELECT
              substr(m, 1, 8) || '-' || substr(m, 9, 4) || '-4' || substr(m, 14, 3) || '-a'
                || substr(m, 18, 3) || '-' || substr(m, 21, 12) AS uuid,
              ['$pageview', '$autocapture', 'dashboard_viewed', 'report_created',
               'report_exported'][1 + (h % 5)::INTEGER] AS event,
              'bulk-user-' || lpad(CAST((h // 7) % 20000 AS VARCHAR), 5, '0') AS distinct_id,
              ['Chrome', 'Safari', 'Firefox', 'Edge', 'Opera'][1 + ((h // 11) % 5)::INTEGER] AS browser,
              CAST({start} + (i * {span}) // {n} AS BIGINT) AS ts
            FROM base
          )
          SELECT uuid, event,
                 '{{"$browser":"' || browser || '","$current_url":"{HOST}/bulk","$lib":"bulk"}}' AS properties,
                 epoch_ms(ts) AS timestamp, distinct_id,
                 md5('{seed}:bulk-person:' || distinct_id) AS person_id,
                 '' AS elements_chain, epoch_ms(ts + 250) AS created_at, '' AS "$session_id"
          FROM shaped ORDER BY timestamp, uuid
        ) TO '{out}' (FORMAT parquet, COMPRESSION zstd)
        """
    )
    return {"events": n, "start": iso_ms(start), "end": iso_ms(end),
            "note": "bulk events lie in [start, end), before the base 60-day window"}


# --- the cached data directory --------------------------------------------------------------------

class DatasetMismatch(Exception):
    """The directory holds a dataset generated with other settings."""


def default_data_dir(seed: int, users: int, now_ms: int, bulk_events: int = 0) -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    name = f"seed-{seed}"
    if users != DEFAULT_USERS:
        name += f"-users-{users}"
    if now_ms != to_ms(parse_iso(DEFAULT_NOW)):
        name += "-now-" + iso_ms(now_ms)[:19].replace(":", "").replace("-", "")
    if bulk_events:
        name = f"bulk-{bulk_events}-{name}"
    # Each generator version has directories of its own: servers of another version (another
    # checkout sharing the cache) never regenerate a dataset in use.
    name += f"-v{GENERATOR_VERSION}"
    return Path(cache) / "sandbox-runner" / "posthog-local" / name


def _meta_matches(meta: dict[str, Any], seed: int, users: int, now_ms: int, bulk_events: int) -> bool:
    return (meta.get("generator_version") == GENERATOR_VERSION and meta.get("seed") == seed
            and meta.get("users") == users and meta.get("reference_ms") == now_ms
            and meta.get("bulk_events", 0) == bulk_events)


def ensure_dataset(data_dir: Path, seed: int, users: int, now_ms: int, bulk_events: int = 0,
                   log: Any = None) -> dict[str, Any]:
    """Return the meta of the dataset in data_dir, generating it first (atomically) if absent.

    Generation writes into a temporary sibling directory and renames it into place, so two
    servers starting at once both end up reading one complete dataset.
    """
    meta_path = data_dir / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if _meta_matches(meta, seed, users, now_ms, bulk_events):
            return meta
        if meta.get("generator_version") == GENERATOR_VERSION:
            raise DatasetMismatch(
                f"{data_dir} holds a dataset for seed={meta.get('seed')} users={meta.get('users')} "
                f"now={meta.get('reference_time')} bulk={meta.get('bulk_events', 0)}; "
                "choose another --data directory or matching options")
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.tmp-", dir=data_dir.parent))
    started = time.monotonic()
    try:
        meta = write_dataset(tmp, seed, users, now_ms, bulk_events)
        if log is not None:
            log(f"generated {meta['counts']['events']} events for {users} users in "
                f"{time.monotonic() - started:.1f}s into {data_dir}")
        try:
            os.rename(tmp, data_dir)
        except OSError:
            # Someone else finished first, or a stale dataset of an older version is there.
            if meta_path.exists():
                existing = json.loads(meta_path.read_text())
                if _meta_matches(existing, seed, users, now_ms, bulk_events):
                    return existing
            stale = data_dir.with_name(f".{data_dir.name}.stale-{os.getpid()}-{time.time_ns()}")
            os.rename(data_dir, stale)
            os.rename(tmp, data_dir)
            shutil.rmtree(stale, ignore_errors=True)
        return meta
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """`python -m posthog_local.generator [--seed N] [--users N] [--now ISO] [--bulk-events N] DIR`"""
    import argparse

    parser = argparse.ArgumentParser(prog="posthog-local generate",
                                     description="Generate a posthog-local dataset directory.")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--users", type=int, default=DEFAULT_USERS)
    parser.add_argument("--now", default=DEFAULT_NOW)
    parser.add_argument("--bulk-events", type=int, default=0)
    parser.add_argument("dir", nargs="?")
    args = parser.parse_args(argv)
    now_ms = to_ms(parse_iso(args.now))
    target = Path(args.dir) if args.dir else default_data_dir(args.seed, args.users, now_ms, args.bulk_events)
    try:
        meta = ensure_dataset(target, args.seed, args.users, now_ms, args.bulk_events,
                              log=lambda m: print(m, file=sys.stderr))
    except DatasetMismatch as err:
        print(f"posthog-local generate: {err}", file=sys.stderr)
        return 64
    print(json.dumps({"data": str(target), "counts": meta["counts"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
