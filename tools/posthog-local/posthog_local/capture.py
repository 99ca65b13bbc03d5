"""Decoding capture (and flags) request bodies the way PostHog's ingestion does."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import uuid as uuidlib
import zlib
from typing import Any
from urllib.parse import parse_qs

from .store import CapturedEvent
from .timeutil import parse_iso

MAX_BODY_BYTES = 20 * 1024 * 1024
# Client and server clocks closer than this are taken as equal (see README: timestamps).
CLOCK_SKEW_TOLERANCE_S = 10.0


class CaptureError(Exception):
    """A capture request PostHog would refuse: status and a plain-text message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def decode_body(body: bytes, content_encoding: str | None, content_type: str | None,
                query: dict[str, list[str]]) -> Any:
    """gzip (header or magic bytes), form `data=` fields and base64 bodies, then JSON."""
    data = body
    encoding = (content_encoding or "").lower()
    compression = (query.get("compression") or [""])[0].lower()
    try:
        if encoding == "gzip" or data[:2] == b"\x1f\x8b" or compression == "gzip-js":
            data = gzip.decompress(data)
        elif encoding == "deflate":
            data = zlib.decompress(data)
    except (OSError, EOFError, zlib.error) as err:
        raise CaptureError(400, f"failed to decompress request body: {err}") from err
    if (content_type or "").startswith("application/x-www-form-urlencoded") and \
            data.lstrip()[:1] not in (b"{", b"["):
        form = parse_qs(data.decode("utf-8", "replace"))
        if "data" not in form:
            raise CaptureError(400, "failed to decode request: form body without a data field")
        data = form["data"][0].encode("utf-8")
    text = data.strip()
    if not text:
        raise CaptureError(400, "failed to decode request: empty body")
    if compression == "base64" or text[:1] not in (b"{", b"["):
        try:
            text = base64.b64decode(text + b"=" * (-len(text) % 4), validate=False)
        except (ValueError, TypeError) as err:
            raise CaptureError(400, "failed to decode request: not JSON and not base64") from err
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CaptureError(400, f"failed to decode request: invalid JSON ({err.__class__.__name__})") from err


def _token_of(obj: dict[str, Any]) -> str | None:
    for key in ("api_key", "token"):
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
    props = obj.get("properties")
    if isinstance(props, dict):
        for key in ("token", "api_key"):
            value = props.get(key)
            if isinstance(value, str) and value:
                return value
    return None


def _parse_time(value: Any, what: str) -> dt.datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise CaptureError(400, f"invalid {what}: expected an ISO-8601 string")
    try:
        return parse_iso(value)
    except ValueError as err:
        raise CaptureError(400, f"invalid {what}: {value[:40]!r} is not ISO-8601") from err


def parse_capture(payload: Any, project_key: str | frozenset[str],
                  server_now: dt.datetime | None = None) -> list[CapturedEvent]:
    """Validate one capture payload (single event, batch envelope or bare list) into events."""
    now = server_now or dt.datetime.now(dt.timezone.utc)
    if isinstance(payload, list):
        envelope: dict[str, Any] = {}
        raw_events = payload
    elif isinstance(payload, dict):
        envelope = payload
        if "batch" in payload:
            raw_events = payload["batch"]
        elif "data" in payload and isinstance(payload["data"], (list, dict)):
            raw_events = payload["data"] if isinstance(payload["data"], list) else [payload["data"]]
        else:
            raw_events = [payload]
    else:
        raise CaptureError(400, "failed to decode request: expected a JSON object or array")
    if not isinstance(raw_events, list):
        raise CaptureError(400, "invalid payload: batch must be a list")
    if not raw_events:
        raise CaptureError(400, "empty batch")
    tokens = {_token_of(envelope)} if _token_of(envelope) else set()
    for raw in raw_events:
        if isinstance(raw, dict) and _token_of(raw):
            tokens.add(_token_of(raw))
    if not tokens:
        raise CaptureError(401, "no api key (api_key or token) in the request")
    if len(tokens) > 1:
        raise CaptureError(401, "the batch mixes several api keys")
    accepted = {project_key} if isinstance(project_key, str) else project_key
    if tokens.pop() not in accepted:
        raise CaptureError(401, "invalid project api key")
    historical = bool(envelope.get("historical_migration"))
    envelope_sent_at = _parse_time(envelope.get("sent_at"), "sent_at")
    events: list[CapturedEvent] = []
    for raw in raw_events:
        if not isinstance(raw, dict):
            raise CaptureError(400, "invalid event: expected a JSON object")
        name = raw.get("event")
        if not isinstance(name, str) or not name:
            raise CaptureError(400, "invalid event: missing event name")
        props = raw.get("properties") or {}
        if not isinstance(props, dict):
            raise CaptureError(400, "invalid event: properties must be an object")
        distinct = raw.get("distinct_id", props.get("distinct_id", props.get("$distinct_id")))
        if isinstance(distinct, (int, float)) and not isinstance(distinct, bool):
            distinct = str(distinct)
        if not isinstance(distinct, str) or not distinct.strip():
            raise CaptureError(400, "invalid event: missing distinct_id")
        uid = raw.get("uuid")
        if uid is not None:
            try:
                uid = str(uuidlib.UUID(str(uid)))
            except ValueError as err:
                raise CaptureError(400, "invalid event: uuid is not a UUID") from err
        else:
            uid = str(uuidlib.uuid4())
        timestamp = _parse_time(raw.get("timestamp"), "timestamp")
        sent_at = _parse_time(raw.get("sent_at"), "sent_at") or envelope_sent_at
        if timestamp is None:
            offset = raw.get("offset")
            moment = now - dt.timedelta(milliseconds=offset) if isinstance(offset, (int, float)) else now
        elif sent_at is not None and not historical:
            skew = now - sent_at
            moment = timestamp + skew if abs(skew.total_seconds()) > CLOCK_SKEW_TOLERANCE_S else timestamp
        else:
            moment = timestamp
        set_props = raw.get("$set", props.get("$set")) or {}
        set_once = raw.get("$set_once", props.get("$set_once")) or {}
        if not isinstance(set_props, dict) or not isinstance(set_once, dict):
            raise CaptureError(400, "invalid event: $set and $set_once must be objects")
        clean = {k: v for k, v in props.items() if k not in ("token", "api_key", "distinct_id")}
        events.append(CapturedEvent(
            uuid=uid, event=name, distinct_id=distinct.strip(), properties=clean,
            timestamp=moment.astimezone(dt.timezone.utc).replace(tzinfo=None),
            set_props=set_props, set_once_props=set_once))
    return events
