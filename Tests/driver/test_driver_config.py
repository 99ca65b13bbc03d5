"""Configuration (hosts, keys, project id) and the cost of importing the driver: no server needed."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from driver_support import SANDBOX, assert_no_key

import posthog_driver
from posthog_driver import ConfigurationError, PostHogClient
from posthog_driver.config import Settings


@pytest.mark.parametrize(("api_url", "expected_api", "expected_ingest"), [
    (None, "https://us.posthog.com", "https://us.i.posthog.com"),
    ("us", "https://us.posthog.com", "https://us.i.posthog.com"),
    ("EU", "https://eu.posthog.com", "https://eu.i.posthog.com"),
    ("https://eu.posthog.com/", "https://eu.posthog.com", "https://eu.i.posthog.com"),
    ("https://app.posthog.com", "https://app.posthog.com", "https://us.i.posthog.com"),
    ("https://us.i.posthog.com", "https://us.posthog.com", "https://us.i.posthog.com"),
    ("posthog.example.com", "https://posthog.example.com", "https://posthog.example.com"),
    ("https://example.com/posthog/", "https://example.com/posthog", "https://example.com/posthog"),
    ("http://127.0.0.1:8010", "http://127.0.0.1:8010", "http://127.0.0.1:8010"),
])
def test_hosts_and_derived_ingest_url(api_url: str | None, expected_api: str, expected_ingest: str) -> None:
    s = Settings.resolve(api_url=api_url, env={})
    assert (s.api_url, s.ingest_url) == (expected_api, expected_ingest)


def test_environment_is_read_and_arguments_win() -> None:
    env = {"POSTHOG_API_URL": "eu", "POSTHOG_PERSONAL_API_KEY": "phx_env_key_0123456789",
           "POSTHOG_PROJECT_API_KEY": "phc_env_key_0123456789", "POSTHOG_PROJECT_ID": "42",
           "POSTHOG_TIMEOUT": "7.5", "POSTHOG_INGEST_URL": "https://ingest.example.com"}
    s = Settings.resolve(env=env)
    assert (s.api_url, s.ingest_url, s.project_id, s.timeout) == (
        "https://eu.posthog.com", "https://ingest.example.com", "42", 7.5)
    assert s.personal_api_key == "phx_env_key_0123456789"
    s = Settings.resolve(api_url="us", project_id=3, personal_api_key="phx_arg_key_0123456789", env=env)
    assert (s.api_url, s.project_id, s.personal_api_key) == ("https://us.posthog.com", "3", "phx_arg_key_0123456789")
    assert Settings.resolve(env={}).project_id == "@current"


def test_repr_never_shows_keys() -> None:
    client = PostHogClient(api_url="http://127.0.0.1:1", personal_api_key="phx_secret_personal_0123456789",
                           project_api_key="phc_secret_project_0123456789", project_id=1)
    assert_no_key(repr(client), repr(client.settings),
                  keys=["phx_secret_personal_0123456789", "phc_secret_project_0123456789"])
    client.close()


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"api_url": "ftp://example.com"}, "POSTHOG_API_URL"),
    ({"api_url": "https://"}, "POSTHOG_API_URL"),
    ({"project_id": "phx_pasted_by_mistake_0123456789"}, "POSTHOG_PROJECT_ID"),
    ({"project_id": "12; DROP"}, "POSTHOG_PROJECT_ID"),
    ({"timeout": -1}, "POSTHOG_TIMEOUT"),
    ({"timeout": "soon"}, "POSTHOG_TIMEOUT"),
])
def test_bad_settings_are_refused_without_echoing_them(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.resolve(env={}, **kwargs)
    assert fragment in str(info.value)
    assert_no_key(str(info.value), keys=["phx_pasted_by_mistake_0123456789"])
    assert "DROP" not in str(info.value)


def _fresh_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], cwd=SANDBOX, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_importing_the_package_loads_no_heavy_module() -> None:
    out = _fresh_python("import sys, json as _j; before = set(sys.modules); import posthog_driver;"
                        "print(_j.dumps(sorted(set(sys.modules) - before)))")
    loaded = set(json.loads(out))
    heavy = {"http.client", "urllib.request", "urllib.parse", "ssl", "socket", "logging", "typing", "uuid",
             "random", "re", "datetime", "dataclasses", "email.utils"}
    assert not loaded & heavy, loaded & heavy
    assert loaded <= {"posthog_driver", "posthog_driver.errors", "__future__"}, loaded


def test_the_client_loads_http_machinery_only_on_first_request() -> None:
    out = _fresh_python("import sys; from posthog_driver import PostHogClient;"
                        "c = PostHogClient(api_url='http://127.0.0.1:1', project_id=1);"
                        "print(sorted(m for m in ('http.client', 'json', 'logging', 'ssl') if m in sys.modules))")
    assert out.strip() == "[]"


def test_emit_prints_one_json_document(capsys: pytest.CaptureFixture[str]) -> None:
    import datetime as dt
    import decimal

    posthog_driver.emit({"when": dt.datetime(2026, 10, 1, 12, 0), "day": dt.date(2026, 10, 1), "nan": float("nan"),
                         "amount": decimal.Decimal("1.5"), "tags": {"b", "a"}, "nested": [float("inf"), 1]})
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert json.loads(out) == {"when": "2026-10-01T12:00:00", "day": "2026-10-01", "nan": None, "amount": 1.5,
                               "tags": ["a", "b"], "nested": [None, 1]}


def test_rows_of_accepts_answers_and_rows() -> None:
    answer = {"columns": ["a", "b"], "results": [[1, 2], [3, 4]]}
    assert posthog_driver.rows_of(answer) == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    assert posthog_driver.rows_of([{"a": 1}]) == [{"a": 1}]
    from posthog_driver.client import QueryResult

    result = QueryResult(answer)
    assert posthog_driver.rows_of(result) is result.rows
    assert json.loads(json.dumps(result)) == answer  # still plain JSON: no rows duplicated in it
