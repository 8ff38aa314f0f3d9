"""Which agent of a step's role gets the step when it becomes ready. Steps are made ready in
this process inside the test's transaction, which never commits, so nothing is dispatched."""

from agents.models import Agent, AgentStatus
from tests.workflows.fixtures import build_world, published, step
from workflows import services


def assignees(run) -> dict[str, str]:
    return {
        sr.step.key: sr.assignee.slug for sr in run.step_runs.select_related("step", "assignee")
    }


def parallel(key: str):
    """Three steps of the clerk role with no dependencies: all ready at the start."""
    return published(key, [step("a"), step("b"), step("c", "notify")])


def test_a_ready_step_goes_to_the_least_busy_agent_of_its_role_and_ties_go_by_slug(db):
    build_world(clerks=2)

    run = services.run_start(template=parallel("three"))

    assert assignees(run) == {"a": "clerk-0", "b": "clerk-1", "c": "clerk-0"}


def test_work_in_flight_of_other_runs_counts_and_finished_work_does_not(db):
    build_world(clerks=2)
    template = parallel("three")
    services.run_start(template=template)  # clerk-0 has two steps in flight, clerk-1 one
    services.run_start(template=template)  # then clerk-1 takes two, clerk-0 one: 3 and 3

    first = services.run_start(template=template)
    assert assignees(first) == {"a": "clerk-0", "b": "clerk-1", "c": "clerk-0"}

    Agent.objects.filter(slug="clerk-0").get().step_runs.update(status="succeeded")
    run = services.run_start(template=template)
    assert assignees(run) == {"a": "clerk-0", "b": "clerk-0", "c": "clerk-0"}


def test_a_paused_agent_gets_no_new_steps(db):
    build_world(clerks=2)
    Agent.objects.filter(slug="clerk-0").update(status=AgentStatus.PAUSED)

    run = services.run_start(template=parallel("three"))

    assert set(assignees(run).values()) == {"clerk-1"}


def test_a_step_nobody_active_can_take_fails_the_run(db):
    build_world(clerks=2)
    Agent.objects.update(status=AgentStatus.PAUSED)

    run = services.run_start(template=parallel("three"))

    run.refresh_from_db()
    first = run.step_runs.get(step__key="a")
    assert first.status == "failed" and first.assignee is None
    assert first.error["code"] == "no_active_agent"
    assert run.status == "compensating"
    assert run.events.filter(kind="step_failed", step_run=first).exists()


def test_a_task_step_is_offered_to_its_role(db):
    world = build_world(clerks=2)

    run = services.run_start(template=published("task", [step("review", None)]))

    task = run.step_runs.get()
    assert task.status == "waiting_agent" and task.assignee_role == world.clerks
    offered = run.events.get(kind="task_offered")
    assert offered.message == f"review offered to {world.clerks}."
