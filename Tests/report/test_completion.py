"""Shell completion from swift-argument-parser: the scripts are generated for bash, zsh and fish,
and completing in bash (the generated script sourced in a real bash, its completion function
called as bash calls it) offers the templates' names after `run`/`show` and a template's
variables after `--var`, the operator's own templates too."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from report_support import BINARY, ROOT, clean_env


def script(shell: str) -> str:
    done = subprocess.run([BINARY, "--generate-completion-script", shell], capture_output=True, text=True, env=clean_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_scripts_are_generated_and_call_back_for_templates(shell: str) -> None:
    text = script(shell)
    for word in ("run", "show", "smoke", "format", "report", "var", "templates-dir"):
        assert word in text, (shell, word)
    # Template names and variables are completed by calling the binary back (custom completion).
    assert "---completion" in text


def complete(words: list[str], tmp_path: Path, cwd: Path | None = None) -> list[str]:
    """COMPREPLY of the generated bash completion for the command line `words` (the last one is
    the word being completed)."""
    completion = tmp_path / "completion.bash"
    completion.write_text(script("bash"))
    function = re.search(r"complete .*-F (\S+) sandbox-runner", completion.read_text()).group(1)
    line = " ".join(words)
    words_literal = " ".join("'" + w.replace("'", "'\\''") + "'" for w in [BINARY, *words[1:]])
    program = f"""
source {completion}
COMP_WORDS=({words_literal})
COMP_CWORD={len(words) - 1}
COMP_LINE='{line}'
COMP_POINT={len(line)}
COMP_TYPE=9
{function} sandbox-runner '{words[-1]}' '{words[-2]}'
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, env=clean_env(), timeout=60, cwd=cwd or tmp_path)
    assert done.returncode == 0, done.stderr
    return [w.strip() for w in done.stdout.splitlines() if w.strip()]


def test_bash_completes_template_names(tmp_path: Path) -> None:
    got = complete(["sandbox-runner", "run", "top"], tmp_path)
    assert "top_events" in got and "find_power_users" not in got
    got = complete(["sandbox-runner", "show", ""], tmp_path)
    assert {"retention_cohorts", "conversion_funnel", "export_events"} <= set(got) and len(got) == 14


def test_bash_completes_a_templates_variables(tmp_path: Path) -> None:
    got = complete(["sandbox-runner", "run", "retention_cohorts", "--var", ""], tmp_path)
    assert set(got) == {"start_event=", "return_event=", "weeks=", "recurring="}
    got = complete(["sandbox-runner", "run", "retention_cohorts", "--var", "recurring="], tmp_path)
    assert set(got) == {"recurring=true", "recurring=false"}
    got = complete(["sandbox-runner", "run", "engagement_trend", "--demo", "--var", "interval="], tmp_path)
    assert set(got) == {"interval=day", "interval=week"}


def test_bash_completes_the_operators_own_templates(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    shutil.copytree(ROOT / "Tests" / "SandboxRunnerTests" / "Fixtures" / "templates" / "echo_vars", mine / "echo_vars")
    got = complete(["sandbox-runner", "run", "--templates-dir", str(mine), "ech"], tmp_path)
    assert got == ["echo_vars"]
