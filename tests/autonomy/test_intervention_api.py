"""Intervention through the portal buttons and /api/v1/: the kill takes effect on the next
request, only people with authority may intervene, agents never may."""

import pytest
from django.test import Client

from agents.models import Agent, AgentStatus
from approvals.models import ApprovalStatus
from autonomy.models import ActionRequest, AuditRecord, Intervention, InterventionKind
from tests.approvals.conftest import pending_action
from tests.autonomy.gate_fixtures import build_registry
from tests.autonomy.test_intervention import approved_not_started
from tests.conftest import bearer
from tests.factories import BusinessUnitFactory, make_agent, make_role

INVOICE = {"operation": "erp.post-invoice", "params": {"invoice_id": "N-1", "amount": 5}}


def portal(user) -> Client:
    client = Client(enforce_csrf_checks=False)
    client.force_login(user)
    return client


@pytest.fixture
def killable(db):
    registry = build_registry()
    return registry, pending_action(registry), approved_not_started(registry)


def test_after_the_kill_click_the_agents_next_request_is_refused_and_its_work_cancelled(
    killable, it_admin, api
):
    registry, waiting, approved = killable
    assert bearer(api, registry.token).get("/api/v1/agents/me/").status_code == 200
    response = portal(it_admin).post(
        f"/interventions/agents/{registry.agent.pk}/kill/",
        {"reason": "leaking data", "next": "/interventions/"},
    )
    assert response.status_code == 302
    refused = api.post("/api/v1/actions/", INVOICE, format="json")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "credential_revoked"
    waiting.refresh_from_db()
    approved.refresh_from_db()
    assert waiting.status == approved.status == "cancelled"
    assert waiting.approval.status == ApprovalStatus.CANCELLED
    assert ActionRequest.objects.filter(agent=registry.agent).count() == 2  # nothing new
    row = Intervention.objects.get(kind=InterventionKind.KILL)
    assert row.by == it_admin and row.reason == "leaking data"
    assert AuditRecord.objects.filter(kind="intervention", actor=it_admin.username).exists()


def test_kill_through_the_api_answers_the_quarantined_agent(killable, it_admin_client):
    registry, _, _ = killable
    response = it_admin_client.post(
        f"/api/v1/agents/{registry.agent.pk}/kill/", {"reason": "rogue"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == AgentStatus.QUARANTINED


def test_a_viewer_gets_403_and_nothing_changes(killable, viewer, api):
    registry, waiting, _ = killable
    page = portal(viewer).post(f"/interventions/agents/{registry.agent.pk}/kill/", {"reason": "x"})
    api.force_authenticate(viewer)
    call = api.post(f"/api/v1/agents/{registry.agent.pk}/kill/", {"reason": "x"}, format="json")
    stop = api.post("/api/v1/interventions/emergency-stop/", {"reason": "x"}, format="json")
    assert (page.status_code, call.status_code, stop.status_code) == (403, 403, 403)
    assert Agent.objects.get(pk=registry.agent.pk).status == AgentStatus.ACTIVE
    waiting.refresh_from_db()
    assert waiting.status == "pending_approval"
    assert not Intervention.objects.exists()


def test_portal_refusal_is_shown_as_a_message(it_admin):
    agent = make_agent(slug="retiree")
    from agents import services as agent_services

    agent_services.agent_retire(agent=agent, by=it_admin, reason="old")
    response = portal(it_admin).post(
        f"/interventions/agents/{agent.pk}/kill/", {"reason": "x"}, follow=True
    )
    assert response.status_code == 200
    assert "Cannot go from" in response.content.decode()


def test_emergency_stop_and_lift_through_the_api(it_admin_client):
    role = make_role("stopper")
    unit, other = BusinessUnitFactory(), BusinessUnitFactory()
    mine = [make_agent(slug=f"s{i}", business_unit=unit, role=role) for i in range(3)]
    theirs = make_agent(slug="other", business_unit=other, role=role)
    response = it_admin_client.post(
        "/api/v1/interventions/emergency-stop/",
        {"reason": "incident", "business_unit": unit.slug},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert len(response.json()["details"]["paused"]) == 3
    assert Agent.objects.get(pk=theirs.pk).status == AgentStatus.ACTIVE
    stop_id = response.json()["id"]
    listed = it_admin_client.get("/api/v1/interventions/?kind=emergency_stop").json()
    assert [row["id"] for row in listed["results"]] == [stop_id]
    lifted = it_admin_client.post(
        f"/api/v1/interventions/{stop_id}/lift/", {"reason": "clear"}, format="json"
    )
    assert lifted.status_code == 200 and lifted.json()["lifted_at"]
    assert {Agent.objects.get(pk=a.pk).status for a in mine} == {AgentStatus.ACTIVE}


def test_emergency_stop_page_lists_open_stops_with_a_lift_button(it_admin):
    client = portal(it_admin)
    client.post("/interventions/stop/", {"reason": "fleet drill", "business_unit": ""})
    stop = Intervention.objects.get(kind=InterventionKind.EMERGENCY_STOP)
    page = client.get("/interventions/").content.decode()
    assert "fleet drill" in page and f"/interventions/{stop.pk}/lift/" in page
    client.post(f"/interventions/{stop.pk}/lift/", {"reason": "done"})
    stop.refresh_from_db()
    assert stop.lifted_at is not None
    assert f"/interventions/{stop.pk}/lift/" not in client.get("/interventions/").content.decode()


def test_override_through_the_api_allows_the_waiting_action(it_admin_client):
    registry = build_registry()
    waiting = pending_action(registry)
    response = it_admin_client.post(
        f"/api/v1/actions/{waiting.pk}/override/",
        {"verdict": "allow", "reason": "urgent payment"},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "approved"


def test_an_agent_may_not_override(db, api):
    registry = build_registry()
    waiting = pending_action(registry)
    response = bearer(api, registry.token).post(
        f"/api/v1/actions/{waiting.pk}/override/",
        {"verdict": "allow", "reason": "me"},
        format="json",
    )
    assert response.status_code == 403
    waiting.refresh_from_db()
    assert waiting.status == "pending_approval"


def test_intervention_buttons_render_for_an_agent(it_admin, rf):
    from django.template.loader import render_to_string

    agent = make_agent(slug="shown")
    request = rf.get("/agents/shown/")
    request.user = it_admin
    html = render_to_string("portal/_intervention_buttons.html", {"agent": agent}, request=request)
    assert f"/interventions/agents/{agent.pk}/kill/" in html
    assert f"/interventions/agents/{agent.pk}/pause/" in html
    assert "csrfmiddlewaretoken" in html


def test_admin_kill_action_kills_the_selected_agents(admin_client):
    agent = make_agent(slug="admin-killed")
    response = admin_client.post(
        "/admin/agents/agent/",
        {"action": "bulk_kill", "_selected_action": [str(agent.pk)]},
    )
    assert response.status_code == 302
    assert Agent.objects.get(pk=agent.pk).status == AgentStatus.QUARANTINED
    assert Intervention.objects.filter(kind=InterventionKind.KILL, agent=agent).exists()
