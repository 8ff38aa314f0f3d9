"""The action lifecycle (``autonomy.actions``): limits that hold under concurrency, a release
that decides again, legal moves only, and model signals that see every write."""

import threading
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models.signals import post_save

from agents import services as agent_services
from approvals import services as approvals
from approvals.models import ApprovalRequest, ApprovalStatus, Channel
from autonomy import actions, grants
from autonomy.errors import IllegalTransition
from autonomy.models import ActionRequest, ActionStatus, AgentUsage, AuditRecord, Verdict
from autonomy.policy import services as policy_services
from tests.approvals.conftest import approver, pending_action
from tests.autonomy.gate_fixtures import build_registry
from tests.autonomy.test_actions_api import agent_api

ACTIONS = "/api/v1/actions/"


def _burst(token: str, bodies: list[dict]) -> list[dict]:
    """POST every body at once, one thread each, released together by a barrier."""
    results, barrier = [], threading.Barrier(len(bodies))

    def post(body):
        try:
            barrier.wait()
            response = agent_api(token).post(ACTIONS, body, format="json")
            results.append(response.json())
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == len(bodies), results
    return results


def _open_thresholds(registry) -> None:
    unit = registry.agent.business_unit
    unit.approval_threshold, unit.deny_threshold = 1000, 1000
    unit.save(update_fields=["approval_threshold", "deny_threshold"])


def _codes(result: dict) -> set[str]:
    return {reason["code"] for reason in result["reasons"]}


@pytest.mark.django_db(transaction=True)
def test_twelve_concurrent_requests_against_a_limit_of_three_per_minute_let_exactly_three_through():
    registry = build_registry()
    _open_thresholds(registry)
    registry.agent.max_actions_per_minute = 3
    registry.agent.save(update_fields=["max_actions_per_minute"])
    body = {"operation": "erp.post-invoice", "params": {"invoice_id": "I", "amount": 1}}

    results = _burst(registry.token, [body] * 12)

    allowed = [r for r in results if r["decision"] == "allow"]
    refused = [r for r in results if r["decision"] == "deny"]
    assert len(allowed) == 3, [sorted(_codes(r)) for r in results]
    assert len(refused) == 9 and all("rate_limited" in _codes(r) for r in refused)
    assert ActionRequest.objects.filter(verdict=Verdict.ALLOW).count() == 3
    counted = AgentUsage.objects.filter(agent=registry.agent)
    assert sum(row.actions for row in counted) == 3
    assert sum(row.denials for row in counted) == 9


@pytest.mark.django_db(transaction=True)
def test_twelve_concurrent_payments_never_overspend_the_daily_budget():
    registry = build_registry()
    _open_thresholds(registry)
    registry.agent.max_daily_spend = Decimal("1000")
    registry.agent.max_actions_per_minute = 100
    registry.agent.save(update_fields=["max_daily_spend", "max_actions_per_minute"])
    bodies = [
        {"operation": "erp.post-invoice", "params": {"invoice_id": f"I-{n}", "amount": 300}}
        for n in range(12)
    ]

    results = _burst(registry.token, bodies)

    allowed = [r for r in results if r["decision"] == "allow"]
    assert len(allowed) == 3, [sorted(_codes(r)) for r in results]
    assert all("budget_exceeded" in _codes(r) for r in results if r["decision"] == "deny")
    spent = sum(row.spend for row in AgentUsage.objects.filter(agent=registry.agent))
    assert spent == Decimal("900.00")


# --- releasing decides again ----------------------------------------------------------------


def _approve(action):
    request = ApprovalRequest.objects.get(action=action)
    approvals.approval_decide(
        request_id=request.pk, approver=approver("ann"), verdict="approve", channel=Channel.INBOX
    )
    return ActionRequest.objects.get(pk=action.pk), ApprovalRequest.objects.get(pk=request.pk)


@pytest.mark.django_db
def test_an_approved_action_whose_grant_was_revoked_while_it_waited_is_denied(registry):
    action = pending_action(registry)
    grants.revoke_grant(target=registry.post, to=registry.agent.role)

    action, request = _approve(action)

    assert request.status == ApprovalStatus.APPROVED
    assert action.status == ActionStatus.DENIED and action.finished_at is not None
    codes = [r["code"] for r in action.reasons]
    assert "approval_granted" in codes and "grant_missing" in codes
    outcome = AuditRecord.objects.get(kind="action_outcome", action_id=action.pk)
    assert outcome.payload["status"] == ActionStatus.DENIED
    assert outcome.payload["decision"]["verdict"] == "deny"


@pytest.mark.django_db
def test_an_approved_action_of_an_agent_paused_while_it_waited_is_denied(registry):
    action = pending_action(registry)
    agent_services.agent_pause(agent=registry.agent, by=registry.officer, reason="look first")

    action, _ = _approve(action)

    assert action.status == ActionStatus.DENIED
    assert "agent_paused" in [r["code"] for r in action.reasons]


@pytest.mark.django_db
def test_an_approved_action_a_policy_now_forbids_is_denied(registry):
    action = pending_action(registry)
    policy_services.policy_save(
        name="no postings", text='forbid (principal, action, resource);', enabled=True,
        by=registry.officer,
    )  # fmt: skip

    action, _ = _approve(action)

    assert action.status == ActionStatus.DENIED
    assert "policy_forbid" in [r["code"] for r in action.reasons]


@pytest.mark.django_db
def test_an_approved_action_still_allowed_is_released_and_its_amount_counted(registry):
    action = pending_action(registry, amount=250)

    action, _ = _approve(action)

    assert action.status == ActionStatus.APPROVED
    assert [r["code"] for r in action.reasons][-1] == "approval_granted"
    released = AuditRecord.objects.get(kind="action_released", action_id=action.pk)
    assert released.payload["decision"]["verdict"] == "allow"
    spent = sum(row.spend for row in AgentUsage.objects.filter(agent=registry.agent))
    assert spent == Decimal("250.00")


@pytest.mark.django_db
def test_approvals_released_one_after_another_never_overspend_the_budget(registry):
    registry.agent.max_daily_spend = Decimal("1000")
    registry.agent.save(update_fields=["max_daily_spend"])
    first = pending_action(registry, amount=600, key="first")
    second = pending_action(registry, amount=600, key="second")

    first, _ = _approve(first)
    second, _ = _approve(second)

    assert first.status == ActionStatus.APPROVED
    assert second.status == ActionStatus.DENIED
    assert "budget_exceeded" in [r["code"] for r in second.reasons]


# --- legal moves, one writer ----------------------------------------------------------------


@pytest.mark.django_db
def test_a_finished_action_cannot_be_released_cancelled_or_settled_again(registry):
    action = pending_action(registry)
    actions.action_reject(action_id=action.pk, code="approval_rejected", message="no")
    action.refresh_from_db()
    assert action.status == ActionStatus.DENIED

    assert actions.action_release(action_id=action.pk, code="x", message="y").status == "denied"
    assert actions.action_cancel(action=action, code="x", message="y") is False
    action.status = ActionStatus.SUCCEEDED
    assert actions.action_settle(action=action).status == ActionStatus.DENIED  # unchanged
    action.status = ActionStatus.APPROVED
    with pytest.raises(IllegalTransition):
        actions.action_settle(action=action)


@pytest.mark.django_db
def test_a_post_save_receiver_sees_every_write_of_an_action(registry):
    seen = []

    def receiver(sender, instance, created, update_fields, **kwargs):
        seen.append((created, instance.status, sorted(update_fields or [])))

    post_save.connect(receiver, sender=ActionRequest, dispatch_uid="test-lifecycle")
    try:
        action = pending_action(registry)
        _approve(action)
    finally:
        post_save.disconnect(dispatch_uid="test-lifecycle", sender=ActionRequest)
    assert seen[0][:2] == (True, ActionStatus.PENDING_APPROVAL)
    assert (False, ActionStatus.APPROVED) in [s[:2] for s in seen]


@pytest.mark.django_db
def test_killing_an_agent_cancels_its_waiting_action_and_closes_the_request(registry):
    from interventions import services as intervention
    from tests.factories import UserFactory

    action = pending_action(registry)
    admin = UserFactory(username="root", is_superuser=True, is_staff=True)

    intervention.agent_kill(agent=registry.agent, by=admin, reason="gone rogue")

    action.refresh_from_db()
    assert action.status == ActionStatus.CANCELLED
    assert ApprovalRequest.objects.get(action=action).status == ApprovalStatus.CANCELLED
    outcome = AuditRecord.objects.get(kind="action_outcome", action_id=action.pk)
    assert outcome.payload["status"] == ActionStatus.CANCELLED


# --- one grant rule ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_operations_endpoint_lists_what_the_agent_may_call_with_schemas(registry):
    client = agent_api(registry.token)

    listed = client.get("/api/v1/operations/").json()

    keys = [op["key"] for op in listed["results"]]
    assert keys == ["erp.post-invoice"]  # granted to its role; read-invoice is not granted
    assert listed["results"][0]["params_schema"]["required"] == ["invoice_id", "amount"]
    assert client.get("/api/v1/operations/erp.post-invoice/").status_code == 200
    missing = client.get("/api/v1/operations/erp.read-invoice/")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"

    grants.grant(target=registry.erp, to=registry.agent)  # the whole connector, to the agent
    keys = [op["key"] for op in client.get("/api/v1/operations/").json()["results"]]
    assert keys == ["erp.post-invoice", "erp.read-invoice"]
    registry.post.enabled = False
    registry.post.save(update_fields=["enabled"])
    keys = [op["key"] for op in client.get("/api/v1/operations/").json()["results"]]
    assert keys == ["erp.read-invoice"]


@pytest.mark.django_db
def test_the_mcp_tool_list_and_the_operations_endpoint_agree(registry):
    from autonomy import mcp_gateway

    grants.grant(target=registry.read, to=registry.agent)
    listed = agent_api(registry.token).get("/api/v1/operations/").json()["results"]
    tools = mcp_gateway.tool_list(agent=registry.agent)
    assert [t["name"] for t in tools if t["name"] != mcp_gateway.STATUS_TOOL] == [
        op["key"] for op in listed
    ]


@pytest.mark.django_db
def test_the_operations_endpoint_is_for_agents_only(registry, client):
    response = client.get("/api/v1/operations/")
    assert response.status_code in (401, 403)
    assert "error" in response.json()


# --- a workflow's approval condition is decided by the gate ---------------------------------


@pytest.mark.django_db
def test_simulate_shows_a_workflow_approval_condition_as_the_gate_decides_it(registry):
    client = agent_api(registry.token)
    body = {
        "operation": "erp.post-invoice",
        "params": {"invoice_id": "I-1", "amount": 5},
        "approval": {
            "reason": "The workflow asks for approval at Post.",
            "when": "invoice.amount > 10000",
            "context": {"invoice": {"amount": 25000}},
        },
    }
    held = client.post("/api/v1/simulate/", body, format="json").json()
    assert held["verdict"] == "needs_approval"
    gate_reason = next(r for r in held["reasons"] if r["code"] == "approval_gate")
    assert gate_reason["details"] == {"when": "invoice.amount > 10000"}

    body["approval"]["context"] = {"invoice": {"amount": 50}}
    assert client.post("/api/v1/simulate/", body, format="json").json()["verdict"] == "allow"

    body["approval"]["when"] = "invoice.amount >>> 3"
    refused = client.post("/api/v1/simulate/", body, format="json")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "validation_failed"
