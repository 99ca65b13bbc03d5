"""The Python locks cover the top-level pins (issue 18): every package pinned in a requirements
file appears in its lock at the same version, with hashes, so `make setup`, CI and `make install`
get the same packages. A pin changed without re-running tools/lock-python fails here."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAIRS = [(ROOT / "requirements-dev.txt", ROOT / "requirements-dev.lock"),
         (ROOT / "tools/posthog-local/requirements.txt", ROOT / "tools/posthog-local/requirements.lock")]


def _pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            pins.update(_pins(path.parent / line[3:].strip()))
        elif "==" in line:
            name, version = line.split("==", 1)
            pins[re.sub(r"[-_.]+", "-", name.split("[")[0].strip().lower())] = version.strip().rstrip("\\").strip()
    return pins


@pytest.mark.parametrize("source,lock", PAIRS, ids=lambda p: p.name)
def test_lock_holds_every_pin_with_hashes(source: Path, lock: Path) -> None:
    locked = _pins(lock)
    for name, version in _pins(source).items():
        assert locked.get(name) == version, f"{lock.name} has {name}=={locked.get(name)}, {source.name} pins {version}: run tools/lock-python"
    text = lock.read_text()
    entries = re.findall(r"^([A-Za-z0-9_.-]+)==\S+ \\\n((?:\s+--hash=sha256:[0-9a-f]{64}.*\n)+)", text, re.M)
    assert len(entries) == len(locked), "every locked package carries at least one sha256 hash"
