"""Executing one step costs a constant number of queries: not more for a longer template, nor
with more runs in flight. Steps run in this process inside the test's transaction, which never
commits, so no task is dispatched."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.models import Agent
from tests.workflows.fixtures import build_world, published, step
from workflows import services
from workflows.models import StepStatus


@pytest.fixture
def clerk_world(db):
    world = build_world(clerks=1)
    Agent.objects.update(max_actions_per_minute=100_000)
    return world


def linear(key: str, steps: int):
    keys = [f"s{n:02d}" for n in range(steps)]
    return published(key, [step(k, after=keys[n - 1 : n]) for n, k in enumerate(keys)])


def first_step_queries(template) -> int:
    """Queries of executing the first step of a new run of ``template`` (it succeeds and
    makes the second step ready)."""
    run = services.run_start(template=template)
    first = run.step_runs.get(position=0)
    assert first.status == StepStatus.READY
    with CaptureQueriesContext(connection) as ctx:
        services.step_execute(step_run_id=first.pk)
    first.refresh_from_db()
    assert first.status == StepStatus.SUCCEEDED
    assert run.step_runs.get(position=1).status == StepStatus.READY
    return len(ctx.captured_queries)


def test_a_step_of_a_40_step_template_takes_as_many_queries_as_one_of_a_5_step_template(
    clerk_world,
):
    short, long = linear("short", 5), linear("long", 40)
    first_step_queries(short)  # first use: caches of the gate and the registry fill

    assert first_step_queries(long) == first_step_queries(short) > 0


def test_a_step_takes_as_many_queries_beside_50_running_runs_as_beside_one(clerk_world):
    template = linear("five", 5)
    first_step_queries(template)
    beside_one = first_step_queries(template)
    for _ in range(48):
        services.run_start(template=template)

    assert first_step_queries(template) == beside_one > 0
