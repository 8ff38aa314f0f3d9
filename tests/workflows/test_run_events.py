"""A run's timeline: each event keeps its time, actor and data; the events of one
transaction are inserted together, in the order they happened, and only if it commits."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.workflows.fixtures import published, step
from workflows import services
from workflows.models import RunEvent


def kinds(run) -> list[str]:
    return list(run.events.order_by("id").values_list("kind", flat=True))


def test_an_event_keeps_its_time_actor_and_data_and_at_most_500_characters(world):
    run = services.run_start(template=published("events", [step("a", None)]))
    services.run_pause(run=run, by=world.officer, reason="x" * 600)
    event = run.events.get(kind="paused")
    assert event.created_at is not None and event.created_at >= run.created_at
    assert event.actor == world.officer.username
    assert len(event.message) == 500 and event.message.startswith(f"{world.officer.username}: x")


def test_the_events_of_one_transaction_are_inserted_together_in_order(world):
    template = published("offers", [step("a", None), step("b", None), step("c", None)])
    with CaptureQueriesContext(connection) as ctx:
        run = services.run_start(template=template)
    inserts = [
        q for q in ctx.captured_queries if q["sql"].startswith('INSERT INTO "workflows_runevent"')
    ]
    assert len(inserts) == 1
    assert kinds(run) == ["run_started", "task_offered", "task_offered", "task_offered"]
    offered = run.events.filter(kind="task_offered").order_by("id")
    assert [e.step_run.step.key for e in offered] == ["a", "b", "c"]
    assert all(e.data == {} for e in offered)


def test_a_step_records_its_request_then_its_success_with_the_context_change(world):
    run = services.run_start(template=published("diff", [step("a")]), context={"n": 1})
    services.step_execute(step_run_id=run.step_runs.get().pk)
    assert kinds(run) == ["run_started", "action_requested", "step_succeeded", "run_succeeded"]
    done = run.events.get(kind="step_succeeded")
    assert done.data["context_diff"]["key"] == "a" and done.data["context_diff"]["before"] is None
    requested = run.events.get(kind="action_requested")
    assert requested.data["attempt"] == 1 and requested.actor == done.step_run.assignee.slug


def test_a_use_case_that_fails_writes_no_event_and_changes_nothing(world, monkeypatch):
    from autonomy import audit

    run = services.run_start(template=published("fails", [step("a", None)]))
    before = kinds(run)

    def audit_down(**kwargs):
        raise RuntimeError("the audit chain is unavailable")

    monkeypatch.setattr(audit, "append", audit_down)
    with pytest.raises(RuntimeError):
        services.run_pause(run=run, by=world.officer, reason="stop")
    assert kinds(run) == before
    run.refresh_from_db()
    assert run.status == "running"
    assert not RunEvent.objects.filter(kind="paused").exists()
