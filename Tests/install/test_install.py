"""An installed copy behaves like the checkout (issue 18): `make install` into a temporary prefix,
then `sandbox-runner run identify_churn_risk --demo` from an unrelated directory, with nothing of
the checkout in reach (no SANDBOX_RUNNER_HOME, no SANDBOX_RUNNER_PYTHON, no .venv on the way up).

On the code before the fix, the installed binary found no interpreter with duckdb and the run
ended with exit 69 "No module named 'duckdb'"."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "posthog-local"))

from posthog_local import truths  # noqa: E402
from posthog_local.dataset import load_dataset  # noqa: E402


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("POSTHOG_", "SANDBOX_RUNNER_", "VIRTUAL_ENV", "PYTHON"))}
    # No venv of the checkout on PATH: the installed copy must bring its own.
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    return env


@pytest.fixture(scope="module")
def prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("prefix")
    done = subprocess.run(["make", "-s", "install", f"PREFIX={target}", "INSTALL_CONFIG=debug"], cwd=ROOT,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    yield target
    shutil.rmtree(target, ignore_errors=True)


def test_installed_copy_runs_the_demo_from_anywhere(prefix: Path, tmp_path: Path) -> None:
    binary = prefix / "bin" / "sandbox-runner"
    assert (prefix / "share" / "sandbox-runner" / ".venv" / "bin" / "python").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([str(binary), "run", "identify_churn_risk", "--demo", "--json"], cwd=elsewhere,
                          capture_output=True, text=True, timeout=600, env=_clean_env())
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["success"] is True
    # The true answer of the demo dataset, computed by the generator, not by the template.
    data_dir = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sandbox-runner" / "posthog-local" / "seed-42"
    truth = truths.identify_churn_risk(load_dataset(data_dir))
    for key, value in truth.items():
        assert result["data"][key] == pytest.approx(value), key


def test_installed_copy_finds_its_own_files(prefix: Path, tmp_path: Path) -> None:
    done = subprocess.run([str(prefix / "bin" / "sandbox-runner"), "list", "--json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env=_clean_env())
    assert done.returncode == 0, done.stderr
    names = {t["name"] for t in json.loads(done.stdout)["templates"]}
    assert "identify_churn_risk" in names and len(names) == 14
