"""The CLI's human output (issue 16) through the real binary and the real jail: the report on a
terminal (a pseudo-terminal) with colour and live progress, none of it in a pipe, with --json or
with NO_COLOR; --format csv read back by a CSV parser; --report's HTML parsed as XML, holding an
SVG per chart and nothing that loads from elsewhere, with a hostile script's values escaped."""
from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from report_support import BINARY, clean_env, run_in_pty

SGR = re.compile(rb"\x1b\[[0-9;]*m")

# A slow script that reports progress through the driver, then answers.
PROGRESS_SCRIPT = """
import time
import posthog_driver
for i in range(1, 6):
    posthog_driver.progress("crunching", rows=i * 1000)
    time.sleep(0.4)
posthog_driver.emit({"done": True, "rows": 5000, "items": [{"name": "a", "n": 1}, {"name": "b", "n": 2}]})
"""


@pytest.fixture()
def progress_script(tmp_path: Path) -> Path:
    p = tmp_path / "slow.py"
    p.write_text(PROGRESS_SCRIPT)
    return p


def test_terminal_gets_the_report_colour_and_progress(progress_script: Path, tmp_path: Path) -> None:
    status, out = run_in_pty(["exec", str(progress_script)], clean_env(), tmp_path)
    assert status == 0, out.decode(errors="replace")
    text = out.decode()
    # Progress: one updating line (carriage return, erase line) with what the driver reported.
    assert "\r\x1b[2K" in text
    assert "crunching" in text and re.search(r"[1-5],000 rows", text), text
    # The report, in colour: the green mark, the headline, the table.
    assert "\x1b[32m✓" in text
    plain = SGR.sub(b"", out).decode()
    assert "ad hoc script succeeded" in plain
    assert re.search(r"rows\s+5,000", plain), plain
    assert "items" in plain and re.search(r"1\s+a", plain)
    # No JSON document on a terminal.
    assert '"success"' not in plain


def test_no_color_removes_colour_but_keeps_progress(progress_script: Path, tmp_path: Path) -> None:
    status, out = run_in_pty(["exec", str(progress_script)], clean_env(NO_COLOR="1"), tmp_path)
    assert status == 0, out.decode(errors="replace")
    assert not SGR.search(out), out
    assert b"\r\x1b[2K" in out and b"crunching" in out
    assert "✓ ad hoc script succeeded".encode() in out


def test_json_on_a_terminal_has_no_progress(progress_script: Path, tmp_path: Path) -> None:
    status, out = run_in_pty(["exec", str(progress_script), "--json"], clean_env(), tmp_path)
    assert status == 0
    assert b"\x1b" not in out and b"crunching" not in out
    doc = json.loads(out.decode().strip())
    # The driver was not asked for progress: nothing of it in the result document either.
    assert "sandbox-runner-progress" not in doc["stderr"]
    assert doc["data"]["rows"] == 5000


def test_a_pipe_gets_the_json_document_and_no_progress(progress_script: Path, tmp_path: Path) -> None:
    done = subprocess.run([BINARY, "exec", str(progress_script)], capture_output=True, env=clean_env(), cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert b"\x1b" not in done.stdout + done.stderr
    assert b"crunching" not in done.stderr
    doc = json.loads(done.stdout)
    assert doc["success"] is True and "sandbox-runner-progress" not in doc["stderr"]


def test_format_table_in_a_pipe_is_plain_text(progress_script: Path, tmp_path: Path) -> None:
    done = subprocess.run([BINARY, "exec", str(progress_script), "--format", "table"], capture_output=True, env=clean_env(COLUMNS="60"),
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert b"\x1b" not in done.stdout + done.stderr
    lines = done.stdout.decode().splitlines()
    assert lines[0].startswith("✓ ad hoc script succeeded")
    assert all(len(line) <= 60 for line in lines), lines


def test_json_and_another_format_are_refused(tmp_path: Path, progress_script: Path) -> None:
    done = subprocess.run([BINARY, "exec", str(progress_script), "--json", "--format", "csv"], capture_output=True, text=True,
                          env=clean_env(), cwd=tmp_path, timeout=60)
    assert done.returncode == 64
    assert "--json" in done.stderr and "--format csv" in done.stderr


ROWS = [
    {"name": "plain", "note": "simple", "n": 1},
    {"name": "comma, here", "note": 'a "quoted" word', "n": 2},
    {"name": "two\nlines", "note": "crlf\r\nend", "n": -3},
    {"name": "ünïcödé 日本", "note": "", "n": 4},
]


def test_csv_round_trips_through_a_csv_parser(tmp_path: Path) -> None:
    script = tmp_path / "rows.py"
    script.write_text("import json\nprint(json.dumps({'total': 4, 'rows': %s}))\n" % json.dumps(ROWS))
    done = subprocess.run([BINARY, "exec", str(script), "--format", "csv"], capture_output=True, env=clean_env(), cwd=tmp_path,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(b"\r\n") >= len(ROWS) + 1  # RFC 4180 line ends
    rows = list(csv.reader(io.StringIO(done.stdout.decode(), newline="")))
    assert rows[0] == ["n", "name", "note"]
    # Exact, but for control characters: a carriage return (which could hide a line on a terminal)
    # comes back escaped like everything a script produced; newlines stay (quoted, as RFC 4180 allows).
    assert rows[1:] == [[str(r["n"]), r["name"], r["note"].replace("\r", "\\u{D}")] for r in ROWS]


def test_csv_of_a_template_is_its_main_table(tmp_path: Path) -> None:
    done = subprocess.run([BINARY, "run", "top_events", "--demo", "--format", "csv"], capture_output=True, text=True,
                          env=clean_env(), cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = list(csv.reader(io.StringIO(done.stdout, newline="")))
    assert rows[0] == ["Event", "Events", "Users"]
    assert len(rows) > 3 and all(int(r[1]) >= int(r[2]) > 0 for r in rows[1:])


# A script whose answer is an attack on the HTML report: markup, a script element, an image from
# the network, entity and attribute breakouts, terminal escapes, a bidi override.
ATTACK = r'''
import json
evil = '<script>alert(1)</script> & "dq" \'sq\' <img src="http://evil.example/x.png"> \x1b[2J \u202egnp.exe ]]> <!--'
print(json.dumps({"title": evil, "count": 3, "rows": [
    {"name": evil, "n": 1},
    {"name": '"><a href="http://evil.example/">x</a><style>*{background:url(http://evil.example/)}</style>', "n": 2},
    {evil: "as a key", "n": 3},
]}))
'''


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))


def check_self_contained(page: str) -> ET.Element:
    """The page parses as XML; as HTML it has no script, nothing with a src, links only to its own anchors."""
    root = ET.fromstring(page)
    ns = "{http://www.w3.org/1999/xhtml}"
    assert root.tag == f"{ns}html"
    parser = Tags()
    parser.feed(page)
    for tag, attrs in parser.tags:
        assert tag not in ("script", "iframe", "img", "object", "embed", "link", "base", "form"), tag
        assert "src" not in attrs, (tag, attrs)
        for key in ("href", "xlink:href", "action", "background"):
            assert attrs.get(key) is None or attrs[key].startswith("#"), (tag, attrs)
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
    assert "url(" not in "".join(e.text or "" for e in root.iter(f"{ns}style"))
    csp = [a for t, a in parser.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and csp[0]["content"].startswith("default-src 'none'")
    return root


def test_html_report_escapes_a_hostile_answer(tmp_path: Path) -> None:
    script = tmp_path / "attack.py"
    script.write_text(ATTACK)
    report = tmp_path / "attack.html"
    done = subprocess.run([BINARY, "exec", str(script), "--report", str(report)], capture_output=True, env=clean_env(), cwd=tmp_path,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    page = report.read_text()
    assert "\x1b" not in page and "\u202e" not in page
    root = check_self_contained(page)
    text = "".join(root.itertext())
    # The values are there, as text.
    assert "<script>alert(1)</script>" in text and '<img src="http://evil.example/x.png">' in text
    assert '"><a href="http://evil.example/">x</a>' in text
    assert "\\u{1B}[2J" in text and "\\u{202E}gnp.exe" in text
    # stdout (a pipe) is still the result document.
    assert json.loads(done.stdout)["data"]["count"] == 3


def test_smoke_report_is_one_page_with_every_template(tmp_path: Path) -> None:
    report = tmp_path / "smoke.html"
    done = subprocess.run([BINARY, "smoke", "--demo", "--jobs", "2", "--report", str(report)], capture_output=True, text=True,
                          env=clean_env(), cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    page = report.read_text()
    root = check_self_contained(page)
    ns = "{http://www.w3.org/1999/xhtml}"
    sections = [s for s in root.iter(f"{ns}section") if "run" in (s.get("class") or "")]
    assert len(sections) == 14
    assert "14 passed, 0 failed" in "".join(root.find(f"{ns}body").find(f"{ns}h1").itertext())
    # One chart per chart block: retention's matrix, the funnel, the trend's series.
    svgs = [e for e in root.iter("{http://www.w3.org/2000/svg}svg")]
    classes = sorted(s.get("class") for s in svgs)
    assert classes == ["chart funnel", "chart matrix", "chart series"], classes
    # The summary links to each template's section.
    anchors = {a.get("href") for a in root.iter(f"{ns}a")}
    assert anchors == {f"#run-{i}" for i in range(14)}


def test_show_prints_a_command_that_runs(tmp_path: Path) -> None:
    shown = subprocess.run([BINARY, "show", "retention_cohorts"], capture_output=True, text=True, env=clean_env(), cwd=tmp_path,
                           timeout=60)
    assert shown.returncode == 0
    lines = shown.stdout.splitlines()
    command = lines[lines.index("Example:") + 1].strip()
    assert command.startswith("sandbox-runner run retention_cohorts --var ")
    # Copied into a shell as it is (with --demo and --json added), it runs.
    done = subprocess.run(command.replace("sandbox-runner", BINARY, 1) + " --demo --json", shell=True, capture_output=True, text=True,
                          env=clean_env(), cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["variables"]["return_event"] == "$pageview"


def test_smoke_lines_escape_a_scripts_error_sentence(tmp_path: Path) -> None:
    """The attack: a template's script ends with its own `sandbox-runner-error:` line (the sentence
    the runner shows as the error) carrying terminal escapes: a window title, clear screen, the
    one-byte CSI. smoke's per-template line and summary show it escaped. Before issue 16 both
    printed it raw."""
    evil = tmp_path / "templates" / "evil_error"
    evil.mkdir(parents=True)
    (evil / "manifest.json").write_text(json.dumps({
        "name": "evil_error", "description": "Fails with escapes in its error sentence.", "needsPostHog": False,
        "variables": [], "example": {}, "output": {"type": "object"}}))
    (evil / "template.py").write_text(
        "import sys\nsys.stderr.write('sandbox-runner-error: \\x1b]0;pwned\\x07\\x1b[2J\\u009b31m gone\\n')\nsys.exit(1)\n")
    done = subprocess.run([BINARY, "smoke", "--templates-dir", str(tmp_path / "templates"), "--only", "evil_error"],
                          capture_output=True, env=clean_env(), cwd=tmp_path, timeout=120)
    assert done.returncode == 1
    out = done.stdout + done.stderr
    assert b"gone" in done.stdout and b"gone" in done.stderr
    for raw in (b"\x1b", b"\x07", "\u009b".encode()):
        assert raw not in out, raw
    assert b"\\u{1B}]0;pwned" in done.stdout
