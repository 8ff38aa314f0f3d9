"""Autonomy levels (``autonomy.levels``) as inputs of the gate's one decision: shadow never
executes, supervised waits for a person, autonomous skips risk-threshold approvals, and the
most restrictive level that applies wins and is named with where it was set."""

from datetime import UTC, datetime

import pytest
import time_machine
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from agents.portal_roles import PortalRole, group_name
from approvals import services as approvals
from approvals.models import ApprovalRequest
from autonomy import actions, gate, levels
from autonomy.models import (
    ActionRequest,
    ActionStatus,
    AuditRecord,
    AutonomyLevel,
    AutonomySetting,
    ConnectorCall,
)
from autonomy.policy import services as policy_services
from tests.approvals.conftest import approver
from tests.conftest import bearer
from tests.factories import UserFactory

INVOICE = {"invoice_id": "INV-1", "amount": 120}


@pytest.fixture(autouse=True)
def office_hours():
    with time_machine.travel(datetime(2026, 11, 25, 10, 0, tzinfo=UTC), tick=True):
        yield


def codes(reasons) -> list[str]:
    return [r["code"] for r in reasons]


def post_invoice(registry):
    return bearer(APIClient(), registry.token).post(
        "/api/v1/actions/",
        {"operation": "erp.post-invoice", "params": INVOICE, "reason": "month end"},
        format="json",
    )


# --- shadow -----------------------------------------------------------------------------------


def test_a_shadow_action_on_the_api_is_decided_recorded_and_shown_but_never_executed(
    registry, eager, client
):
    AutonomySetting.objects.create(
        level=AutonomyLevel.SHADOW, business_unit=registry.agent.business_unit
    )

    response = post_invoice(registry)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["decision"] == "allow" and body["status"] == "shadowed"
    assert body["executed"] is False and body["autonomy_level"] == "shadow"
    shadow = next(r for r in body["reasons"] if r["code"] == "autonomy_shadow")
    assert "shadow, set on business unit finance" in shadow["message"]
    assert not ConnectorCall.objects.exists()  # the connector was never called
    record = AuditRecord.objects.get(kind="action_decision", action_id=body["id"])
    assert record.payload["decision"]["autonomy_level"] == {
        "level": "shadow",
        "source": "business unit finance",
    }
    viewer = UserFactory(username="vera", is_staff=True)
    viewer.groups.add(Group.objects.get(name=group_name(PortalRole.VIEWER)))
    client.force_login(viewer)
    page = client.get(f"/actions/{body['id']}/trace/")
    assert page.status_code == 200
    assert b'id="trace-level"' in page.content and b">shadow<" in page.content
    assert b"Never executed: decided at the shadow level." in page.content


def test_a_denied_action_stays_denied_at_the_shadow_level(registry):
    AutonomySetting.objects.create(level=AutonomyLevel.SHADOW, agent=registry.agent)

    action, _ = actions.action_request(
        agent=registry.agent,
        operation_key="erp.read-invoice",
        params={},  # not granted
    )

    assert action.status == ActionStatus.DENIED and "grant_missing" in codes(action.reasons)


# --- supervised -------------------------------------------------------------------------------


def test_a_supervised_action_policy_allows_waits_for_a_person_and_runs_once_approved(
    registry, eager
):
    AutonomySetting.objects.create(level=AutonomyLevel.SUPERVISED, role=registry.agent.role)

    response = post_invoice(registry)

    body = response.json()
    assert body["decision"] == "needs_approval" and body["status"] == "pending_approval"
    supervised = next(r for r in body["reasons"] if r["code"] == "autonomy_supervised")
    assert "supervised, set on role invoice-processor" in supervised["message"]
    assert not ConnectorCall.objects.exists()
    request = ApprovalRequest.objects.get(action_id=body["id"])
    approvals.approval_decide(
        request_id=request.pk, approver=approver("boss"), verdict="approve", channel="inbox"
    )
    action = ActionRequest.objects.get(pk=body["id"])
    assert action.status == ActionStatus.SUCCEEDED
    assert ConnectorCall.objects.filter(idempotency_key=str(action.pk)).count() == 1
    actions.action_execute(action_id=action.pk)  # a redelivered task changes nothing
    assert ConnectorCall.objects.count() == 1


# --- the most restrictive wins ------------------------------------------------------------------


def test_the_most_restrictive_level_wins_across_agent_role_unit_and_template(registry):
    agent, key = registry.agent, "erp.post-invoice"
    AutonomySetting.objects.create(level=AutonomyLevel.AUTONOMOUS, agent=agent)
    assert levels.level_for(agent=agent, operation_key=key).as_dict() == {
        "level": "autonomous",
        "source": "agent ap-bot",
    }
    AutonomySetting.objects.create(level=AutonomyLevel.GUARDED, role=agent.role)
    assert levels.level_for(agent=agent, operation_key=key).source == "role invoice-processor"
    AutonomySetting.objects.create(
        level=AutonomyLevel.SUPERVISED, business_unit=agent.business_unit
    )
    assert levels.level_for(agent=agent, operation_key=key).as_dict() == {
        "level": "supervised",
        "source": "business unit finance",
    }
    AutonomySetting.objects.create(level=AutonomyLevel.SHADOW, template_key="invoice-run")
    # The template's level applies only to its steps.
    assert levels.level_for(agent=agent, operation_key=key).level == "supervised"
    within = levels.level_for(agent=agent, operation_key=key, template_key="invoice-run")
    assert within.as_dict() == {"level": "shadow", "source": "workflow template invoice-run"}

    decision = gate.decide(
        agent=agent, operation=registry.post, params=INVOICE, template_key="invoice-run"
    )
    assert decision.as_dict()["autonomy_level"]["source"] == "workflow template invoice-run"
    assert "shadow, set on workflow template invoice-run" in decision.reasons[-1]["message"]


def test_a_level_narrowed_to_operations_applies_only_to_those(registry):
    agent = registry.agent
    AutonomySetting.objects.create(
        level=AutonomyLevel.SHADOW, agent=agent, operations=["erp.read-invoice"]
    )

    assert levels.level_for(agent=agent, operation_key="erp.read-invoice").level == "shadow"
    assert levels.level_for(agent=agent, operation_key="erp.post-invoice") == levels.DEFAULT
    assert levels.level_for(agent=agent) == levels.DEFAULT  # as /agents/me/ shows it
    action, _ = actions.action_request(
        agent=agent, operation_key="erp.post-invoice", params=INVOICE
    )
    assert action.status == ActionStatus.APPROVED and action.autonomy_level == "guarded"


def test_an_agent_reads_its_level_and_where_it_was_set(registry):
    api = bearer(APIClient(), registry.token)
    assert api.get("/api/v1/agents/me/").json()["autonomy_level"] == "guarded"

    AutonomySetting.objects.create(
        level=AutonomyLevel.SUPERVISED, business_unit=registry.agent.business_unit
    )

    me = api.get("/api/v1/agents/me/").json()
    assert me["autonomy_level"] == "supervised"
    assert me["autonomy_level_source"] == "business unit finance"


# --- autonomous -------------------------------------------------------------------------------


def test_autonomous_lets_a_risky_action_through_that_guarded_sends_to_people(registry):
    unit = registry.agent.business_unit
    unit.approval_threshold = 0
    unit.save(update_fields=["approval_threshold"])
    guarded = gate.decide(agent=registry.agent, operation=registry.post, params=INVOICE)
    assert guarded.verdict == "needs_approval"
    assert "risk_needs_approval" in codes(guarded.reasons)

    AutonomySetting.objects.create(level=AutonomyLevel.AUTONOMOUS, agent=registry.agent)

    decision = gate.decide(agent=registry.agent, operation=registry.post, params=INVOICE)
    assert decision.verdict == "allow"
    assert codes(decision.reasons) == ["allowed", "autonomy_autonomous"]
    assert "autonomous, set on agent ap-bot" in decision.reasons[-1]["message"]


def test_autonomous_still_denies_what_a_policy_forbids(registry):
    AutonomySetting.objects.create(level=AutonomyLevel.AUTONOMOUS, agent=registry.agent)
    policy_services.policy_save(
        name="no finance writes", enabled=True, by=registry.officer,
        text='forbid (principal in BusinessUnit::"finance", action, resource) when { resource.financial };',
    )  # fmt: skip

    decision = gate.decide(agent=registry.agent, operation=registry.post, params=INVOICE)

    assert decision.verdict == "deny" and codes(decision.reasons) == ["policy_forbid"]


def test_a_level_set_after_a_decision_holds_from_the_next_one(registry):
    first, _ = actions.action_request(
        agent=registry.agent, operation_key="erp.post-invoice", params=INVOICE
    )
    AutonomySetting.objects.create(level=AutonomyLevel.SHADOW, agent=registry.agent)
    second, _ = actions.action_request(
        agent=registry.agent,
        operation_key="erp.post-invoice",
        params={**INVOICE, "invoice_id": "INV-2"},
    )
    assert first.status == ActionStatus.APPROVED
    assert second.status == ActionStatus.SHADOWED and second.finished_at is not None


def test_simulate_shows_the_level(registry):
    AutonomySetting.objects.create(level=AutonomyLevel.SUPERVISED, agent=registry.agent)

    body = (
        bearer(APIClient(), registry.token)
        .post("/api/v1/simulate/", {"operation": "erp.post-invoice", "params": INVOICE},
              format="json")
        .json()
    )  # fmt: skip

    assert body["verdict"] == "needs_approval"
    assert body["autonomy_level"] == {"level": "supervised", "source": "agent ap-bot"}
    assert not ActionRequest.objects.exists()


def test_shadow_actions_spend_nothing_of_the_daily_budget(registry):
    agent = registry.agent
    agent.max_daily_spend = 200
    agent.save(update_fields=["max_daily_spend"])
    AutonomySetting.objects.create(level=AutonomyLevel.SHADOW, agent=agent)
    for n in range(3):  # 360 in all, were they spent
        shadowed, _ = actions.action_request(
            agent=agent,
            operation_key="erp.post-invoice",
            params={**INVOICE, "invoice_id": f"INV-{n}"},
        )
        assert shadowed.status == ActionStatus.SHADOWED, shadowed.reasons
    AutonomySetting.objects.filter(agent=agent).delete()

    action, _ = actions.action_request(
        agent=agent, operation_key="erp.post-invoice", params={**INVOICE, "invoice_id": "real"}
    )

    assert action.status == ActionStatus.APPROVED, action.reasons


def test_a_waiting_action_whose_level_moved_to_shadow_is_shadowed_when_approved(registry):
    AutonomySetting.objects.create(level=AutonomyLevel.SUPERVISED, agent=registry.agent)
    waiting, _ = actions.action_request(
        agent=registry.agent, operation_key="erp.post-invoice", params=INVOICE
    )
    assert waiting.status == ActionStatus.PENDING_APPROVAL
    AutonomySetting.objects.create(level=AutonomyLevel.SHADOW, role=registry.agent.role)

    approvals.approval_decide(
        request_id=ApprovalRequest.objects.get(action=waiting).pk,
        approver=approver("boss"),
        verdict="approve",
        channel="inbox",
    )

    action = ActionRequest.objects.get(pk=waiting.pk)
    assert action.status == ActionStatus.SHADOWED and action.autonomy_level == "shadow"
    assert codes(action.reasons)[-1] == "autonomy_shadow"
    assert not ConnectorCall.objects.exists()
    assert AuditRecord.objects.filter(
        kind="action_outcome", action_id=action.pk, payload__status="shadowed"
    ).exists()


def test_a_risk_officer_sets_a_level_in_the_admin_on_exactly_one_scope(registry, client):
    officer = UserFactory(username="rita", is_staff=True)
    officer.groups.add(Group.objects.get(name=group_name(PortalRole.RISK_OFFICER)))
    client.force_login(officer)
    url = "/admin/autonomy/autonomysetting/add/"
    unit, role = registry.agent.business_unit, registry.agent.role
    form = {"level": "shadow", "operations": "[]", "note": "", "template_key": ""}

    both = client.post(url, {**form, "business_unit": unit.pk, "role": role.pk})
    unknown = client.post(url, {**form, "role": role.pk, "operations": '["erp.nope"]'})
    assert both.status_code == unknown.status_code == 200  # the form again, with its errors
    assert b"exactly one of an agent" in both.content
    assert b"No such operation: erp.nope." in unknown.content
    assert not AutonomySetting.objects.exists()

    saved = client.post(url, {**form, "business_unit": unit.pk})
    assert saved.status_code == 302
    assert levels.level_for(agent=registry.agent).as_dict() == {
        "level": "shadow",
        "source": "business unit finance",
    }
