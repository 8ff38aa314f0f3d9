from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents import services as agent_services
from agents.models import Agent, AgentStatus
from autonomy import actions as lifecycle
from autonomy import gate, grants
from autonomy.models import ActionRequest, ActionStatus, AuditRecord, Policy, PolicyStoreState
from autonomy.policy import services as policy_services

pytestmark = pytest.mark.django_db
OFFICE_HOURS = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # a Wednesday


def codes(decision) -> list[str]:
    return [r["code"] for r in decision.reasons]


@pytest.fixture(autouse=True)
def office_hours():
    with time_machine.travel(OFFICE_HOURS, tick=True):
        yield


def test_granted_and_permitted_low_risk_action_is_allowed(registry):
    decision = gate.decide(
        agent=registry.agent, operation=registry.post, params={"invoice_id": "1", "amount": 120}
    )
    assert decision.verdict == "allow", decision.reasons
    assert codes(decision) == ["allowed"]
    assert decision.grant == {"to": "role:invoice-processor", "on": "operation"}
    assert [p["policy"] for p in decision.policies["permits"]] == ["baseline"]
    assert {f["factor"] for f in decision.risk_factors} >= {
        "sensitivity",
        "data_class",
        "financial",
    }


def test_missing_grant_is_denied_even_when_a_policy_permits(registry):
    decision = gate.decide(agent=registry.agent, operation=registry.read, params={})
    assert decision.verdict == "deny"
    assert "grant_missing" in codes(decision)


def test_agent_level_grant_is_enough(registry):
    grants.grant(target=registry.read, to=registry.agent)
    decision = gate.decide(agent=registry.agent, operation=registry.read, params={})
    assert decision.verdict == "allow"
    assert decision.grant == {"to": "agent", "on": "operation"}


def test_no_permit_is_default_deny(db):
    from tests.autonomy.gate_fixtures import build_registry

    reg = build_registry(baseline=False)
    decision = gate.decide(
        agent=reg.agent, operation=reg.post, params={"invoice_id": "1", "amount": 1}
    )
    assert decision.verdict == "deny"
    assert codes(decision) == ["policy_no_permit"]


def test_forbid_wins_over_permit_and_is_named(registry):
    policy_services.policy_save(
        name="no finance writes", enabled=True, by=registry.officer,
        text='forbid (principal in BusinessUnit::"finance", action, resource) when { resource.financial };',
    )  # fmt: skip
    decision = gate.decide(
        agent=registry.agent, operation=registry.post, params={"invoice_id": "1", "amount": 1}
    )
    assert decision.verdict == "deny"
    assert codes(decision) == ["policy_forbid"]
    assert decision.reasons[0]["details"]["policies"] == ["no finance writes"]


@pytest.mark.parametrize(
    "change, code",
    [
        (agent_services.agent_pause, "agent_paused"),
        (agent_services.agent_quarantine, "agent_quarantined"),
        (agent_services.agent_retire, "agent_retired"),
    ],
)
def test_inactive_agents_are_always_denied(registry, change, code):
    change(agent=registry.agent, by=registry.officer, reason="test")
    agent = Agent.objects.get(pk=registry.agent.pk)
    decision = gate.decide(
        agent=agent, operation=registry.post, params={"invoice_id": "1", "amount": 1}
    )
    assert decision.verdict == "deny" and codes(decision) == [code]


def test_large_amount_needs_approval_by_risk(registry):
    unit = registry.agent.business_unit
    unit.approval_threshold = 30
    unit.save()
    small = gate.decide(
        agent=registry.agent, operation=registry.post, params={"invoice_id": "1", "amount": 100}
    )
    large = gate.decide(
        agent=registry.agent, operation=registry.post, params={"invoice_id": "1", "amount": 200_000}
    )
    assert small.verdict == "allow" and small.risk_score < 30
    assert large.verdict == "needs_approval", large.reasons
    assert codes(large) == ["risk_needs_approval"]
    amount = next(f for f in large.risk_factors if f["factor"] == "amount")
    assert amount["points"] == 16.5


def test_risk_above_the_deny_threshold_is_refused(registry):
    unit = registry.agent.business_unit
    unit.deny_threshold = 30
    unit.save()
    decision = gate.decide(
        agent=registry.agent, operation=registry.post, params={"invoice_id": "1", "amount": 200_000}
    )
    assert decision.verdict == "deny" and codes(decision) == ["risk_too_high"]


def test_policy_annotation_asks_for_approval(registry):
    policy_services.policy_save(
        name="big invoices", enabled=True, by=registry.officer,
        text='@approval("required")\npermit (principal, action, resource) when { context has amount && context.amount > 1000 };',
    )  # fmt: skip
    decision = gate.decide(
        agent=registry.agent, operation=registry.post, params={"invoice_id": "1", "amount": 2000}
    )
    assert decision.verdict == "needs_approval"
    assert codes(decision) == ["policy_requires_approval"]


def test_rate_limit_denies_the_action_over_the_limit(registry):
    Agent.objects.filter(pk=registry.agent.pk).update(max_actions_per_minute=3)
    agent = Agent.objects.select_related("role__group", "business_unit").get(pk=registry.agent.pk)
    results = [
        lifecycle.action_request(agent=agent, operation_key="erp.post-invoice", params={"invoice_id": str(i), "amount": 1})[0]
        for i in range(4)
    ]  # fmt: skip
    assert [a.verdict for a in results] == ["allow", "allow", "allow", "deny"]
    assert "rate_limited" in [r["code"] for r in results[-1].reasons]


def test_daily_spend_budget_is_enforced(registry):
    Agent.objects.filter(pk=registry.agent.pk).update(max_daily_spend=1000)
    agent = Agent.objects.select_related("role__group", "business_unit").get(pk=registry.agent.pk)
    first, _ = lifecycle.action_request(
        agent=agent, operation_key="erp.post-invoice", params={"invoice_id": "1", "amount": 800}
    )
    second, _ = lifecycle.action_request(
        agent=agent, operation_key="erp.post-invoice", params={"invoice_id": "2", "amount": 300}
    )
    assert first.verdict == "allow"
    assert second.verdict == "deny"
    assert "budget_exceeded" in [r["code"] for r in second.reasons]


def test_off_hours_add_risk(registry):
    params = {"invoice_id": "1", "amount": 1}
    day = gate.decide(agent=registry.agent, operation=registry.post, params=params)
    with time_machine.travel(datetime(2026, 11, 28, 23, 0, tzinfo=UTC)):
        night = gate.decide(agent=registry.agent, operation=registry.post, params=params)
    assert night.risk_score == day.risk_score + 5
    assert any(f["factor"] == "off_hours" for f in night.risk_factors)


def test_each_decision_leaves_exactly_one_audit_record(registry):
    before = AuditRecord.objects.count()
    action, _ = lifecycle.action_request(
        agent=registry.agent, operation_key="erp.read-invoice", params={}
    )
    records = AuditRecord.objects.filter(kind="action_decision", action_id=action.pk)
    assert records.count() == 1
    assert AuditRecord.objects.count() == before + 1
    assert records.get().payload["decision"]["verdict"] == "deny"


def test_enabling_a_policy_takes_effect_on_the_next_decision(registry):
    params = {"invoice_id": "1", "amount": 1}
    assert (
        gate.decide(agent=registry.agent, operation=registry.post, params=params).verdict == "allow"
    )
    policy_services.policy_save(
        name="stop", enabled=True, by=registry.officer, text="forbid (principal, action, resource);"
    )
    assert (
        gate.decide(agent=registry.agent, operation=registry.post, params=params).verdict == "deny"
    )


def test_draft_policy_is_simulated_without_recording_anything(registry):
    actions, records = ActionRequest.objects.count(), AuditRecord.objects.count()
    _, decision = lifecycle.action_simulate(
        agent=registry.agent, operation_key="erp.post-invoice", params={"invoice_id": "1", "amount": 1},
        draft_text="forbid (principal, action, resource);",
    )  # fmt: skip
    assert decision.verdict == "deny" and codes(decision) == ["policy_forbid"]
    assert (ActionRequest.objects.count(), AuditRecord.objects.count()) == (actions, records)


def _decision_queries(agent, operation) -> int:
    params = {"invoice_id": "1", "amount": 1}
    gate.decide(agent=agent, operation=operation, params=params)  # warm the policy cache
    with CaptureQueriesContext(connection) as ctx:
        gate.decide(agent=agent, operation=operation, params=params)
    return len(ctx.captured_queries)


def _bulk_agents(registry, n: int, prefix: str) -> None:
    User = get_user_model()
    base = registry.agent
    users = User.objects.bulk_create([User(username=f"{prefix}-{i}") for i in range(n)])
    Agent.objects.bulk_create(
        Agent(name=f"{prefix} {i}", slug=f"{prefix}-{i}", owner=registry.officer, business_unit=base.business_unit,
              role=base.role, service_user=u)
        for i, u in enumerate(users)
    )  # fmt: skip


def test_decision_query_count_is_constant_from_10_to_10000_agents(registry):
    _bulk_agents(registry, 9, "bulk")
    small = _decision_queries(registry.agent, registry.post)
    _bulk_agents(registry, 10_000 - Agent.objects.count(), "more")
    assert Agent.objects.count() == 10_000
    assert _decision_queries(registry.agent, registry.post) == small
    assert small <= 6


def test_decision_query_count_is_constant_from_10_to_1000_policies(registry):
    def add_policies(start, stop):
        Policy.objects.bulk_create(
            Policy(name=f"p{i}", enabled=True,
                   text=f'permit (principal == Agent::"{i:08d}-0000-0000-0000-000000000000", action, resource);')
            for i in range(start, stop)
        )  # fmt: skip
        PolicyStoreState.objects.filter(pk=1).update(version=timezone.now().timestamp())

    add_policies(0, 9)
    small = _decision_queries(registry.agent, registry.post)
    add_policies(9, 999)
    assert Policy.objects.count() == 1000
    assert _decision_queries(registry.agent, registry.post) == small


def test_expired_credential_is_denied_by_the_gate(registry):
    credential, _ = agent_services.credential_issue(
        agent=registry.agent, expires_at=timezone.now() + timedelta(minutes=1)
    )
    with time_machine.travel(timezone.now() + timedelta(minutes=5)):
        decision = gate.decide(
            agent=registry.agent,
            operation=registry.post,
            params={"invoice_id": "1", "amount": 1},
            credential=credential,
        )
    assert decision.verdict == "deny" and codes(decision) == ["credential_revoked"]


def test_allowed_action_is_approved_for_execution(registry):
    action, replayed = lifecycle.action_request(
        agent=registry.agent,
        operation_key="erp.post-invoice",
        params={"invoice_id": "9", "amount": 10},
    )
    assert not replayed and action.status == ActionStatus.APPROVED
    done = lifecycle.action_execute(action_id=action.pk)
    assert done.status == ActionStatus.SUCCEEDED and done.outcome["ok"] is True
    again = lifecycle.action_execute(action_id=action.pk)
    assert again.status == ActionStatus.SUCCEEDED and again.attempts == 1
    assert AuditRecord.objects.filter(action_id=action.pk).count() == 2
    assert AgentStatus.ACTIVE == registry.agent.status
