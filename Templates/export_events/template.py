"""export_events: a window of events streamed to a file, then summarised (Templates/SEMANTICS.md)."""
import hashlib
import json

from posthog_driver import PostHogClient, emit

START = {{ start }}
END = {{ end }}
EVENT_NAMES = {{ event_names }}
FORMAT = {{ format }}
COLUMNS = ["uuid", "event", "distinct_id", "timestamp", "properties"]


def instant(text):
    """A rendered datetime variable (UTC, `…Z`, whole seconds or microseconds) as an aware datetime."""
    import datetime

    return datetime.datetime.fromisoformat(text[:-1] + "+00:00")


if instant(START) >= instant(END):  # compared as instants: fractions of a second count
    raise SystemExit("sandbox-runner-error: start must be before end.")

path = "events." + FORMAT


class Sink:
    """The output file (in the working directory, the sandbox's workspace), written as UTF-8 bytes
    and hashed on the way: no second read, nothing held in memory but the current page."""

    def __init__(self, f):
        self.f, self.size, self.digest = f, 0, hashlib.sha256()

    def write(self, text):
        data = text.encode("utf-8")
        self.digest.update(data)
        self.size += len(data)
        self.f.write(data)


rows = 0
by_event = {}
with PostHogClient() as client, open(path, "wb") as f:
    clock = client.get_time_settings()
    sink = Sink(f)
    if FORMAT == "csv":
        import csv

        writer = csv.writer(sink)  # RFC 4180: CRLF line ends, quoting as needed
        writer.writerow(COLUMNS)  # properties stay a JSON text column
    # Keyset pages ordered by (timestamp, uuid), yielded as they arrive: memory stays flat.
    events = client.export_events(START, END, event_names=EVENT_NAMES or None, columns=COLUMNS,
                                  parse_properties=FORMAT == "jsonl")
    for event in events:
        rows += 1
        by_event[event["event"]] = by_event.get(event["event"], 0) + 1
        if FORMAT == "csv":
            writer.writerow([event[c] for c in COLUMNS])
        else:
            sink.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")

emit({
    "rows": rows,
    "by_event": dict(sorted(by_event.items())),
    "format": FORMAT,
    "file": path,
    "bytes": sink.size,
    "sha256": sink.digest.hexdigest(),
    "timezone": clock["timezone"],
    "week_start": clock["week_start"],
    "parameters": {"start": START, "end": END, "event_names": EVENT_NAMES, "format": FORMAT},
})
