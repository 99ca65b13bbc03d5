"""GET /v1/runs/{id}/report (issue 16): the run as one self-contained HTML page, the template's
view as tables and inline SVG, the state while it runs, the Error document for an unknown run;
a hostile script's answer is escaped (parsed back as XML, nothing that loads or runs)."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterator

import pytest
import requests

from serve_support import AUTH, ROOT, start

sys.path.insert(0, str(ROOT / "Tests" / "report"))
from test_report_cli import ATTACK, check_self_contained  # noqa: E402

NS = "{http://www.w3.org/1999/xhtml}"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    proc, url = start("--demo", stderr=subprocess.DEVNULL)
    yield url
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def report(url: str, run_id: str) -> requests.Response:
    return requests.get(f"{url}/v1/runs/{run_id}/report", headers=AUTH, timeout=30)


def test_report_of_a_template_run(server: str) -> None:
    r = requests.post(f"{server}/v1/runs", headers=AUTH, json={"template": "retention_cohorts", "variables": {"weeks": 4}}, timeout=300)
    assert r.status_code == 200 and r.json()["success"], r.text
    run_id = r.json()["runId"]
    page = report(server, run_id)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    root = check_self_contained(page.text)
    text = "".join(root.itertext())
    assert "retention_cohorts" in text and "succeeded" in text and "Retention by weekly cohort" in text
    # The matrix as an SVG chart, and its counts as a table with a row per cohort.
    svgs = list(root.iter("{http://www.w3.org/2000/svg}svg"))
    assert [s.get("class") for s in svgs] == ["chart matrix"]
    tables = [t for t in root.iter(f"{NS}table") if t.get("class") == "data"]
    assert len(list(tables[0].iter(f"{NS}tbody"))[0]) == 4
    # The status document links to it.
    status = requests.get(f"{server}/v1/runs/{run_id}", headers=AUTH, timeout=10).json()
    assert status["links"]["report"] == f"/v1/runs/{run_id}/report"


def test_report_while_running_says_so(server: str) -> None:
    r = requests.post(f"{server}/v1/runs", headers=AUTH, json={"script": "import time\ntime.sleep(3)\nprint('{}')", "wait": False},
                      timeout=10)
    assert r.status_code == 202
    run_id = r.json()["runId"]
    page = report(server, run_id)
    assert page.status_code == 200
    root = ET.fromstring(page.text)
    assert any(s in "".join(root.itertext()) for s in ("queued", "running"))
    deadline = time.monotonic() + 60
    while requests.get(f"{server}/v1/runs/{run_id}", headers=AUTH, timeout=10).json()["state"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert "succeeded" in "".join(ET.fromstring(report(server, run_id).text).itertext())


def test_report_of_a_hostile_answer_is_escaped(server: str) -> None:
    r = requests.post(f"{server}/v1/runs", headers=AUTH, json={"script": ATTACK}, timeout=120)
    assert r.status_code == 200 and r.json()["success"], r.text
    page = report(server, r.json()["runId"])
    assert "\x1b" not in page.text and "\u202e" not in page.text
    root = check_self_contained(page.text)
    assert "<script>alert(1)</script>" in "".join(root.itertext())


def test_report_of_an_unknown_run_is_the_error_document(server: str) -> None:
    r = report(server, "no-such-run")
    assert r.status_code == 404
    assert r.json()["errorKind"] == "notFound"
    assert requests.get(f"{server}/v1/runs/x/report", timeout=10).status_code == 401
    assert requests.post(f"{server}/v1/runs/x/report", headers=AUTH, timeout=10).status_code == 405
