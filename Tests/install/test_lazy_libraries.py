"""libcurl, libarchive, OpenSSL and libseccomp are loaded on first use, not at start (issue 17).

Each test hides one library the way a machine without it would look: inside a private mount
namespace the library file is covered by /dev/null, so the dynamic loader and dlopen both fail on
it. A command that does not need the library works; one that needs it fails with one sentence
naming the library and the package to install, exit 69 (the CLI's "the sandbox could not be
had"), never a crash.

On the code before the change every command, `--version` included, died in the dynamic loader
("error while loading shared libraries: …libcurl.so.4: file too short", exit 127): the binary
needed all of them at start.

A debug build links the Swift runtime dynamically, and its libFoundationNetworking.so (there for
the MCP SDK) needs libcurl and so OpenSSL at start: hiding those two is tested only on a binary
with the Swift runtime linked in (release, `make install`): SANDBOX_RUNNER_BIN=.build/release/….
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SANDBOX_RUNNER_BIN", str(ROOT / ".build/debug/sandbox-runner"))
LIBDIR = Path("/usr/lib") / subprocess.run(["gcc", "-print-multiarch"], capture_output=True, text=True).stdout.strip()


def hidden(library: str, argv: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs argv with `library` covered by /dev/null in a private mount namespace."""
    path = LIBDIR / library
    assert path.exists(), f"{path} is missing; the test hides an installed library"
    wrapper = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind /dev/null "$1" && shift && exec "$@"',
               'sh', str(path)]
    return subprocess.run(wrapper + argv, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ if env is None else env, SANDBOX_RUNNER_HOME=str(ROOT)))


def _needed(binary: str) -> list[str]:
    out = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True, check=True).stdout
    return [line.split("[", 1)[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]


STATIC_SWIFT = not any(n.startswith("libFoundation") for n in _needed(BIN))
HIDEABLE = ["libarchive.so.13", "libseccomp.so.2"] + (["libcurl.so.4", "libssl.so.3"] if STATIC_SWIFT else [])


@pytest.fixture(autouse=True)
def _root() -> None:
    assert os.geteuid() == 0, "these tests make mount namespaces; run them as root (make test does)"


def test_binary_needs_none_of_them_at_start() -> None:
    needed = _needed(BIN)
    assert needed and not [n for n in needed if n.startswith(("libcurl", "libarchive", "libssl", "libcrypto", "libseccomp"))], needed


@pytest.mark.parametrize("library", HIDEABLE)
def test_version_and_list_work_without_the_library(library: str, tmp_path: Path) -> None:
    r = hidden(library, [BIN, "--version"], tmp_path)
    assert r.returncode == 0 and r.stdout.strip(), r.stderr
    r = hidden(library, [BIN, "list", "--json"], tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout), r.stderr


def test_local_exec_needs_neither_libcurl_nor_libarchive(tmp_path: Path) -> None:
    script = tmp_path / "t.py"
    script.write_text("print('ok')\n")
    for library in (lib for lib in HIDEABLE if lib != "libseccomp.so.2"):
        r = hidden(library, [BIN, "exec", str(script), "--json"], tmp_path)
        doc = json.loads(r.stdout)
        assert r.returncode == 0 and doc["success"] and doc["output"] == "ok\n", (library, r.stderr, doc)


E2B_ENV = {"E2B_API_KEY": "e2b_" + "0" * 40, "E2B_DOMAIN": "e2b.invalid"}
# (library hidden, extra arguments of `exec`, environment, the package the error names)
NEEDS = [("libseccomp.so.2", [], {}, "libseccomp2")] + ([("libcurl.so.4", ["--backend", "e2b"], E2B_ENV, "libcurl4")] if STATIC_SWIFT else [])


@pytest.mark.parametrize("library,extra,env,package", NEEDS)
def test_a_run_that_needs_the_library_says_what_to_install(library: str, extra: list[str], env: dict, package: str,
                                                           tmp_path: Path) -> None:
    script = tmp_path / "t.py"
    script.write_text("print('ok')\n")
    r = hidden(library, [BIN, "exec", str(script), "--json", *extra], tmp_path, env=dict(os.environ, **env))
    doc = json.loads(r.stdout)
    assert r.returncode == 69 and not doc["success"], (r.stdout, r.stderr)
    assert f"could not load {library}" in doc["error"] and f"apt-get install {package}" in doc["error"], doc["error"]
