"""How a run moves on after a step succeeds: along a linear stretch by the one row of the
next step; anywhere else by every step run still open. Steps run in this process, in the
test's transaction, which never commits, so nothing is dispatched."""

from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.workflows.fixtures import build_world, chain, diamond, published, step
from workflows import selectors, services
from workflows.models import RunStatus, StepStatus


def successors(template) -> dict[str, str | None]:
    steps = selectors.template_steps(template).values()
    return {
        s.key: getattr(selectors.sole_successor(template, s), "key", None)
        for s in sorted(steps, key=lambda s: s.position)
    }


def test_the_sole_successor_is_the_one_dependent_that_waits_for_nothing_else(db):
    build_world()
    assert successors(chain("line", 3)) == {"s0": "s1", "s1": "s2", "s2": None}
    # a fans out to b and c; d waits for both: no step has a sole successor.
    assert successors(diamond()) == {"a": None, "b": None, "c": None, "d": None}
    fan_in = published("fan-in", [step("a"), step("b"), step("c", after=["a", "b", "a"])])
    assert successors(fan_in) == {"a": None, "b": None, "c": None}
    tail = published("tail", [step("a"), step("b", after=["a", "a"]), step("c", after=["b"]),
                              step("d", after=["b"])])  # fmt: skip
    assert successors(tail) == {"a": "b", "b": None, "c": None, "d": None}


def _execute(run, key: str) -> list[str]:
    """Execute the step ``key`` of ``run`` (ready); the SQL of what it ran."""
    step_run = run.step_runs.get(step__key=key)
    assert step_run.status == StepStatus.READY, step_run.status
    with CaptureQueriesContext(connection) as ctx:
        services.step_execute(step_run_id=step_run.pk)
    return [q["sql"] for q in ctx.captured_queries]


def _reads_every_open_step_run(sql: list[str]) -> bool:
    return any('"workflows_steprun"' in s and "NOT" in s and s.startswith("SELECT") for s in sql)


def test_a_linear_stretch_moves_on_by_one_row_and_the_last_step_reads_them_all(db):
    build_world()
    run = services.run_start(template=chain("line", 5))
    for n in range(4):
        sql = _execute(run, f"s{n}")
        assert not _reads_every_open_step_run(sql), n
        assert run.step_runs.get(step__key=f"s{n + 1}").status == StepStatus.READY
    assert _reads_every_open_step_run(_execute(run, "s4"))  # no successor: is the run done?
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert set(run.step_runs.values_list("status", flat=True)) == {StepStatus.SUCCEEDED}
    assert [e for e in run.events.values_list("kind", flat=True) if e == "run_succeeded"]


def test_a_successor_whose_condition_fails_is_skipped_by_the_whole_advance(db):
    build_world()
    template = chain("cond", 3, s1={"run_when": "amount > 1000"})
    run = services.run_start(template=template, context={"amount": 5})
    assert _reads_every_open_step_run(_execute(run, "s0"))
    assert run.step_runs.get(step__key="s1").status == StepStatus.SKIPPED
    assert run.step_runs.get(step__key="s2").status == StepStatus.READY


def test_a_successor_no_longer_pending_leaves_it_to_the_whole_advance(db):
    """A person skipped the next step while this one ran: the run goes on past it."""
    build_world()
    run = services.run_start(template=chain("skipped", 3))
    run.step_runs.filter(step__key="s1").update(status=StepStatus.SKIPPED)
    assert _reads_every_open_step_run(_execute(run, "s0"))
    assert run.step_runs.get(step__key="s2").status == StepStatus.READY


def test_parallel_branches_and_a_join_use_the_whole_advance(db):
    build_world()
    run = services.run_start(template=diamond(), context={"amount": 120})
    assert _reads_every_open_step_run(_execute(run, "a"))
    assert {run.step_runs.get(step__key=k).status for k in "bc"} == {StepStatus.READY}
    _execute(run, "b")
    assert run.step_runs.get(step__key="d").status == StepStatus.PENDING  # c still runs
    _execute(run, "c")
    assert run.step_runs.get(step__key="d").status == StepStatus.READY
