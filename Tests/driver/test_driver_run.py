"""sandbox/run.py: runs template.py in a bundle-like directory; exit codes and the one-line error."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from driver_support import SANDBOX, assert_no_key
from phl_support import PERSONAL_KEY, PROJECT_ID, PROJECT_KEY, Server

MARKER = "sandbox-runner-error: "


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copy(SANDBOX / "run.py", tmp_path / "run.py")
    shutil.copytree(SANDBOX / "posthog_driver", tmp_path / "posthog_driver",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "run.json").write_text(json.dumps({"runId": "test", "template": None, "variables": {}}))
    return tmp_path


def run(workdir: Path, script: str, server: Server | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    (workdir / "template.py").write_text(textwrap.dedent(script))
    full_env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "PYTHONDONTWRITEBYTECODE": "1",
                "POSTHOG_PERSONAL_API_KEY": PERSONAL_KEY, "POSTHOG_PROJECT_API_KEY": PROJECT_KEY,
                "POSTHOG_PROJECT_ID": str(PROJECT_ID)}
    if server is not None:
        full_env["POSTHOG_API_URL"] = server.url
    full_env.update(env)
    # the sandbox's python3, not the test venv: the driver must need nothing but the stdlib
    return subprocess.run(["/usr/bin/python3", "run.py"], cwd=workdir, capture_output=True, text=True,
                          timeout=60, env=full_env)


def test_success_prints_one_json_document(workdir: Path, local: Server) -> None:
    result = run(workdir, """
        from posthog_driver import PostHogClient, emit, rows_of
        with PostHogClient() as client:
            rows = rows_of(client.query("SELECT count() AS n FROM events WHERE event = {e}", values={"e": "signed_up"}))
        emit({"signups": rows[0]["n"]})
    """, local)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"signups": 1090}
    assert result.stderr == ""


def test_a_posthog_error_is_one_line_without_traceback(workdir: Path, local: Server) -> None:
    result = run(workdir, """
        from posthog_driver import PostHogClient
        PostHogClient().query("SELECT 1")
    """, local, POSTHOG_PERSONAL_API_KEY="phx_wrong_key_0123456789abcdef")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(MARKER + "PostHog rejected the personal API key")
    assert "Traceback" not in result.stderr
    assert_no_key(result.stderr, result.stdout, keys=["phx_wrong_key_0123456789abcdef", PERSONAL_KEY])


def test_a_query_error_carries_posthog_detail(workdir: Path, local: Server) -> None:
    result = run(workdir, """
        from posthog_driver import PostHogClient
        PostHogClient().query("SELECT nope FROM no_such_table")
    """, local)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(MARKER + "PostHog rejected the HogQL query:")
    assert "no_such_table" in result.stderr


def test_other_exceptions_print_the_traceback_then_the_line(workdir: Path) -> None:
    result = run(workdir, """
        def inner():
            raise KeyError("missing_column")
        inner()
    """)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "inner()" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == MARKER + "The script failed: KeyError: 'missing_column'."


def test_an_exception_message_never_shows_a_key(workdir: Path) -> None:
    result = run(workdir, """
        import os
        raise RuntimeError("key is " + os.environ["POSTHOG_PERSONAL_API_KEY"])
    """)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == MARKER + "The script failed: RuntimeError: key is [REDACTED]."


@pytest.mark.parametrize(("script", "code", "stderr_end"), [
    ("raise SystemExit(3)", 3, ""),
    ("import sys; sys.exit(0)", 0, ""),
    ("raise SystemExit('sandbox-runner-error: lookback_days must be greater than inactive_days.')", 1,
     MARKER + "lookback_days must be greater than inactive_days."),
])
def test_system_exit_passes_through(workdir: Path, script: str, code: int, stderr_end: str) -> None:
    result = run(workdir, script)
    assert result.returncode == code
    assert result.stderr.strip().endswith(stderr_end)
    assert "Traceback" not in result.stderr


def test_run_py_imports_nothing_the_script_does_not(workdir: Path) -> None:
    result = run(workdir, """
        import sys
        print(sorted(m for m in ("posthog_driver", "logging", "json", "runpy", "traceback") if m in sys.modules))
        print(__name__, __file__, sys.argv[0])
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[]", "__main__ template.py template.py"]


def test_log_level_sends_driver_records_to_stderr_without_keys(workdir: Path, local: Server) -> None:
    script = """
        from posthog_driver import PostHogClient
        with PostHogClient() as c:
            c.get_project_info()
    """
    quiet = run(workdir, script, local)
    assert quiet.returncode == 0 and quiet.stderr == ""
    loud = run(workdir, script, local, POSTHOG_LOG_LEVEL="DEBUG")
    assert loud.returncode == 0
    assert f"posthog_driver DEBUG GET /api/projects/{PROJECT_ID}/ -> 200" in loud.stderr
    assert_no_key(loud.stderr)


def test_retry_warnings_reach_stderr_by_default(workdir: Path, local: Server) -> None:
    local.session.post(f"{local.url}/_local/faults", json=[{"kind": "503", "count": 1, "path": "/api/"}], timeout=5)
    result = run(workdir, """
        from posthog_driver import PostHogClient
        with PostHogClient(backoff_base=0.01) as c:
            c.get_project_info()
    """, local)
    assert result.returncode == 0, result.stderr
    assert "posthog_driver WARNING" in result.stderr and "HTTP 503; retrying" in result.stderr
    assert_no_key(result.stderr)


def test_the_driver_needs_only_the_standard_library(workdir: Path) -> None:
    """Every import in posthog_driver is stdlib or the package itself."""
    result = run(workdir, """
        import ast, pathlib, sys
        bad = []
        for path in pathlib.Path("posthog_driver").glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \\
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
                bad += [f"{path.name}: {n}" for n in names if n.split(".")[0] not in sys.stdlib_module_names]
        print(bad)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_environment_shortcuts_reach_the_client(workdir: Path) -> None:
    result = run(workdir, """
        from posthog_driver import PostHogClient
        c = PostHogClient()
        print(c.settings.api_url, c.settings.ingest_url, c.settings.project_id, c.settings.timeout)
    """, POSTHOG_API_URL="eu", POSTHOG_TIMEOUT="12")
    assert result.stdout.split() == ["https://eu.posthog.com", "https://eu.i.posthog.com", str(PROJECT_ID), "12.0"]
    assert os.environ.get("POSTHOG_API_URL") != "eu"  # the test process was not touched
