"""Runs in one process (tasks eager): the engine's rules, step by step."""

import pytest

from approvals import services as approvals
from approvals.models import ApprovalRequest
from autonomy import connectors, grants
from autonomy.models import ActionRequest, AuditRecord, ConnectorCall
from tests.approvals.conftest import approver
from tests.workflows.fixtures import diamond, published, step
from workflows import services
from workflows.models import Run, RunStatus, StepRun, StepStatus


def statuses(run: Run) -> dict[str, str]:
    return {sr.step.key: sr.status for sr in run.step_runs.select_related("step")}


def test_diamond_run_finishes_every_step_through_the_gate(eager, world):
    run = services.run_start(template=diamond(), context={"amount": 120}, by=world.officer)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, statuses(run)
    assert set(statuses(run).values()) == {StepStatus.SUCCEEDED}
    actions = ActionRequest.objects.filter(step_runs__run=run)
    assert actions.count() == 4 and set(actions.values_list("status", flat=True)) == {"succeeded"}
    assert ConnectorCall.objects.count() == 4
    assert run.context["d"]["accepted"] == {"amount": 120}  # outputs merged into the context
    assert AuditRecord.objects.filter(kind="action_decision").count() == 4
    kinds = list(run.events.values_list("kind", flat=True))
    assert kinds[0] == "run_started" and kinds[-1] == "run_succeeded"


def test_step_whose_condition_does_not_hold_is_skipped_and_the_run_goes_on(eager, world):
    template = published(
        "cond",
        [step("a"), step("big", "notify", after=["a"], run_when="amount > 1000"),
         step("z", after=["big"])],
    )  # fmt: skip
    run = services.run_start(template=template, context={"amount": 5})
    run.refresh_from_db()
    assert statuses(run) == {"a": "succeeded", "big": "skipped", "z": "succeeded"}
    assert run.status == RunStatus.SUCCEEDED


def approval_template():
    return published(
        "invoice",
        [
            step("extract"),
            step("post", "post-invoice", after=["extract"], input_map={"amount": "$.amount"},
                 approval="when", approval_when="amount > 10000",
                 compensation_operation="erp.void-invoice"),
            step("notify", "notify", after=["post"]),
        ],
    )  # fmt: skip


def test_approval_gate_waits_and_the_run_resumes_on_approval(eager, world):
    run = services.run_start(template=approval_template(), context={"amount": 25000})
    post = StepRun.objects.get(run=run, step__key="post")
    assert post.status == StepStatus.WAITING_APPROVAL
    request = ApprovalRequest.objects.get(action=post.action)
    assert "approval_gate" in {r["code"] for r in post.action.reasons}
    approvals.approval_decide(
        request_id=request.pk, approver=approver("boss"), verdict="approve", channel="inbox"
    )
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, statuses(run)


def test_small_amount_needs_no_approval(eager, world):
    run = services.run_start(template=approval_template(), context={"amount": 50})
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert not ApprovalRequest.objects.exists()


def test_rejection_compensates_completed_steps_in_reverse_order(eager, world):
    template = published(
        "reject",
        [
            step("one", "post-invoice", input_map={"amount": "$.amount"},
                 compensation_operation="erp.void-invoice",
                 compensation_input_map={"amount": "$.amount", "undo": "$.output.receipt"}),
            step("two", "notify", after=["one"], compensation_operation="erp.void-invoice"),
            step("three", "post-invoice", after=["two"], approval="always"),
        ],
    )  # fmt: skip
    run = services.run_start(template=template, context={"amount": 70})
    three = StepRun.objects.get(run=run, step__key="three")
    approvals.approval_decide(
        request_id=three.action.approval.pk, approver=approver("boss"), verdict="reject",
        channel="inbox",
    )  # fmt: skip
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert statuses(run) == {"one": "compensated", "two": "compensated", "three": "failed"}
    voids = ConnectorCall.objects.filter(operation__slug="void-invoice").order_by("created_at")
    assert [c.idempotency_key for c in voids] == [
        str(StepRun.objects.get(run=run, step__key=k).compensation_action_id)
        for k in ("two", "one")
    ]
    one = StepRun.objects.get(run=run, step__key="one")
    assert one.compensation_action.params == {"amount": 70, "undo": one.output["receipt"]}


@pytest.fixture
def flaky(monkeypatch):
    """The ERP as a vendor system that fails its first ``n`` calls (a vendor outage)."""
    calls = {"n": 0, "fail": 1}
    ledger = connectors.EXECUTORS["erp"]

    def erp(**kwargs):
        calls["n"] += 1
        if calls["n"] <= calls["fail"]:
            raise connectors.ConnectorError("ERP answered 503")
        return ledger(**kwargs)

    monkeypatch.setitem(connectors.EXECUTORS, "erp", erp)
    return calls


def test_failed_step_is_retried_with_a_new_action(eager, world, flaky):
    template = published("retry", [step("a", max_retries=2, retry_backoff_seconds=0)])
    run = services.run_start(template=template)
    run.refresh_from_db()
    a = StepRun.objects.get(run=run)
    assert run.status == RunStatus.SUCCEEDED and a.attempt == 2
    assert ActionRequest.objects.filter(idempotency_key__startswith=f"step-run:{a.pk}").count() == 2
    assert "retry_scheduled" in set(run.events.values_list("kind", flat=True))


def test_after_retries_the_step_escalates_to_another_agent(eager, world, flaky):
    flaky["fail"] = 2
    template = published(
        "escalate",
        [step("a", max_retries=1, retry_backoff_seconds=0, escalate_to_role="wf-senior")],
    )
    run = services.run_start(template=template)
    run.refresh_from_db()
    a = StepRun.objects.get(run=run)
    assert run.status == RunStatus.SUCCEEDED
    assert a.assignee.slug == "senior-1" and a.escalations == 1


def test_a_denied_step_escalates_to_a_person_who_can_skip_it(eager, world):
    template = published(
        "deny", [step("a", "notify", escalate_to_human=True), step("b", after=["a"])]
    )
    grants.revoke_grant(target=world.ops["notify"], to=world.clerks)  # after publishing
    run = services.run_start(template=template)
    a = StepRun.objects.get(run=run, step__key="a")
    assert a.status == StepStatus.ESCALATED
    assert a.action.verdict == "deny"
    services.step_skip(step_run=a, by=world.officer, reason="not needed this month")
    run.refresh_from_db()
    assert statuses(run) == {"a": "skipped", "b": "succeeded"}


def test_task_steps_are_pulled_claimed_and_completed_by_agents(eager, world):
    clerk, other = world.agents
    template = published(
        "tasks",
        [step("gather", None, visible_context=["customer"]),
         step("check", None, after=["gather"], input_map={"docs": "$.gather.docs"})],
    )  # fmt: skip
    run = services.run_start(template=template, context={"customer": {"id": 7}, "secret": 1})
    task = services.task_next(agent=clerk)
    assert task is not None and task.step.key == "gather"
    assert services.task_next(agent=other) is None  # claimed: nobody else gets it
    seen = services.task_context(agent=clerk, step_run_id=task.pk)
    assert seen == {"input": {}, "context": {"customer": {"id": 7}}}
    services.task_complete(agent=clerk, step_run_id=task.pk, output={"docs": ["id.pdf"]})
    services.task_complete(agent=clerk, step_run_id=task.pk, output={"docs": ["id.pdf"]})  # retry
    check = services.task_next(agent=clerk)
    assert check.input == {"docs": ["id.pdf"]}
    services.task_handoff(agent=clerk, step_run_id=check.pk, to=other, reason="my shift ends")
    assert services.task_next(agent=clerk) is None
    check = services.task_next(agent=other)
    services.task_complete(agent=other, step_run_id=check.pk, output={"ok": True})
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert "handoff" in set(run.events.values_list("kind", flat=True))


def test_paused_run_starts_nothing_until_resumed(eager, world):
    template = published("pause", [step("a", None), step("b", after=["a"])])
    run = services.run_start(template=template)
    services.run_pause(run=run, by=world.officer, reason="audit")
    task = services.task_next(agent=world.agents[0])
    assert task is None  # a paused run offers nothing
    services.run_resume(run=run, by=world.officer)
    task = services.task_next(agent=world.agents[0])
    services.task_complete(agent=world.agents[0], step_run_id=task.pk, output={})
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED


def test_cancelled_run_cancels_its_waiting_approval(eager, world):
    run = services.run_start(template=approval_template(), context={"amount": 99999})
    post = StepRun.objects.get(run=run, step__key="post")
    services.run_cancel(run=run, by=world.officer, reason="duplicate invoice")
    post.refresh_from_db()
    post.action.refresh_from_db()
    assert post.status == StepStatus.CANCELLED and post.action.status == "cancelled"
    assert post.action.approval.status == "cancelled"
    assert Run.objects.get(pk=run.pk).status == RunStatus.CANCELLED


def test_a_step_that_fails_the_run_cancels_its_parallel_siblings(eager, world):
    from tests.factories import make_role

    grants.grant(target=world.ops["extract"], to=make_role("nobody-role"))  # but no agents
    template = published("siblings", [step("a", role="nobody-role"), step("b", None)])
    run = services.run_start(template=template)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert statuses(run) == {"a": "failed", "b": "cancelled"}


def test_a_killed_agents_completed_step_is_still_compensated_by_its_role(eager, world):
    from interventions import services as intervention

    clerk = world.agents[0]
    template = published(
        "undo",
        [step("post", "post-invoice", input_map={"amount": "$.amount"},
              compensation_operation="erp.void-invoice",
              compensation_input_map={"amount": "$.amount"}),
         step("wait", None, after=["post"])],
    )  # fmt: skip
    run = services.run_start(template=template, context={"amount": 9})
    post = StepRun.objects.get(run=run, step__key="post")
    assert post.status == StepStatus.SUCCEEDED
    intervention.agent_kill(agent=post.assignee, by=world.officer, reason="compromised")
    task = services.task_next(agent=world.agents[1] if post.assignee == clerk else clerk)
    services.task_fail(agent=task.assignee, step_run_id=task.pk, message="no", retryable=False)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    void = ConnectorCall.objects.get(operation__slug="void-invoice")
    assert void.params == {"amount": 9}
    post.refresh_from_db()
    assert post.status == StepStatus.COMPENSATED
