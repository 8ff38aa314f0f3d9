"""Which agent of a step's role gets the step when it becomes ready. Steps are made ready in
this process inside the test's transaction, which never commits, so nothing is dispatched."""

from agents.models import Agent, AgentStatus
from tests.workflows.fixtures import build_world, chain, published, step
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


def test_the_least_busy_rule_holds_whatever_the_load_the_ties_and_the_agents_status(db):
    """Every step made ready picks its agent by the one rule: the least work in flight, ties
    by slug, active agents only; whatever reads the agent whole for its request."""
    build_world(clerks=3)
    template = parallel("three")
    probes = iter(range(100))

    def next_pick() -> str | None:
        """The agent a new one-step run's step gets; the probe's step then counts no more."""
        run = services.run_start(template=published(f"probe-{next(probes)}", [step("x")]))
        probe = run.step_runs.select_related("assignee").get()
        run.step_runs.update(status="succeeded")
        return probe.assignee.slug if probe.assignee else None

    assert next_pick() == "clerk-0"  # nobody busy: ties by slug
    services.run_start(template=template)  # a step each
    services.run_start(template=template)  # two each
    Agent.objects.get(slug="clerk-0").step_runs.update(status="succeeded")
    assert next_pick() == "clerk-0"  # finished work does not count
    Agent.objects.filter(slug="clerk-0").update(status=AgentStatus.PAUSED)
    assert next_pick() == "clerk-1"  # a paused agent gets nothing; then by slug
    waiting = Agent.objects.get(slug="clerk-1").step_runs.exclude(status="succeeded")
    waiting.update(status="waiting_approval")  # still in flight
    services.run_start(template=published("one", [step("x")]))  # clerk-2 (less busy)
    assert next_pick() == "clerk-2"
    Agent.objects.update(status=AgentStatus.PAUSED)
    assert next_pick() is None  # nobody active: the step fails (no_active_agent)


def test_a_chain_on_a_worker_gives_each_next_step_to_the_least_busy_agent(
    transactional_db, monkeypatch
):
    """The inline path (``step_work``): the next step's agent is picked and read whole when
    the step is made ready, and its claim reads it no more."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from workflows import tasks

    monkeypatch.setattr(tasks.step_execute, "delay", lambda step_run_id: None)
    build_world(clerks=2)
    services.run_start(template=parallel("three"))  # in flight: clerk-0 two, clerk-1 one
    run = services.run_start(template=chain("chain", 3))  # s0: clerk-1 (one in flight)

    with CaptureQueriesContext(connection) as ctx:
        services.step_work(step_run_id=run.step_runs.get(position=0).pk)

    run.refresh_from_db()
    assert run.status == "succeeded"
    # s0 ran, then s1 and s2 were made ready with clerk-1 still the least busy.
    assert assignees(run) == {"s0": "clerk-1", "s1": "clerk-1", "s2": "clerk-1"}
    # What the gate uses of the agent, its role and its unit was read with it: the only
    # statements on them are s0's lock and the picks of s1 and s2 (s1's and s2's claims
    # read the agent no more, and a column left unread and used would be loaded alone).
    agent_tables = ('"agents_agent"', '"agents_role"', '"agents_businessunit"', '"auth_user"')
    sql = [q["sql"] for q in ctx.captured_queries]
    assert len([q for q in sql if any(table in q for table in agent_tables)]) == 3, sql
