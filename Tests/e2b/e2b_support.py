"""The e2b-local process under test and its /_local control routes."""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.request
from dataclasses import dataclass
from typing import Any, Optional


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]
    ca: Optional[str] = None

    def local(self, method: str, path: str, body: Any = None) -> Any:
        """Calls the server's /_local control routes (faults, stats)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        context = ssl.create_default_context(cafile=self.ca) if self.ca else None
        with urllib.request.urlopen(req, timeout=10, context=context) as r:
            return json.loads(r.read() or b"null")

    def stats(self) -> dict[str, Any]:
        return self.local("GET", "/_local/stats")
