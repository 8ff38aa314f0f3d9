"""Intervention services: kill, emergency stop and lift, override, redirect."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.models import Agent, AgentStatus, Credential
from approvals.models import ApprovalStatus
from autonomy import actions
from autonomy.errors import DomainError
from autonomy.models import ActionRequest, AuditRecord, Intervention, InterventionKind
from interventions import services as intervention
from tests.approvals.conftest import pending_action
from tests.autonomy.gate_fixtures import build_registry
from tests.factories import BusinessUnitFactory, UserFactory, make_agent, make_role
from tests.workflows import conftest as workflow_fixtures
from tests.workflows.fixtures import published, step
from workflows import services as workflows
from workflows.models import RunStatus, StepRun, StepStatus

world = workflow_fixtures.world  # the workflow tests' fixture (``eager`` is the root conftest's)


@pytest.fixture
def boss(db):
    return UserFactory(username="boss", is_staff=True, is_superuser=True)


def approved_not_started(registry) -> ActionRequest:
    unit = registry.agent.business_unit
    unit.approval_threshold = 100
    unit.save(update_fields=["approval_threshold"])
    action, _ = actions.action_request(
        agent=registry.agent,
        operation_key="erp.post-invoice",
        params={"invoice_id": "INV-2", "amount": 5},
    )
    assert action.status == "approved", action.reasons
    return action


def test_kill_quarantines_revokes_and_cancels_pending_actions(boss):
    registry = build_registry()
    waiting = pending_action(registry)
    approved = approved_not_started(registry)
    done = intervention.agent_kill(agent=registry.agent, by=boss, reason="rogue")
    waiting.refresh_from_db()
    approved.refresh_from_db()
    assert Agent.objects.get(pk=registry.agent.pk).status == AgentStatus.QUARANTINED
    assert not Credential.objects.filter(agent=registry.agent, revoked_at=None).exists()
    assert waiting.status == approved.status == "cancelled"
    assert waiting.approval.status == ApprovalStatus.CANCELLED
    assert sorted(done.details["actions_cancelled"]) == sorted([str(waiting.pk), str(approved.pk)])
    assert AuditRecord.objects.filter(kind="intervention", agent_id=registry.agent.pk).exists()


def test_cancelled_approved_action_is_never_executed_after_a_kill(boss):
    registry = build_registry()
    approved = approved_not_started(registry)
    intervention.agent_kill(agent=registry.agent, by=boss, reason="rogue")
    assert actions.action_execute(action_id=approved.pk).status == "cancelled"


def test_killing_a_quarantined_agent_still_revokes_its_credentials(boss):
    registry = build_registry()
    intervention.agent_quarantine(agent=registry.agent, by=boss, reason="look")
    intervention.agent_kill(agent=registry.agent, by=boss, reason="for good")
    assert not Credential.objects.filter(agent=registry.agent, revoked_at=None).exists()
    assert Intervention.objects.filter(kind=InterventionKind.KILL).count() == 1


def test_kill_cancels_the_agents_running_task_and_fails_its_run(eager, world):
    template = published("tasky", [step("t", None)])
    run = workflows.run_start(template=template, context={})
    clerk = world.agents[0]
    task = workflows.task_next(agent=clerk)
    intervention.agent_kill(agent=clerk, by=world.officer, reason="rogue")
    task.refresh_from_db()
    run.refresh_from_db()
    assert task.status == StepStatus.CANCELLED
    assert run.status in (RunStatus.COMPENSATING, RunStatus.FAILED)


def _units_with_agents(n: int, role):
    unit = BusinessUnitFactory()
    owner = UserFactory()
    for i in range(n):
        make_agent(slug=f"{unit.slug}-a{i}", owner=owner, business_unit=unit, role=role)
    return unit


def test_emergency_stop_takes_the_same_number_of_queries_for_10_and_200_agents(boss):
    role = make_role("stopper")
    small, large = _units_with_agents(10, role), _units_with_agents(200, role)
    intervention.emergency_stop(by=boss, reason="warm-up", business_unit=BusinessUnitFactory())
    counts = []
    for unit in (small, large):
        with CaptureQueriesContext(connection) as queries:
            intervention.emergency_stop(by=boss, reason="drill", business_unit=unit)
        counts.append(len(queries))
    assert counts[0] == counts[1], counts
    assert Agent.objects.filter(business_unit=large, status=AgentStatus.PAUSED).count() == 200


def test_emergency_stop_of_one_unit_pauses_only_that_units_active_agents(boss):
    role = make_role("stopper")
    stopped, other = _units_with_agents(3, role), _units_with_agents(2, role)
    intervention.emergency_stop(by=boss, reason="incident", business_unit=stopped)
    assert set(Agent.objects.filter(business_unit=stopped).values_list("status", flat=True)) == {
        AgentStatus.PAUSED
    }
    assert set(Agent.objects.filter(business_unit=other).values_list("status", flat=True)) == {
        AgentStatus.ACTIVE
    }


def test_lift_resumes_exactly_the_agents_the_stop_paused(boss):
    role = make_role("stopper")
    unit = _units_with_agents(4, role)
    already, *rest = Agent.objects.filter(business_unit=unit).order_by("slug")
    intervention.agent_pause(agent=already, by=boss, reason="under review")
    stop = intervention.emergency_stop(by=boss, reason="incident", business_unit=unit)
    assert sorted(stop.details["paused"]) == sorted(str(a.pk) for a in rest)
    quarantined_meanwhile = rest[0]
    intervention.agent_quarantine(agent=quarantined_meanwhile, by=boss, reason="bad")
    intervention.emergency_lift(intervention=stop, by=boss, reason="all clear")
    statuses = dict(Agent.objects.filter(business_unit=unit).values_list("slug", "status"))
    assert statuses[already.slug] == AgentStatus.PAUSED
    assert statuses[quarantined_meanwhile.slug] == AgentStatus.QUARANTINED
    assert {statuses[a.slug] for a in rest[1:]} == {AgentStatus.ACTIVE}
    stop.refresh_from_db()
    assert stop.lifted_by == boss and stop.lifted_at is not None
    assert Intervention.objects.filter(kind=InterventionKind.EMERGENCY_LIFT).count() == 1


def test_a_stop_cannot_be_lifted_twice(boss):
    unit = _units_with_agents(1, make_role("stopper"))
    stop = intervention.emergency_stop(by=boss, reason="incident", business_unit=unit)
    intervention.emergency_lift(intervention=stop, by=boss, reason="ok")
    with pytest.raises(DomainError):
        intervention.emergency_lift(intervention=stop, by=boss, reason="again")


def test_paused_agent_is_denied_on_its_next_action_after_an_emergency_stop(boss):
    registry = build_registry()
    intervention.emergency_stop(by=boss, reason="incident")
    agent = Agent.objects.get(pk=registry.agent.pk)
    action, _ = actions.action_request(
        agent=agent, operation_key="erp.post-invoice", params={"invoice_id": "X", "amount": 1}
    )
    assert action.status == "denied" and action.reasons[0]["code"] == "agent_paused"


def test_override_allow_executes_the_waiting_action(boss):
    registry = build_registry()
    waiting = pending_action(registry)
    intervention.action_override(action=waiting, by=boss, verdict="allow", reason="urgent")
    waiting.refresh_from_db()
    assert waiting.status == "approved" and waiting.approval.status == ApprovalStatus.APPROVED
    assert actions.action_execute(action_id=waiting.pk).status == "succeeded"
    assert Intervention.objects.get(kind=InterventionKind.OVERRIDE).details["verdict"] == "allow"
    assert AuditRecord.objects.filter(kind="intervention", action_id=waiting.pk).exists()


def test_override_deny_denies_the_action_and_its_workflow_step_reacts(eager, world):
    template = published(
        "invoice",
        [step("post", "post-invoice", input_map={"amount": "$.amount"}, approval="always")],
    )
    run = workflows.run_start(template=template, context={"amount": 10})
    post = StepRun.objects.get(run=run, step__key="post")
    assert post.status == StepStatus.WAITING_APPROVAL
    intervention.action_override(action=post.action, by=world.officer, verdict="deny", reason="no")
    post.refresh_from_db()
    post.action.refresh_from_db()
    run.refresh_from_db()
    assert post.action.status == "denied"
    assert post.status == StepStatus.FAILED
    assert run.status in (RunStatus.COMPENSATING, RunStatus.FAILED)


def test_redirected_task_can_be_claimed_by_the_new_agent_only(eager, world):
    template = published("tasky", [step("t", None)])
    run = workflows.run_start(template=template, context={})
    task = StepRun.objects.get(run=run)
    senior = world.seniors_agents[0]
    intervention.step_redirect(step_run=task, to_agent=senior, by=world.officer, reason="expert")
    assert workflows.task_next(agent=world.agents[0]) is None
    claimed = workflows.task_next(agent=senior)
    assert claimed.pk == task.pk and claimed.status == StepStatus.RUNNING
    assert Intervention.objects.get(kind=InterventionKind.REDIRECT).agent == senior


@pytest.mark.parametrize("verb", ["pause", "quarantine"])
def test_lifecycle_intervention_leaves_a_row_and_an_audit_record(boss, verb):
    registry = build_registry()
    getattr(intervention, f"agent_{verb}")(agent=registry.agent, by=boss, reason="check")
    row = Intervention.objects.get(kind=verb)
    assert row.agent_id == registry.agent.pk and row.by == boss and row.reason == "check"
    record = AuditRecord.objects.filter(kind="intervention").last()
    assert record.payload["kind"] == verb and record.actor == "boss"


def test_a_viewer_may_not_intervene_and_nothing_changes(viewer):
    registry = build_registry()
    with pytest.raises(DomainError):
        intervention.agent_kill(agent=registry.agent, by=viewer, reason="no")
    assert Agent.objects.get(pk=registry.agent.pk).status == AgentStatus.ACTIVE
    assert not Intervention.objects.exists()
