"""The clock's work (Celery beat): lost dispatches and expired task leases are recovered."""

from datetime import timedelta

import time_machine
from django.utils import timezone

from tests.workflows.fixtures import published, step
from workflows import services
from workflows.models import Run, RunStatus, StepRun, StepStatus


def test_a_ready_step_whose_message_was_lost_is_dispatched_again(world, eager):
    from autonomy.celery import app

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
