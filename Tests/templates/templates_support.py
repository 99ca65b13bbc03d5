"""What the template tests share: the binary, the demo projects, the demo dataset's directory, and
posthog-locals of our own (started by the fixtures in conftest.py). A module of its own, not
conftest.py, so that test files import it by a name no other test directory uses."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "Tests"))

from posthog_local_client import BINARY, PROJECTS, PostHogLocal, demo_data_dir  # noqa: E402,F401
from posthog_local_client import serve as serve_posthog_local  # noqa: E402

from posthog_local.dataset import Dataset  # noqa: E402  (on the path that posthog_local_client set)


class Server(PostHogLocal):
    """A posthog-local we started: its URL, the environment that points a run at one of its
    projects, its stats."""

    def reset_stats(self) -> None:
        self.request("DELETE", "/_local/stats", auth=False)

    def stats(self) -> dict[str, Any]:
        return self.request("GET", "/_local/stats", auth=False)

    def list_all(self, path: str) -> list[Any]:
        """Every item of a paginated list endpoint (following `next`)."""
        out: list[Any] = []
        page = self.request("GET", path + ("&" if "?" in path else "?") + "limit=1000")
        while True:
            out.extend(page["results"])
            if not page.get("next"):
                return out
            page = self.request("GET", page["next"][len(self.url):])


def _serve(dataset: Dataset, data_dir: Path | None = None) -> Iterator[Server]:
    # Without PostHog's query budget: these tests make more than 120 queries an hour on purpose
    # (the limits have tests of their own in Tests/posthog-local and Tests/driver).
    yield from serve_posthog_local("--no-limits", data_dir=data_dir, make=Server)  # type: ignore[misc]
