"""Fills the workspace and /tmp with many small files (each takes a 4 KiB block) until refused,
stopping by itself a little past the caps the jail should enforce."""
import json
import os


def fill(directory, stop_bytes):
    os.makedirs(directory, exist_ok=True)
    n, err = 0, None
    try:
        while n * 4096 < stop_bytes:
            with open(os.path.join(directory, str(n)), "wb") as f:
                f.write(b"x")
            n += 1
    except OSError as e:
        err = e.errno
    return {"bytes": n * 4096, "errno": err}


print(json.dumps({"workspace": fill("fill", 300 << 20), "tmp": fill("/tmp/fill", 80 << 20)}))
