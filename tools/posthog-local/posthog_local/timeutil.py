"""Time helpers: the generator and the truths work in UTC epoch milliseconds."""

from __future__ import annotations

import datetime as dt
import functools

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
UTC = dt.timezone.utc
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def parse_iso(text: str) -> dt.datetime:
    """Parse an ISO-8601 date or date-time; naive values are taken as UTC. Raises ValueError."""
    value = text.strip()
    if not value:
        raise ValueError("empty timestamp")
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def to_ms(moment: dt.datetime) -> int:
    """UTC epoch milliseconds of an aware (or naive-UTC) datetime."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def from_ms(ms: int) -> dt.datetime:
    """Aware UTC datetime of epoch milliseconds."""
    return _EPOCH + dt.timedelta(milliseconds=ms)


def iso_ms(ms: int) -> str:
    """The wire format of a timestamp: `2026-10-20T12:34:56.123000Z` (microseconds, Z)."""
    return from_ms(ms).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_datetime(value: dt.datetime) -> str:
    """Format a DuckDB TIMESTAMP (naive UTC) or aware datetime in the wire format."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def date_of_ms(ms: int) -> str:
    """UTC calendar date `YYYY-MM-DD` of epoch milliseconds."""
    return _date_of_day(ms // DAY_MS)


@functools.lru_cache(maxsize=4096)
def _date_of_day(day: int) -> str:
    return (_EPOCH + dt.timedelta(days=day)).strftime("%Y-%m-%d")


def day_index(ms: int) -> int:
    """Days since the epoch (UTC) of epoch milliseconds."""
    return ms // DAY_MS


def monday_of_ms(ms: int) -> int:
    """Epoch milliseconds of 00:00 UTC on the Monday of that week (ISO week, Monday first)."""
    day = ms // DAY_MS
    # 1970-01-01 was a Thursday: weekday index (Monday=0) of day d is (d + 3) % 7.
    return (day - (day + 3) % 7) * DAY_MS


