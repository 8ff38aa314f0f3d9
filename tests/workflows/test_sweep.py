"""The clock's work (Celery beat): lost dispatches and expired task leases are recovered."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from autonomy import actions
from autonomy import services as kernel
from tests.workflows.fixtures import published, step
from workflows import services
from workflows.models import Run, RunStatus, StepRun, StepStatus


def test_a_ready_step_whose_message_was_lost_is_dispatched_again(world, eager):
    from config.celery import app

    app.conf.task_always_eager = False  # the first dispatch goes to a broker nobody reads
    run = services.run_start(template=published("lost", [step("a")]))
    assert StepRun.objects.get(run=run).status == StepStatus.READY
    app.conf.task_always_eager = True
    assert services.workflows_sweep()["redispatched"] == 0  # not stale yet
    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        assert services.workflows_sweep()["redispatched"] == 1
    assert Run.objects.get(pk=run.pk).status == RunStatus.SUCCEEDED


def test_a_claimed_task_whose_agent_went_away_is_offered_again(world):
    clerk, other = world.agents
    run = services.run_start(template=published("lease", [step("t", None, timeout_seconds=30)]))
    task = services.task_next(agent=clerk)
    assert services.task_next(agent=other) is None
    with time_machine.travel(timezone.now() + timedelta(seconds=31)):
        assert services.workflows_sweep()["tasks_reoffered"] == 1
        again = services.task_next(agent=other)
    assert again.pk == task.pk and again.assignee == other
    assert "task_lease_expired" in set(run.events.values_list("kind", flat=True))


def test_a_handed_off_task_whose_lease_runs_out_stays_with_the_agent_it_was_given_to(world):
    clerk, other = world.agents
    run = services.run_start(template=published("kept", [step("t", None, timeout_seconds=30)]))
    task = services.task_next(agent=clerk)
    services.task_handoff(agent=clerk, step_run_id=task.pk, to=other, reason="French")
    services.task_claim(agent=other, step_run_id=task.pk)
    with time_machine.travel(timezone.now() + timedelta(seconds=31)):
        assert services.workflows_sweep()["tasks_reoffered"] == 1
        assert services.task_next(agent=clerk) is None  # not back to the role
        assert services.task_next(agent=other).pk == task.pk
    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING


def test_a_task_whose_leases_keep_running_out_stops_being_offered_and_fails(world):
    clerk, other = world.agents
    run = services.run_start(
        template=published("flaky", [step("t", None, timeout_seconds=30, max_retries=1)])
    )
    started = timezone.now()
    assert services.task_next(agent=clerk).attempt == 1
    with time_machine.travel(started + timedelta(seconds=31)):
        assert services.workflows_sweep()["tasks_reoffered"] == 1  # the retry
        assert services.task_next(agent=other).attempt == 2
    with time_machine.travel(started + timedelta(seconds=62)):
        counts = services.workflows_sweep()
        assert counts["tasks_reoffered"] == 0 and counts["timed_out"] == 1
        assert services.task_next(agent=clerk) is None
    step_run = StepRun.objects.get(run=run)
    assert step_run.status == StepStatus.FAILED and step_run.error["code"] == "task_timeout"
    # The run fails: it compensates what its done steps did (none here), then ends failed.
    assert Run.objects.get(pk=run.pk).status in {RunStatus.COMPENSATING, RunStatus.FAILED}


# --- steps whose worker died (autonomy.liveness) ---------------------------------------------


class WorkerKilled(BaseException):
    """The worker process died in the middle of a connector call."""


def claimed_by(worker: str, key: str) -> StepRun:
    """A run whose one operation step a worker claimed (its action executing) and never
    finished: what a worker killed in the middle of the step leaves."""
    from autonomy.models import ActionStatus
    from config.celery import app

    app.conf.task_always_eager = False  # the first dispatch goes to a broker nobody reads
    try:
        run = services.run_start(template=published(key, [step("a", timeout_seconds=300)]))
    finally:
        app.conf.task_always_eager = True
    perform = actions.action_perform

    def killed(**kwargs):
        raise WorkerKilled

    actions.action_perform = killed
    try:
        with pytest.raises(WorkerKilled):
            services.step_execute(step_run_id=StepRun.objects.get(run=run).pk)
    finally:
        actions.action_perform = perform
    step_run = StepRun.objects.select_related("action").get(run=run)
    assert step_run.status == StepStatus.RUNNING
    assert step_run.action.status == ActionStatus.EXECUTING
    StepRun.objects.filter(pk=step_run.pk).update(worker=worker)
    return StepRun.objects.get(pk=step_run.pk)


def test_a_step_whose_worker_stopped_beating_is_taken_back_before_its_lease_ends(world, eager):
    step_run = claimed_by("host-a:101", "lost-worker")
    kernel.worker_beat(name="host-a:101")
    assert services.workflows_sweep()["worker_lost"] == 0  # it beats: left alone
    later = timezone.now() + timedelta(seconds=21)  # no beat for longer than the window
    with time_machine.travel(later):
        counts = services.workflows_sweep()
    assert (counts["worker_lost"], counts["lease_expired"]) == (1, 0)
    step_run.refresh_from_db()
    assert step_run.status == StepStatus.SUCCEEDED  # executed again (eager here)
    assert step_run.action.attempts == 2
    lost = step_run.run.events.get(kind="worker_lost")
    assert lost.data["worker"] == "host-a:101" and "host-a:101 stopped" in lost.message


def test_a_step_whose_worker_has_no_heartbeat_row_is_taken_back_at_once(world, eager):
    step_run = claimed_by("host-b:202", "no-row")  # killed before the sweep ever saw it
    assert services.workflows_sweep()["worker_lost"] == 1
    assert Run.objects.get(pk=step_run.run_id).status == RunStatus.SUCCEEDED


def test_a_step_no_worker_named_waits_for_its_lease(world, eager):
    step_run = claimed_by("", "no-worker")  # claimed outside a worker (tests, eager mode)
    assert services.workflows_sweep()["worker_lost"] == 0
    assert StepRun.objects.get(pk=step_run.pk).status == StepStatus.RUNNING
    with time_machine.travel(timezone.now() + timedelta(seconds=301)):
        assert services.workflows_sweep()["lease_expired"] == 1
    assert Run.objects.get(pk=step_run.run_id).status == RunStatus.SUCCEEDED
