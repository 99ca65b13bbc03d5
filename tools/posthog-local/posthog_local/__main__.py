"""`python -m posthog_local` (with tools/posthog-local on sys.path) runs the CLI."""

from .cli import main

raise SystemExit(main())
