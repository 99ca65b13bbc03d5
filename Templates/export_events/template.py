"""export_events: a window of events streamed to a file, then summarised (Templates/SEMANTICS.md)."""
import csv
import hashlib
import json

from posthog_driver import PostHogClient, emit

START = {{ start }}
END = {{ end }}
EVENT_NAMES = {{ event_names }}
FORMAT = {{ format }}

if START >= END:
    raise SystemExit("sandbox-runner-error: start must be before end.")

path = "events." + FORMAT
columns = ["uuid", "event", "distinct_id", "timestamp", "properties"]
by_event = {}
rows = 0
digest = hashlib.sha256()


class Hashing:
    """A text file that hashes what it writes (no second read of the file)."""

    def __init__(self, f):
        self.f = f

    def write(self, s):
        digest.update(s.encode())
        return self.f.write(s)


with PostHogClient() as client, open(path, "w", encoding="utf-8", newline="") as raw:
    out = Hashing(raw)
    writer = csv.writer(out) if FORMAT == "csv" else None
    if writer:
        writer.writerow(columns)
    # Keyset pages, yielded as they come: memory stays flat however many events there are.
    for event in client.export_events(START, END, event_names=EVENT_NAMES or None):
        rows += 1
        by_event[event["event"]] = by_event.get(event["event"], 0) + 1
        if writer:
            writer.writerow([event.get(c) if not isinstance(event.get(c), (dict, list)) else json.dumps(event.get(c)) for c in columns])
        else:
            out.write(json.dumps({c: event.get(c) for c in columns}, default=str, ensure_ascii=False) + "\n")
    size = raw.tell()

emit({
    "rows": rows,
    "by_event": dict(sorted(by_event.items())),
    "format": FORMAT,
    "file": path,
    "bytes": size,
    "sha256": digest.hexdigest(),
    "parameters": {"start": START, "end": END, "event_names": EVENT_NAMES, "format": FORMAT},
})
