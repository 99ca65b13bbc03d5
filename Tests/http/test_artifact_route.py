"""A finished run's out/ files over HTTP (issue 14): GET /v1/runs/{id}/artifacts/{name} with the
run's auth, Content-Length, ETag = the sha256 the result lists, 304 on If-None-Match, nosniff and
attachment; nothing outside the run's files is reachable by name."""
from __future__ import annotations

import hashlib
import signal
import subprocess

import requests

from serve_support import AUTH, start

SCRIPT = """
import os
os.makedirs('out/sub', exist_ok=True)
open('out/report.html', 'w').write('<script>alert(1)</script>')
open('out/sub/data.csv', 'w').write('a,b\\r\\n1,2\\r\\n')
print('{"ok": 1}')
"""


def test_a_runs_files_are_served_as_the_result_lists_them() -> None:
    proc, url = start(stderr=subprocess.DEVNULL)
    try:
        run = requests.post(f"{url}/v1/runs", headers=AUTH, json={"script": SCRIPT}, timeout=120).json()
        assert run["success"], run
        listed = {a["name"]: a for a in run["artifacts"]}
        assert set(listed) == {"report.html", "sub/data.csv"}, listed
        for name, expected in (("report.html", b"<script>alert(1)</script>"), ("sub/data.csv", b"a,b\r\n1,2\r\n")):
            target = f"{url}/v1/runs/{run['runId']}/artifacts/{name}"
            r = requests.get(target, headers=AUTH, timeout=30)
            assert r.status_code == 200 and r.content == expected
            assert r.headers["Content-Length"] == str(len(expected)) == str(listed[name]["bytes"])
            digest = hashlib.sha256(expected).hexdigest()
            assert listed[name]["sha256"] == digest and digest in r.headers["ETag"]
            # A script's HTML must not render as the API's own page.
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert r.headers["Content-Disposition"].startswith("attachment")
            again = requests.get(target, headers={**AUTH, "If-None-Match": r.headers["ETag"]}, timeout=30)
            assert again.status_code == 304 and again.content == b""
            assert requests.get(target, timeout=30).status_code == 401
        for name in ("missing.txt", "..%2F..%2Fetc%2Fpasswd", "sub/..%2F..%2Frun.py", "%2Fetc%2Fpasswd"):
            r = requests.get(f"{url}/v1/runs/{run['runId']}/artifacts/{name}", headers=AUTH, timeout=30)
            assert r.status_code == 404, (name, r.status_code, r.text[:200])
        r = requests.get(f"{url}/v1/runs/00000000-0000-0000-0000-000000000000/artifacts/report.html", headers=AUTH, timeout=30)
        assert r.status_code == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
