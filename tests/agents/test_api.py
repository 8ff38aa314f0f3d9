import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from agents import services
from agents.models import Agent, AgentStatus
from tests.conftest import bearer
from tests.factories import BusinessUnitFactory, UserFactory, make_agent, make_role

pytestmark = pytest.mark.django_db

AGENTS = "/api/v1/agents/"


def err(response) -> dict:
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    return body["error"]


@pytest.fixture
def admin_api(api, it_admin):
    api.force_authenticate(it_admin)
    return api


@pytest.fixture
def new_agent_body(db):
    unit = BusinessUnitFactory(slug="finance", name="Finance")
    role = make_role("invoice-processor")
    owner = UserFactory(username="dana")
    return {"name": "AP bot", "slug": "ap-bot", "owner": owner.username,
            "business_unit": unit.slug, "role": role.slug}  # fmt: skip


def test_it_admin_registers_an_agent(admin_api, new_agent_body):
    response = admin_api.post(AGENTS, new_agent_body, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    # It waits for its unit's owner and security (tests/agents/test_onboarding.py).
    assert body["slug"] == "ap-bot" and body["status"] == "pending"
    assert Agent.objects.get(slug="ap-bot").service_user.username == "agent-ap-bot"


def test_viewer_cannot_register_an_agent(api, viewer, new_agent_body):
    api.force_authenticate(viewer)
    response = api.post(AGENTS, new_agent_body, format="json")
    assert response.status_code == 403
    assert err(response)["code"] == "permission_denied"


def test_malformed_json_is_a_clear_400(admin_api):
    response = admin_api.post(AGENTS, data='{"name": ', content_type="application/json")
    assert response.status_code == 400
    assert err(response)["code"] == "malformed_json"


def test_unknown_field_is_named(admin_api, new_agent_body):
    response = admin_api.post(AGENTS, {**new_agent_body, "riskTier": 3}, format="json")
    assert response.status_code == 400
    error = err(response)
    assert error["code"] == "unknown_field"
    assert "riskTier" in error["details"]["fields"]


def test_wrong_types_are_reported_per_field(admin_api, new_agent_body):
    response = admin_api.post(
        AGENTS, {**new_agent_body, "risk_tier": "very", "name": ["x"]}, format="json"
    )
    assert response.status_code == 400
    error = err(response)
    assert error["code"] == "validation_failed"
    assert set(error["details"]["fields"]) == {"risk_tier", "name"}


def test_reference_to_unknown_owner_is_a_validation_error(admin_api, new_agent_body):
    response = admin_api.post(AGENTS, {**new_agent_body, "owner": "nobody"}, format="json")
    assert response.status_code == 400
    assert "owner" in err(response)["details"]["fields"]


def test_too_large_body_is_refused_with_413(admin_api, new_agent_body, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({**new_agent_body, "description": "x" * 5000})
    response = admin_api.post(AGENTS, data=body, content_type="application/json")
    assert response.status_code == 413
    assert err(response)["code"] == "payload_too_large"
    assert not Agent.objects.filter(slug="ap-bot").exists()


def test_non_json_content_type_is_415(admin_api):
    response = admin_api.post(
        AGENTS, data="name=x", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 415
    assert err(response)["code"] == "unsupported_media_type"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/agents/00000000-0000-0000-0000-000000000000/",
        "/api/v1/agents/not-a-uuid/",
        "/api/v1/nothing-here/",
        "/api/v1/credentials/123/",
    ],
)
def test_unknown_ids_and_paths_are_json_404(admin_api, path):
    response = admin_api.get(path)
    assert response.status_code == 404
    assert err(response)["code"] == "not_found"


def test_wrong_method_is_json_405(admin_api, agent):
    response = admin_api.delete(f"{AGENTS}{agent.pk}/")
    assert response.status_code == 405
    assert err(response)["code"] == "method_not_allowed"


def test_illegal_transition_is_409_with_current_state(admin_api, agent, it_admin):
    services.agent_retire(agent=agent, by=it_admin)
    response = admin_api.post(f"{AGENTS}{agent.pk}/resume/", {}, format="json")
    assert response.status_code == 409
    error = err(response)
    assert error["code"] == "illegal_transition"
    assert error["details"] == {"current": "retired", "target": "active"}


def test_pause_through_the_api_records_who_and_why(admin_api, agent, it_admin):
    response = admin_api.post(f"{AGENTS}{agent.pk}/pause/", {"reason": "audit week"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "paused"
    agent.refresh_from_db()
    assert agent.status == AgentStatus.PAUSED and agent.status_reason == "audit week"
    # An intervention like any other: the agent page's history shows it.
    from autonomy.models import Intervention

    (pause,) = Intervention.objects.filter(agent=agent)
    assert (pause.kind, pause.by, pause.reason) == ("pause", it_admin, "audit week")


def test_agents_may_not_use_the_registry_endpoints(api, agent):
    _, token = services.credential_issue(agent=agent)
    response = bearer(api, token).get(AGENTS)
    assert response.status_code == 403
    assert err(response)["code"] == "permission_denied"


def test_owner_without_global_permission_sees_only_own_agents(api, agent):
    make_agent(slug="someone-elses")
    api.force_authenticate(agent.owner)
    response = api.get(AGENTS)
    assert response.status_code == 200
    assert [a["slug"] for a in response.json()["results"]] == ["invoice-bot"]


def test_list_filters_by_business_unit_and_status(admin_api, it_admin):
    finance = BusinessUnitFactory(slug="finance")
    it = BusinessUnitFactory(slug="it")
    a = make_agent(slug="fin-1", business_unit=finance)
    make_agent(slug="fin-2", business_unit=finance)
    make_agent(slug="it-1", business_unit=it)
    services.agent_pause(agent=a, by=it_admin)
    response = admin_api.get(AGENTS, {"business_unit": "finance", "status": "active"})
    assert [x["slug"] for x in response.json()["results"]] == ["fin-2"]


def test_issue_rotate_revoke_credentials_through_the_api(admin_api, agent):
    issued = admin_api.post(f"{AGENTS}{agent.pk}/credentials/", {"name": "ci"}, format="json")
    assert issued.status_code == 201
    token = issued.json()["token"]
    listed = admin_api.get(f"{AGENTS}{agent.pk}/credentials/").json()["results"]
    assert [c["prefix"] for c in listed] == [issued.json()["prefix"]]
    assert "token" not in listed[0] and "token_hash" not in listed[0]
    rotated = admin_api.post(
        f"/api/v1/credentials/{issued.json()['id']}/rotate/", {"overlap_seconds": 0}, format="json"
    )
    assert rotated.status_code == 201
    agent_api = bearer(APIClient(), token)
    assert agent_api.get("/api/v1/agents/me/").status_code == 401  # zero overlap: old is gone
    bearer(agent_api, rotated.json()["token"])
    assert agent_api.get("/api/v1/agents/me/").status_code == 200
    revoked = admin_api.post(
        f"/api/v1/credentials/{rotated.json()['id']}/revoke/", {"reason": "test"}, format="json"
    )
    assert revoked.json()["state"] == "revoked"
    assert agent_api.get("/api/v1/agents/me/").status_code == 401


def _queries_for_list(api, path) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = api.get(path, {"page_size": 500})
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_list_query_counts_are_the_same_for_10_and_1000_agents(admin_api):
    from django.contrib.auth import get_user_model

    units = [BusinessUnitFactory(slug=f"u{i}") for i in range(3)]
    roles = [make_role(f"r{i}") for i in range(3)]
    owners = [UserFactory(username=f"o{i}") for i in range(5)]
    for i in range(10):
        make_agent(
            slug=f"a-{i}", business_unit=units[i % 3], role=roles[i % 3], owner=owners[i % 5]
        )
    paths = [AGENTS, "/api/v1/business-units/", "/api/v1/roles/"]
    for path in paths:
        admin_api.get(path)  # warm the forced user's permission cache, as a session would
    small = {path: _queries_for_list(admin_api, path) for path in paths}
    # The other 990 in bulk: the list's queries do not depend on how rows were written.
    User = get_user_model()
    users = User.objects.bulk_create(User(username=f"agent-bulk-{i}") for i in range(10, 1000))
    Agent.objects.bulk_create(
        Agent(name=f"A {i}", slug=f"a-{i}", owner=owners[i % 5], business_unit=units[i % 3],
              role=roles[i % 3], service_user=user)
        for i, user in zip(range(10, 1000), users, strict=True)
    )  # fmt: skip
    assert Agent.objects.count() == 1000
    assert {path: _queries_for_list(admin_api, path) for path in paths} == small
    assert max(small.values()) <= 8


def test_openapi_schema_and_docs_are_served(admin_api):
    schema = admin_api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert "/api/v1/agents/me/" in schema.json()["paths"]
    assert admin_api.get("/api/docs/").status_code == 200
