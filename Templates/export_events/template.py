"""export_events: a window of events streamed to a file, then summarised (Templates/SEMANTICS.md)."""
import hashlib
import json

from posthog_driver import PostHogClient, emit

START = {{ start }}
END = {{ end }}
EVENT_NAMES = {{ event_names }}
FORMAT = {{ format }}
GZIP = {{ gzip }}
COLUMNS = ["uuid", "event", "distinct_id", "timestamp", "properties"]


def instant(text):
    """A rendered datetime variable (UTC, `…Z`, whole seconds or microseconds) as an aware datetime."""
    import datetime

    return datetime.datetime.fromisoformat(text[:-1] + "+00:00")


if instant(START) >= instant(END):  # compared as instants: fractions of a second count
    raise SystemExit("sandbox-runner-error: start must be before end.")

# Files under out/ come back to the operator as the run's artifacts.
artifact = "events." + FORMAT + (".gz" if GZIP else "")
path = "out/" + artifact


class Hashed:
    """The file's bytes as they go to disk (compressed, with gzip), hashed and counted on the way:
    no second read, nothing held in memory but the current page."""

    def __init__(self, f):
        self.f, self.size, self.digest = f, 0, hashlib.sha256()

    def write(self, data):
        self.digest.update(data)
        self.size += len(data)
        return self.f.write(data)

    def flush(self):
        self.f.flush()


class Sink:
    """Text in, UTF-8 (gzip-compressed when asked; mtime 0, so the same rows give the same bytes) out."""

    def __init__(self, hashed):
        self.hashed = hashed
        self.out = hashed
        if GZIP:
            import gzip

            self.out = gzip.GzipFile(filename="", mode="wb", fileobj=hashed, mtime=0)

    def write(self, text):
        self.out.write(text.encode("utf-8"))

    def close(self):
        if self.out is not self.hashed:
            self.out.close()


import os  # noqa: E402

os.makedirs("out", exist_ok=True)
rows = 0
by_event = {}
with PostHogClient() as client, open(path, "wb") as f:
    clock = client.get_time_settings()
    hashed = Hashed(f)
    sink = Sink(hashed)
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
    sink.close()

emit({
    "rows": rows,
    "by_event": dict(sorted(by_event.items())),
    "format": FORMAT,
    "gzip": GZIP,
    "artifact": artifact,
    "file": path,
    "bytes": hashed.size,
    "sha256": hashed.digest.hexdigest(),
    "timezone": clock["timezone"],
    "week_start": clock["week_start"],
    "parameters": {"start": START, "end": END, "event_names": EVENT_NAMES, "format": FORMAT, "gzip": GZIP},
})
