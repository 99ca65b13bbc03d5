#!/usr/bin/env python3
"""posthog-local entry point: `python tools/posthog-local/server.py --help` (see README.md)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from posthog_local.cli import main  # noqa: E402 - the path above makes the package importable

if __name__ == "__main__":
    raise SystemExit(main())
