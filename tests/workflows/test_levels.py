"""A workflow template's autonomy level applies to its steps: a shadow step is decided and
recorded, never executed, and the run goes on."""

from approvals import services as approvals
from approvals.models import ApprovalRequest
from autonomy.models import (
    ActionRequest,
    AuditRecord,
    AutonomyLevel,
    AutonomySetting,
    ConnectorCall,
)
from tests.approvals.conftest import approver
from tests.workflows.fixtures import diamond, published, step
from workflows import services
from workflows.models import RunStatus, StepRun, StepStatus


def test_a_shadow_template_runs_every_step_without_executing_one(eager, world):
    template = diamond("shadowed-diamond")
    AutonomySetting.objects.create(level=AutonomyLevel.SHADOW, template_key=template.key)

    run = services.run_start(template=template, context={"amount": 120}, by=world.officer)

    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    steps = StepRun.objects.filter(run=run)
    assert {s.status for s in steps} == {StepStatus.SUCCEEDED}
    assert all(s.output["executed"] is False for s in steps)
    actions = ActionRequest.objects.filter(step_runs__run=run)
    assert set(actions.values_list("status", "autonomy_level")) == {("shadowed", "shadow")}
    assert not ConnectorCall.objects.exists()
    assert AuditRecord.objects.filter(kind="action_decision").count() == 4


def test_another_templates_steps_are_not_shadowed(eager, world):
    AutonomySetting.objects.create(level=AutonomyLevel.SHADOW, template_key="some-other")

    run = services.run_start(template=diamond(), context={"amount": 120}, by=world.officer)

    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert ConnectorCall.objects.count() == 4


def test_a_step_waiting_for_a_person_is_shadowed_when_its_template_moved_to_shadow(eager, world):
    template = published(
        "approve-then-post",
        [step("post", "post-invoice", input_map={"amount": "$.amount"}, approval="always")],
    )
    run = services.run_start(template=template, context={"amount": 120}, by=world.officer)
    post = StepRun.objects.get(run=run, step__key="post")
    assert post.status == StepStatus.WAITING_APPROVAL
    AutonomySetting.objects.create(level=AutonomyLevel.SHADOW, template_key=template.key)

    approvals.approval_decide(
        request_id=ApprovalRequest.objects.get(action=post.action).pk,
        approver=approver("boss"),
        verdict="approve",
        channel="inbox",
    )

    post.refresh_from_db()
    run.refresh_from_db()
    assert post.action.status == "shadowed" and post.output["executed"] is False
    assert run.status == RunStatus.SUCCEEDED
    assert not ConnectorCall.objects.exists()
