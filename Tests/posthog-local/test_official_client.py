"""The official `posthog` PyPI client, unchanged, against posthog-local."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from phl_support import PROJECT_KEY, Server
from posthog import Posthog


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_official_client_batch_is_visible_to_hogql(server: Server) -> None:
    client = Posthog(PROJECT_KEY, host=server.url, sync_mode=True, disable_geoip=True)
    marker = f"run-{uuid.uuid4().hex[:8]}"
    when = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.timezone.utc)
    try:
        for i in range(3):
            client.capture("test_official_client", distinct_id=f"sdk-{i}",
                           properties={"marker": marker, "i": i}, timestamp=when)
        client.flush()
        variant = client.get_feature_flag("new-onboarding", "user-00001", send_feature_flag_events=False)
    finally:
        client.shutdown()
    response = server.query("SELECT distinct_id, properties.i, timestamp FROM events "
                            "WHERE event = 'test_official_client' AND properties.marker = {m} ORDER BY distinct_id",
                            {"m": marker})
    rows = response.json()["results"]
    assert rows == [[f"sdk-{i}", str(i), "2026-11-02T12:00:00.000000Z"] for i in range(3)]
    flags = server.session.post(f"{server.url}/flags?v=2", timeout=10,
                                json={"api_key": PROJECT_KEY, "distinct_id": "user-00001"}).json()
    assert variant == flags["flags"]["new-onboarding"]["variant"]
