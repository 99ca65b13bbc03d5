"""`serve`'s OpenAPI document: valid per openapi-spec-validator, and schemathesis with all checks
(bounded examples, fixed seed) finds nothing against `serve --demo`: every response documented and
matching its schema, schema-valid requests accepted, schema-violating ones rejected, 405 with Allow,
created runs reachable, deleted ones gone."""
from __future__ import annotations

import os
import signal
import subprocess

import requests
from openapi_spec_validator import validate

from serve_support import ROOT, TOKEN, start


def test_openapi_document_is_valid_and_complete():
    proc, url = start("--demo", stderr=subprocess.DEVNULL)
    try:
        doc = requests.get(f"{url}/openapi.json", timeout=10).json()
        validate(doc)
        for path, item in doc["paths"].items():
            for method, op in item.items():
                if method == "parameters":
                    continue
                codes = set(op["responses"])
                assert {"405", "500", "503"} <= codes, (method, path)
                if op["security"]:
                    assert "401" in codes, (method, path)
                for code, response in op["responses"].items():
                    if code.startswith(("4", "5")):
                        assert response["$ref"].startswith("#/components/responses/"), (method, path, code)
        for name, response in doc["components"]["responses"].items():
            assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}, name
        run = doc["components"]["schemas"]["RunRequest"]
        assert len(run["oneOf"]) == 15  # 14 templates + a script
        assert "errorKind" in doc["components"]["schemas"]["RunResult"]["properties"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_schemathesis_finds_nothing(tmp_path):
    proc, url = start("--demo", "--max-concurrent", "4", "--queue", "64", "--max-retained", "100000", stderr=subprocess.DEVNULL)
    try:
        # A run with a file in out/, so that the artifact route is tested on a file that exists
        # (schemathesis cannot make one: its runs' ids are not known before they run).
        run = requests.post(f"{url}/v1/runs", json={"script": "import os\nos.makedirs('out')\nopen('out/probe.txt','w').write('probe')\n"},
                            headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120).json()
        assert run["artifacts"][0]["name"] == "probe.txt", run
        config = tmp_path / "schemathesis.toml"
        config.write_text('[[operations]]\ninclude-name = "GET /v1/runs/{id}/artifacts/{name}"\n'
                          f'parameters = {{ "path.id" = "{run["runId"]}", "path.name" = "probe.txt" }}\n')
        st = ROOT / ".venv" / "bin" / "st"
        out = subprocess.run([str(st), "--config-file", str(config), "run", f"{url}/openapi.json", "--checks", "all",
                              "-H", f"Authorization: Bearer {TOKEN}",
                              "--max-examples", "10", "--seed", "1", "--no-shrink", "--request-timeout", "60",
                              "--output-truncate", "true"], capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stdout[-6000:]
        assert "No issues found" in out.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
