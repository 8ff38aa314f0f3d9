"""Lifting a stop: an owner resumes their own pause; a quarantine, or a pause an emergency
stop made, is lifted by the global authority (IT admins, risk officers) only."""

import pytest

from agents.models import Agent, AgentStatus
from interventions import services as intervention
from tests.agents.conftest import as_, error

pytestmark = pytest.mark.django_db

AGENTS = "/api/v1/agents/"


def test_an_owner_cannot_lift_a_quarantine_a_risk_officer_set(api, hr_agent, owner, risk_officer):
    quarantined = as_(api, risk_officer).post(
        f"{AGENTS}{hr_agent.pk}/quarantine/", {"reason": "leaking salaries"}, format="json"
    )
    assert quarantined.status_code == 200

    response = as_(api, owner).post(f"{AGENTS}{hr_agent.pk}/resume/", {}, format="json")

    assert response.status_code == 403, response.content
    assert error(response)["code"] == "stop_lift_denied"
    assert Agent.objects.get(pk=hr_agent.pk).status == AgentStatus.QUARANTINED


def test_a_risk_officer_lifts_the_quarantine(api, hr_agent, risk_officer):
    as_(api, risk_officer).post(f"{AGENTS}{hr_agent.pk}/quarantine/", {}, format="json")
    response = api.post(f"{AGENTS}{hr_agent.pk}/resume/", {}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "active"


def test_an_owner_resumes_their_own_pause(api, hr_agent, owner):
    assert (
        as_(api, owner).post(f"{AGENTS}{hr_agent.pk}/pause/", {}, format="json").status_code == 200
    )
    response = api.post(f"{AGENTS}{hr_agent.pk}/resume/", {}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "active"


def test_an_owner_cannot_resume_an_agent_an_emergency_stop_paused(
    api, hr_agent, owner, risk_officer
):
    intervention.emergency_stop(by=risk_officer, reason="incident")
    response = as_(api, owner).post(f"{AGENTS}{hr_agent.pk}/resume/", {}, format="json")
    assert response.status_code == 403, response.content
    assert error(response)["code"] == "stop_lift_denied"
    assert Agent.objects.get(pk=hr_agent.pk).status == AgentStatus.PAUSED
