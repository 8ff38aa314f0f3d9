"""The step path's prepared writes (autonomy.rows) do what save() and create() did."""

import pytest
from django.db import DatabaseError

from autonomy import rows
from tests.workflows.fixtures import published, step
from workflows import services
from workflows.models import Run, StepRun, StepStatus


def test_update_writes_only_the_named_fields_and_refuses_a_missing_row(world):
    run = services.run_start(template=published("writes", [step("a")]), context={"n": 1})
    step_run = run.step_runs.get()
    step_run.status, step_run.output = StepStatus.SUCCEEDED, {"ok": True, "n": [1, 2]}
    step_run.attempt = 99  # not named: stays as stored
    rows.update(step_run, ["status", "output"])
    stored = StepRun.objects.get(pk=step_run.pk)
    assert (stored.status, stored.output, stored.attempt) == (
        "succeeded",
        {"ok": True, "n": [1, 2]},
        0,
    )

    run.context = {"n": 2, "nested": {"é": None}}
    rows.update(run, ["context"])
    assert Run.objects.get(pk=run.pk).context == {"n": 2, "nested": {"é": None}}

    StepRun.objects.filter(pk=step_run.pk).delete()
    with pytest.raises(DatabaseError):
        rows.update(step_run, ["status"])


def test_event_is_stored_with_its_time_and_data(world):
    run = services.run_start(template=published("events", [step("a")]))
    step_run = run.step_runs.get()
    services._event(run, "note", "x" * 600, step_run=step_run, actor="someone", answer=[42])
    event = run.events.get(kind="note")
    assert event.created_at is not None and event.step_run_id == step_run.pk
    assert (event.actor, len(event.message), event.data) == ("someone", 500, {"answer": [42]})
