"""The e2b-local process under test and its /_local control routes."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]

    def local(self, method: str, path: str, body: Any = None) -> Any:
        """Calls the server's /_local control routes (faults, stats)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"null")

    def stats(self) -> dict[str, Any]:
        return self.local("GET", "/_local/stats")
