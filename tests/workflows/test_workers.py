"""Runs on real Celery workers and the real broker: parallel branches, a worker killed
mid-step, an approval gate inside a run."""

import os
import signal
from datetime import timedelta

import pytest

from approvals import services as approvals
from autonomy.models import ActionRequest, ConnectorCall
from tests.approvals.conftest import approver
from tests.conftest import start_celery_worker, stop_celery_worker, wait_for
from tests.workflows.fixtures import build_world, diamond, published, step
from workflows import services
from workflows.models import Run, RunStatus, StepRun, StepStatus


def finished(run_id):
    run = Run.objects.get(pk=run_id)
    return run if run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED) else None


def story(run) -> str:
    """What the run did, for a failure message."""
    events = run.events.values_list("kind", "message")
    steps = run.step_runs.values_list("step__key", "status", "action__status")
    return f"steps: {list(steps)}\nevents: {list(events)}"


@pytest.fixture
def workers(transactional_db, tmp_path):
    started = []

    def start(name: str, *, args=(), env=None):
        worker = start_celery_worker(tmp_path / f"{name}.log", env=env, args=args)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        stop_celery_worker(worker)


def test_diamond_branches_run_in_parallel_on_two_workers(workers):
    build_world(latency_ms=700)
    one, two = workers("one"), workers("two")
    run = services.run_start(template=diamond(), context={"amount": 10})
    run = wait_for(lambda: finished(run.pk), timeout=60,
                   what=f"the run to finish\n{story(run)}\n{one.log()}\n{two.log()}")  # fmt: skip
    assert run.status == RunStatus.SUCCEEDED
    b, c = (StepRun.objects.select_related("action").get(run=run, step__key=k) for k in "bc")
    # Both branches were executing at the same time: each started before the other finished.
    assert b.action.started_at < c.action.finished_at and c.action.started_at < b.action.finished_at
    a = StepRun.objects.get(run=run, step__key="a")
    d = StepRun.objects.get(run=run, step__key="d")
    assert a.finished_at <= min(b.started_at, c.started_at)
    assert d.started_at >= max(b.finished_at, c.finished_at)


def test_a_worker_killed_mid_step_leaves_one_side_effect_and_the_run_finishes(workers):
    """The killed step is the second of a chain, claimed by the worker in the transaction
    that recorded the first: no message of its own. Its lease (the step's timeout) is 300 s;
    the run finishes within seconds because the worker stopped beating."""
    build_world(latency_ms=2500)  # the ERP answers 2.5 s after it has done the work
    beat = {"AUTONOMY_WORKER_BEAT_SECONDS": "0.5"}
    victim = workers("victim", env=beat)
    template = published("killed", [step("first", "extract"),
                                    step("post", "post-invoice", after=["first"],
                                         timeout_seconds=300, input_map={"amount": "$.amount"}),
                                    step("after", "notify", after=["post"])])  # fmt: skip
    run = services.run_start(template=template, context={"amount": 42})
    post = StepRun.objects.get(run=run, step__key="post")
    # Kill the worker after the ERP did the work and before the step was recorded as done.
    wait_for(lambda: ConnectorCall.objects.filter(operation__slug="post-invoice").exists(),
             timeout=30, what=f"the side effect\n{victim.log()}")  # fmt: skip
    post.refresh_from_db()
    assert post.status == StepStatus.RUNNING
    assert post.worker.endswith(f":{victim.proc.pid}")  # solo pool: the worker's own process
    os.killpg(victim.proc.pid, signal.SIGKILL)
    victim.proc.wait(timeout=10)
    rescuer = workers("rescuer", args=["-B", "-s", str(victim.log_path.parent / "beat")],
                      env={**beat, "AUTONOMY_WORKFLOW_SWEEP_SECONDS": "1",
                           "AUTONOMY_WORKER_LOST_SECONDS": "3"})  # fmt: skip
    run = wait_for(lambda: finished(run.pk), timeout=60,
                   what=f"the run to finish after the kill\n{rescuer.log()}")  # fmt: skip
    assert run.status == RunStatus.SUCCEEDED
    assert ConnectorCall.objects.filter(operation__slug="post-invoice").count() == 1
    post.refresh_from_db()
    assert post.action.attempts == 2  # executed again after the kill, without a second effect
    assert (
        ActionRequest.objects.filter(idempotency_key__startswith=f"step-run:{post.pk}:").count()
        == 1
    )
    kinds = set(run.events.values_list("kind", flat=True))
    assert "worker_lost" in kinds and "lease_expired" not in kinds
    assert post.finished_at - post.started_at < timedelta(seconds=60)  # not the 300 s lease


def approval_run():
    build_world()
    template = published(
        "gated",
        [step("post", "post-invoice", input_map={"amount": "$.amount"}, approval="when",
              approval_when="amount > 10000", compensation_operation="erp.void-invoice",
              compensation_input_map={"amount": "$.amount"}),
         step("notify", "notify", after=["post"], approval="always")],
    )  # fmt: skip
    return services.run_start(template=template, context={"amount": 20000})


def test_run_waits_for_approval_and_resumes_on_the_worker(workers):
    worker = workers("w")
    run = approval_run()
    post = wait_for(lambda: StepRun.objects.filter(run=run, step__key="post",
                                                   status=StepStatus.WAITING_APPROVAL).first(),
                    what=f"the approval wait\n{worker.log()}")  # fmt: skip
    boss = approver("boss")
    approvals.approval_decide(request_id=post.action.approval.pk, approver=boss,
                              verdict="approve", channel="inbox")  # fmt: skip
    notify = wait_for(lambda: StepRun.objects.filter(run=run, step__key="notify",
                                                     status=StepStatus.WAITING_APPROVAL).first(),
                      what=f"the second approval\n{worker.log()}")  # fmt: skip
    approvals.approval_decide(request_id=notify.action.approval.pk, approver=boss,
                              verdict="approve", channel="inbox")  # fmt: skip
    run = wait_for(lambda: finished(run.pk), what=f"the run to finish\n{worker.log()}")
    assert run.status == RunStatus.SUCCEEDED
    assert ConnectorCall.objects.count() == 2


def test_rejection_inside_a_run_compensates_on_the_worker(workers):
    worker = workers("w")
    run = approval_run()
    post = wait_for(lambda: StepRun.objects.filter(run=run, step__key="post",
                                                   status=StepStatus.WAITING_APPROVAL).first(),
                    what=f"the approval wait\n{worker.log()}")  # fmt: skip
    boss = approver("boss")
    approvals.approval_decide(request_id=post.action.approval.pk, approver=boss,
                              verdict="approve", channel="inbox")  # fmt: skip
    notify = wait_for(lambda: StepRun.objects.filter(run=run, step__key="notify",
                                                     status=StepStatus.WAITING_APPROVAL).first(),
                      what=f"the second approval\n{worker.log()}")  # fmt: skip
    approvals.approval_decide(request_id=notify.action.approval.pk, approver=boss,
                              verdict="reject", channel="inbox", comment="wrong vendor")  # fmt: skip
    run = wait_for(lambda: finished(run.pk), what=f"the run to fail\n{worker.log()}")
    assert run.status == RunStatus.FAILED
    post.refresh_from_db()
    assert post.status == StepStatus.COMPENSATED
    void = ConnectorCall.objects.get(operation__slug="void-invoice")
    assert void.params == {"amount": 20000}
