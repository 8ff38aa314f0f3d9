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


# --- prepared reads (autonomy.rows.Select) ----------------------------------------------------

RUN_WITH_STEPS = rows.Select(
    lambda key: StepRun.objects.select_related(
        "run__template", "step__operation__connector", "assignee"
    ).filter(pk=key),
    StepRun._meta.pk,
)


def test_select_builds_the_same_objects_as_the_queryset_for_each_key(world):
    template = published("reads", [step("a"), step("b", after=["a"])])
    runs = [services.run_start(template=template, context={"n": n}) for n in range(3)]
    for step_run in StepRun.objects.filter(run__in=runs):
        ours = RUN_WITH_STEPS.get(step_run.pk)
        orms = StepRun.objects.select_related(
            "run__template", "step__operation__connector", "assignee"
        ).get(pk=step_run.pk)
        assert ours is not orms
        assert [getattr(ours, f.attname) for f in StepRun._meta.concrete_fields] == [
            getattr(orms, f.attname) for f in StepRun._meta.concrete_fields
        ]
        assert ours.run.context == orms.run.context and ours.run.template.key == "reads"
        assert ours.step.operation.connector.pk == orms.step.operation.connector.pk
        assert ours.assignee == orms.assignee  # None for the step not ready yet
        assert ours._state.db == "default" and not ours._state.adding


def test_select_answers_none_or_raises_for_a_missing_row(world):
    missing = "7d8b5a4e-0000-4000-8000-000000000000"
    assert RUN_WITH_STEPS.get(missing) is None
    with pytest.raises(StepRun.DoesNotExist):
        RUN_WITH_STEPS.one(missing)


def test_select_for_update_needs_a_transaction_and_the_key_once(world):
    from django.db import transaction

    run = services.run_start(template=published("locks", [step("a")]))
    locking = rows.Select(lambda key: Run.objects.select_for_update().filter(pk=key), Run._meta.pk)
    with pytest.raises(transaction.TransactionManagementError):
        locking.get(run.pk)
    with transaction.atomic():
        assert locking.one(run.pk).pk == run.pk
    twice = rows.Select(lambda key: Run.objects.filter(pk=key, step_runs__run_id=key), Run._meta.pk)
    with pytest.raises(ValueError, match="2 times"):
        twice.get(run.pk)


def test_select_rows_returns_converted_tuples_in_the_querysets_order(world):
    template = published("rows", [step("a"), step("b", after=["a"]), step("c", after=["b"])])
    run = services.run_start(template=template, context={"n": 1})
    values = rows.Select(
        lambda key: (
            StepRun.objects.filter(run_id=key)
            .order_by("-position")
            .values_list("position", "status", "input", "dispatched_at")
        ),
        Run._meta.pk,
    )
    expected = list(
        StepRun.objects.filter(run=run)
        .order_by("-position")
        .values_list("position", "status", "input", "dispatched_at")
    )
    assert values.rows(run.pk) == expected
    assert expected[-1][3] is not None  # a datetime, converted as the ORM converts it
    assert values.rows("7d8b5a4e-0000-4000-8000-000000000000") == []


def test_insert_reads_back_a_generated_key_and_update_if_checks_its_conditions(world):
    from autonomy.models import ActionRequest, ActionStatus, ConnectorCall, Operation

    operation = Operation.objects.first()
    first = ConnectorCall(idempotency_key="k-1", operation=operation, result={"n": 1})
    second = ConnectorCall(idempotency_key="k-2", operation=operation)
    rows.insert(first)
    rows.insert(second)
    assert first.pk is not None and second.pk > first.pk
    assert ConnectorCall.objects.get(pk=first.pk).result == {"n": 1}

    run = services.run_start(template=published("settles", [step("a")]))
    services.step_execute(step_run_id=run.step_runs.get().pk)
    action = ActionRequest.objects.get()
    assert action.status == ActionStatus.SUCCEEDED
    action.status, action.error = ActionStatus.FAILED, {"message": "late"}
    assert not rows.update_if(action, ["status", "error"], status=ActionStatus.EXECUTING)
    assert ActionRequest.objects.get().status == ActionStatus.SUCCEEDED
    assert rows.update_if(action, ["status", "error"], status=ActionStatus.SUCCEEDED)
    assert ActionRequest.objects.values_list("status", "error").get() == (
        "failed",
        {"message": "late"},
    )


def _kinds(run) -> list[str]:
    return list(run.events.order_by("id").values_list("kind", flat=True))


def test_events_of_a_deferred_block_are_inserted_together_at_its_end_in_order(world):
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    run = services.run_start(template=published("later", [step("a")]))
    before = _kinds(run)
    with transaction.atomic(), rows.inserts_deferred():
        with CaptureQueriesContext(connection) as inserted:
            for n in range(3):
                services._event(run, f"note-{n}", "m", answer=n)
        assert inserted.captured_queries == [] and _kinds(run) == before  # not yet
        with pytest.raises(RuntimeError), transaction.atomic():
            services._event(run, "rolled-back", "m")
            raise RuntimeError("the savepoint goes")
        with CaptureQueriesContext(connection) as at_end, rows.inserts_deferred():
            services._event(run, "nested", "m")  # the outer block inserts it
        assert at_end.captured_queries == []
    assert _kinds(run) == [*before, "note-0", "note-1", "note-2", "nested"]
    stored = run.events.filter(kind__startswith="note").order_by("id")
    assert [e.data for e in stored] == [{"answer": 0}, {"answer": 1}, {"answer": 2}]
    assert all(e.created_at is not None for e in stored)


def test_a_deferred_insert_block_that_raises_inserts_nothing_and_rolls_back(world):
    from django.db import transaction

    run = services.run_start(template=published("later-raise", [step("a")]))
    before = _kinds(run)
    with pytest.raises(RuntimeError), transaction.atomic(), rows.inserts_deferred():
        services._event(run, "never", "m")
        Run.objects.filter(pk=run.pk).update(started_by="changed")
        raise RuntimeError("boom")
    assert _kinds(run) == before
    assert Run.objects.get(pk=run.pk).started_by != "changed"


@pytest.mark.django_db(transaction=True)
def test_deferred_inserts_need_a_transaction():
    from django.db import transaction

    with pytest.raises(transaction.TransactionManagementError), rows.inserts_deferred():
        pass
