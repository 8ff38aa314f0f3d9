"""A person's retry starts a step afresh; an action that ends after its run was cancelled is
undone by its step's compensation (or the run says it was not)."""

import pytest

from approvals import services as approvals
from autonomy import connectors
from autonomy.models import AuditRecord, ConnectorCall
from tests.approvals.conftest import approver
from tests.workflows.fixtures import published, step
from workflows import services
from workflows.models import Run, RunStatus, StepRun, StepStatus


def kinds(run: Run, kind: str) -> int:
    return run.events.filter(kind=kind).count()


@pytest.fixture
def erp_down(monkeypatch):
    """The ERP answers every call with an error while ``down``, counting the calls."""
    calls = {"n": 0, "down": True}
    ledger = connectors.EXECUTORS["erp"]

    def erp(**kwargs):
        calls["n"] += 1
        if calls["down"]:
            raise connectors.ConnectorError("ERP answered 503")
        return ledger(**kwargs)

    monkeypatch.setitem(connectors.EXECUTORS, "erp", erp)
    return calls


def ladder():
    return published(
        "ladder",
        [step("a", max_retries=1, retry_backoff_seconds=0, escalate_to_role="wf-senior",
              escalate_to_human=True)],
    )  # fmt: skip


def test_a_retried_step_goes_through_its_retries_and_escalation_levels_again(
    eager, world, erp_down
):
    run = services.run_start(template=ladder())
    a = StepRun.objects.get(run=run)
    assert a.status == StepStatus.ESCALATED and a.escalations == 2
    assert erp_down["n"] == 4  # a clerk twice, then the senior twice
    services.step_retry(step_run=a, by=world.officer, reason="the ERP is back")
    a.refresh_from_db()
    assert a.status == StepStatus.ESCALATED and a.escalations == 2, a.error
    assert erp_down["n"] == 8  # the whole ladder once more: clerk, clerk, senior, senior
    assert kinds(run, "retry_scheduled") == 4
    assert kinds(run, "escalated") == 2 and kinds(run, "escalated_to_person") == 2
    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING


def test_a_retried_step_starts_with_the_assignee_its_template_names(eager, world, erp_down):
    run = services.run_start(template=ladder())
    a = StepRun.objects.get(run=run)
    assert a.assignee.slug == "senior-1"  # where the escalation left it
    erp_down["down"] = False
    services.step_retry(step_run=a, by=world.officer)
    a.refresh_from_db()
    assert a.status == StepStatus.SUCCEEDED and a.assignee in world.agents
    assert (a.attempt, a.escalations) == (1, 0)
    assert Run.objects.get(pk=run.pk).status == RunStatus.SUCCEEDED


def test_a_retry_is_recorded_with_who_did_it_and_the_budget_it_renewed(eager, world, erp_down):
    run = services.run_start(template=ladder())
    a = StepRun.objects.get(run=run)
    services.step_retry(step_run=a, by=world.officer, reason="the ERP is back")
    event = run.events.get(kind="step_retried")
    assert event.actor == world.officer.username and event.step_run_id == a.pk
    assert event.data["spent"] == {"attempts": 2, "escalations": 2, "from": "senior-1"}
    record = AuditRecord.objects.get(kind="run_step_retried")
    assert record.actor == world.officer.username
    assert record.payload["step_run"] == str(a.pk)


# --- a cancel while the step's action is executing ------------------------------------------


def posting(**extra):
    return published(
        "posting",
        [step("post", "post-invoice", input_map={"amount": "$.amount"}, **extra),
         step("after", "notify", after=["post"])],
    )  # fmt: skip


def undone_by_void(**extra):
    return posting(
        compensation_operation="erp.void-invoice",
        compensation_input_map={"amount": "$.amount", "undo": "$.output.receipt"},
        **extra,
    )


def cancel(world):
    def hook():
        services.run_cancel(run=Run.objects.get(), by=world.officer, reason="duplicate invoice")

    return hook


def test_an_action_that_succeeds_after_its_run_was_cancelled_is_compensated_once(
    eager, world, during_call
):
    during_call["post-invoice"] = cancel(world)
    run = services.run_start(template=undone_by_void(), context={"amount": 70})
    run.refresh_from_db()
    post = StepRun.objects.get(run=run, step__key="post")
    assert run.status == RunStatus.CANCELLED
    assert post.action.status == "succeeded"  # the cancel came while it executed
    posted = ConnectorCall.objects.get(operation__slug="post-invoice")
    void = ConnectorCall.objects.get(operation__slug="void-invoice")
    assert void.params == {"amount": 70, "undo": posted.pk}
    assert void.idempotency_key == str(post.compensation_action_id)
    assert post.status == StepStatus.COMPENSATED
    assert kinds(run, "compensating_after_cancel") == 1 and kinds(run, "step_compensated") == 1
    assert not ConnectorCall.objects.filter(operation__slug="notify").exists()

    services.step_execute(step_run_id=post.pk)  # a redelivered task
    assert ConnectorCall.objects.filter(operation__slug="void-invoice").count() == 1
    assert kinds(run, "compensating_after_cancel") == 1 and kinds(run, "step_compensated") == 1


def test_an_approved_action_executed_elsewhere_after_the_cancel_is_compensated(
    eager, world, during_call
):
    run = services.run_start(template=undone_by_void(approval="always"), context={"amount": 70})
    post = StepRun.objects.get(run=run, step__key="post")
    assert post.status == StepStatus.WAITING_APPROVAL
    during_call["post-invoice"] = cancel(world)
    approvals.approval_decide(
        request_id=post.action.approval.pk, approver=approver("boss"), verdict="approve",
        channel="inbox",
    )  # fmt: skip
    post.refresh_from_db()
    assert Run.objects.get(pk=run.pk).status == RunStatus.CANCELLED
    assert post.action.status == "succeeded" and post.status == StepStatus.COMPENSATED
    assert ConnectorCall.objects.filter(operation__slug="void-invoice").count() == 1


def test_an_action_that_ended_while_the_run_was_paused_is_compensated_when_it_is_cancelled(
    eager, world, during_call
):
    during_call["post-invoice"] = lambda: services.run_pause(
        run=Run.objects.get(), by=world.officer, reason="audit"
    )
    run = services.run_start(template=undone_by_void(), context={"amount": 70})
    post = StepRun.objects.get(run=run, step__key="post")
    assert post.status == StepStatus.RUNNING and post.action.status == "succeeded"
    services.run_cancel(run=run, by=world.officer, reason="duplicate invoice")
    post.refresh_from_db()
    assert post.status == StepStatus.COMPENSATED
    assert ConnectorCall.objects.filter(operation__slug="void-invoice").count() == 1


def test_an_effect_after_a_cancel_that_nothing_can_undo_is_shown_on_the_timeline(
    eager, world, during_call
):
    during_call["post-invoice"] = cancel(world)
    run = services.run_start(template=posting(), context={"amount": 70})
    post = StepRun.objects.get(run=run, step__key="post")
    assert post.status == StepStatus.CANCELLED and post.action.status == "succeeded"
    event = run.events.get(kind="effect_not_compensated")
    assert event.step_run_id == post.pk and event.data["action_id"] == str(post.action_id)
    assert "post-invoice" in event.message and "no compensation" in event.message
    assert AuditRecord.objects.filter(kind="run_effect_not_compensated").count() == 1
    assert not ConnectorCall.objects.filter(operation__slug="void-invoice").exists()

    services.step_execute(step_run_id=post.pk)  # a redelivered task says it once
    assert kinds(run, "effect_not_compensated") == 1
