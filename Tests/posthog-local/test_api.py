"""Private API: startup banner, auth rules, error shapes, list endpoints, cohorts, flags admin."""

from __future__ import annotations

import pytest
from phl_support import PERSONAL_KEY, PROJECT_ID, PROJECT_KEY, READONLY_KEY, Server


def test_banner_shows_url_project_and_masked_keys(server: Server) -> None:
    assert server.banner[0].startswith("posthog-local listening on http://127.0.0.1:")
    assert not server.banner[0].endswith(":0")
    text = "\n".join(server.banner)
    assert f"project id: {PROJECT_ID}" in text
    assert "phx_test…" in text and "phc_test…" in text
    for key in (PERSONAL_KEY, PROJECT_KEY, READONLY_KEY):
        assert key not in text


def error_of(response) -> dict:
    body = response.json()
    assert set(body) >= {"type", "code", "detail", "attr"}, body
    return body


@pytest.mark.parametrize("headers,code", [
    ({}, "not_authenticated"),
    ({"Authorization": "Bearer phx_wrong"}, "authentication_failed"),
    ({"Authorization": f"Bearer {PROJECT_KEY}"}, "authentication_failed"),
])
def test_missing_or_wrong_key_is_401(server: Server, headers: dict, code: str) -> None:
    response = server.session.get(f"{server.project}/cohorts/", headers=headers, timeout=10)
    assert response.status_code == 401
    body = error_of(response)
    assert body["type"] == "authentication_error" and body["code"] == code


def test_wrong_project_is_403_and_current_alias_works(server: Server) -> None:
    wrong = server.session.get(f"{server.url}/api/projects/{PROJECT_ID + 50}/cohorts/",
                               headers=server.auth(), timeout=10)
    assert wrong.status_code == 403 and error_of(wrong)["code"] == "permission_denied"
    for prefix in ("projects/@current", f"environments/{PROJECT_ID}", "environments/@current"):
        ok = server.session.get(f"{server.url}/api/{prefix}/cohorts/", headers=server.auth(), timeout=10)
        assert ok.status_code == 200, prefix


def test_personal_key_in_query_string_or_body(server: Server) -> None:
    ok = server.session.get(f"{server.project}/insights/?personal_api_key={PERSONAL_KEY}", timeout=10)
    assert ok.status_code == 200
    body = {"personal_api_key": PERSONAL_KEY,
            "query": {"kind": "HogQLQuery", "query": "SELECT 1"}}
    assert server.session.post(f"{server.project}/query/", json=body, timeout=10).status_code == 200
    # the page links never repeat the key
    assert PERSONAL_KEY not in ok.text


def test_readonly_key_reads_but_cannot_write(server: Server) -> None:
    ro = server.auth(READONLY_KEY)
    assert server.session.get(f"{server.project}/cohorts/", headers=ro, timeout=10).status_code == 200
    assert server.query("SELECT count() FROM events", key=READONLY_KEY).status_code == 200
    denied = server.session.post(f"{server.project}/cohorts/", json={"name": "x"}, headers=ro, timeout=10)
    assert denied.status_code == 403
    body = error_of(denied)
    assert body["code"] == "permission_denied" and "cohort:write" in body["detail"]
    flag = server.session.post(f"{server.project}/feature_flags/", json={"key": "ro"}, headers=ro, timeout=10)
    assert flag.status_code == 403 and "feature_flag:write" in flag.json()["detail"]


def test_unknown_route_is_404_shape(server: Server) -> None:
    response = server.session.get(f"{server.project}/nope/", headers=server.auth(), timeout=10)
    assert response.status_code == 404
    assert error_of(response) == {"type": "invalid_request", "code": "not_found",
                                  "detail": "Not found.", "attr": None}


def test_project_info(server: Server) -> None:
    info = server.session.get(f"{server.project}/", headers=server.auth(), timeout=10).json()
    assert info["id"] == PROJECT_ID and info["timezone"] == "UTC"


def test_list_shape_and_pagination(server: Server) -> None:
    first = server.session.get(f"{server.project}/event_definitions/?limit=3", headers=server.auth(),
                               timeout=10).json()
    assert set(first) == {"count", "next", "previous", "results"}
    assert len(first["results"]) == 3 and first["count"] > 3 and first["previous"] is None
    second = server.session.get(first["next"], headers=server.auth(), timeout=10).json()
    assert second["previous"] is not None
    assert {d["name"] for d in first["results"]}.isdisjoint({d["name"] for d in second["results"]})
    names = {d["name"]: d for d in server.session.get(
        f"{server.project}/event_definitions/?limit=100", headers=server.auth(), timeout=10).json()["results"]}
    assert names["$pageview"]["volume_30_day"] > 0 and names["$pageview"]["last_seen_at"].endswith("Z")


def test_property_definitions_by_type(server: Server) -> None:
    person = server.session.get(f"{server.project}/property_definitions/?type=person&limit=100",
                                headers=server.auth(), timeout=10).json()["results"]
    event = server.session.get(f"{server.project}/property_definitions/?type=event&limit=100",
                               headers=server.auth(), timeout=10).json()["results"]
    assert {"email", "plan", "signup_date"} <= {p["name"] for p in person}
    assert {"$browser", "$current_url", "plan"} <= {p["name"] for p in event}


def test_insights_experiments_lists(server: Server) -> None:
    insights = server.session.get(f"{server.project}/insights/?limit=1", headers=server.auth(), timeout=10).json()
    assert insights["count"] == 2 and len(insights["results"]) == 1 and insights["next"]
    assert {"id", "short_id", "name", "query", "result"} <= set(insights["results"][0])
    experiments = server.session.get(f"{server.project}/experiments/", headers=server.auth(), timeout=10).json()
    keys = {e["feature_flag_key"] for e in experiments["results"]}
    assert keys == {"new-onboarding", "pricing-page-v2"}


def test_persons_by_distinct_id_and_search(server: Server) -> None:
    hit = server.session.get(f"{server.project}/persons/?distinct_id=user-00001", headers=server.auth(),
                             timeout=10).json()
    assert len(hit["results"]) == 1
    person = hit["results"][0]
    assert person["distinct_ids"] == ["user-00001"] and person["properties"]["email"] == "user00001@example.com"
    assert {"id", "uuid", "distinct_ids", "properties", "created_at"} <= set(person)
    miss = server.session.get(f"{server.project}/persons/?distinct_id=nobody", headers=server.auth(),
                              timeout=10).json()
    assert miss["results"] == []
    found = server.session.get(f"{server.project}/persons/?search=user00002@", headers=server.auth(),
                               timeout=10).json()
    assert [p["distinct_ids"] for p in found["results"]] == [["user-00002"]]
    one = server.session.get(f"{server.project}/persons/{person['id']}/", headers=server.auth(), timeout=10)
    assert one.status_code == 200 and one.json()["id"] == person["id"]


def test_static_cohort_lifecycle(server: Server) -> None:
    created = server.session.post(f"{server.project}/cohorts/", headers=server.auth(), timeout=10,
                                  json={"name": "Test static", "is_static": True})
    assert created.status_code == 201
    cohort = created.json()
    assert cohort["is_static"] and cohort["count"] == 0 and cohort["is_calculating"] is False
    people = [server.session.get(f"{server.project}/persons/?distinct_id=user-0000{i}", headers=server.auth(),
                                 timeout=10).json()["results"][0]["id"] for i in (1, 2, 3)]
    added = server.session.patch(f"{server.project}/cohorts/{cohort['id']}/add_persons_to_static_cohort/",
                                 json={"person_ids": people}, headers=server.auth(), timeout=10)
    assert added.status_code == 200
    again = server.session.get(f"{server.project}/cohorts/{cohort['id']}/", headers=server.auth(), timeout=10)
    assert again.json()["count"] == 3
    members = server.session.get(f"{server.project}/cohorts/{cohort['id']}/persons/", headers=server.auth(),
                                 timeout=10).json()["results"]
    assert sorted(m["id"] for m in members) == sorted(people)
    rows = server.rows("SELECT count() FROM cohort_people WHERE cohort_id = {c}", {"c": cohort["id"]})
    assert rows == [[3]]
    empty = server.session.patch(f"{server.project}/cohorts/{cohort['id']}/add_persons_to_static_cohort/",
                                 json={"person_ids": []}, headers=server.auth(), timeout=10)
    assert empty.status_code == 400 and empty.json()["type"] == "validation_error"
    delete = server.session.delete(f"{server.project}/cohorts/{cohort['id']}/", headers=server.auth(), timeout=10)
    assert delete.status_code == 405


def test_dynamic_cohort_refuses_static_adds_and_name_is_required(server: Server) -> None:
    dynamic = server.session.post(f"{server.project}/cohorts/", headers=server.auth(), timeout=10,
                                  json={"name": "Dynamic", "filters": {"properties": {}}}).json()
    refused = server.session.patch(f"{server.project}/cohorts/{dynamic['id']}/add_persons_to_static_cohort/",
                                   json={"person_ids": ["x"]}, headers=server.auth(), timeout=10)
    assert refused.status_code == 400
    nameless = server.session.post(f"{server.project}/cohorts/", json={}, headers=server.auth(), timeout=10)
    assert nameless.status_code == 400 and nameless.json()["attr"] == "name"


def test_feature_flag_admin(server: Server) -> None:
    inactive = server.session.get(f"{server.project}/feature_flags/?active=false", headers=server.auth(),
                                  timeout=10).json()["results"]
    assert [f["key"] for f in inactive] == ["legacy-export"]
    search = server.session.get(f"{server.project}/feature_flags/?search=onboard", headers=server.auth(),
                                timeout=10).json()["results"]
    assert [f["key"] for f in search] == ["new-onboarding"]
    created = server.session.post(f"{server.project}/feature_flags/", headers=server.auth(), timeout=10,
                                  json={"key": "test-created", "name": "T", "filters": {
                                      "groups": [{"properties": [], "rollout_percentage": 50}]}})
    assert created.status_code == 201 and created.json()["active"] is True
    duplicate = server.session.post(f"{server.project}/feature_flags/", json={"key": "test-created"},
                                    headers=server.auth(), timeout=10)
    assert duplicate.status_code == 400
    flag_id = created.json()["id"]
    assert server.session.delete(f"{server.project}/feature_flags/{flag_id}/", headers=server.auth(),
                                 timeout=10).status_code == 405
    soft = server.session.patch(f"{server.project}/feature_flags/{flag_id}/", json={"deleted": True},
                                headers=server.auth(), timeout=10)
    assert soft.status_code == 200
    gone = server.session.get(f"{server.project}/feature_flags/{flag_id}/", headers=server.auth(), timeout=10)
    assert gone.status_code == 404
