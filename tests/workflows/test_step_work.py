"""A worker runs a run's next step at once when it is the only one made ready, and sends
parallel branches (and everything past its budget) through the broker."""

import uuid

import pytest

from autonomy import actions
from tests.workflows.fixtures import chain, diamond, published, step
from workflows import services
from workflows.models import RunStatus, StepStatus


@pytest.fixture
def sent(monkeypatch):
    """Step runs sent to the broker (not published: the test plays the worker)."""
    from workflows import tasks

    ids = []
    monkeypatch.setattr(tasks.step_execute, "delay", lambda i: ids.append(uuid.UUID(i)))
    monkeypatch.setattr(
        tasks.step_execute, "apply_async", lambda args, **kw: ids.append(uuid.UUID(args[0]))
    )
    return ids


def test_a_chain_runs_to_its_end_in_one_task(world, sent):
    run = services.run_start(template=chain("chain", 4))
    first = run.step_runs.get(position=0)
    assert sent == [first.pk]  # run_start sends the first step
    services.step_work(step_run_id=first.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert sent == [first.pk]  # steps 2-4 ran at once, nothing else was sent
    assert set(run.step_runs.values_list("status", flat=True)) == {StepStatus.SUCCEEDED}
    assert run.step_runs.filter(action__status="succeeded").count() == 4  # each through the gate


def test_parallel_branches_are_sent_not_run_inline(world, sent):
    run = services.run_start(template=diamond(), context={"amount": 120})
    a = run.step_runs.get(step__key="a")
    services.step_work(step_run_id=a.pk)
    b, c = run.step_runs.get(step__key="b"), run.step_runs.get(step__key="c")
    assert sent == [a.pk, b.pk, c.pk]
    assert b.status == c.status == StepStatus.READY
    services.step_work(step_run_id=b.pk)
    services.step_work(step_run_id=c.pk)  # d: the only step this made ready, run at once
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert len(sent) == 3


def test_past_its_budget_the_next_step_is_sent(world, sent, settings):
    settings.AUTONOMY_WORKFLOW_INLINE_STEPS = 1
    run = services.run_start(template=chain("budget", 4))
    first = run.step_runs.get(position=0)
    services.step_work(step_run_id=first.pk)
    third = run.step_runs.get(position=2)
    assert third.status == StepStatus.READY
    assert sent == [first.pk, third.pk]
    assert run.step_runs.get(position=1).status == StepStatus.SUCCEEDED


def test_inside_a_callers_transaction_nothing_runs_before_commit(world, sent):
    from django.db import transaction

    run = services.run_start(template=chain("atomic", 3))
    first = run.step_runs.get(position=0)
    with transaction.atomic():
        services.step_work(step_run_id=first.pk)
        assert sent == [first.pk]  # the second step waits for the commit
    second = run.step_runs.get(position=1)
    assert second.status == StepStatus.READY
    assert sent == [first.pk, second.pk]


def test_a_step_held_for_approval_ends_the_chain_and_is_not_sent(world, sent):
    template = published(
        "held",
        [step("a"), step("b", after=["a"], approval="always"), step("c", after=["b"])],
    )
    run = services.run_start(template=template)
    first = run.step_runs.get(position=0)
    services.step_work(step_run_id=first.pk)
    held = run.step_runs.get(position=1)
    assert held.status == StepStatus.WAITING_APPROVAL
    assert held.action.status == "pending_approval"
    assert run.step_runs.get(position=2).status == StepStatus.PENDING
    assert sent == [first.pk]  # a person decides; nothing waits in the broker


def test_a_failure_claiming_the_next_step_keeps_the_step_before_and_sends_the_next(
    world, sent, monkeypatch
):
    run = services.run_start(template=chain("claim-fails", 3))
    first = run.step_runs.get(position=0)
    request = actions.action_request
    second_key = f"step-run:{run.step_runs.get(position=1).pk}:"

    def failing(**kwargs):
        if kwargs["idempotency_key"].startswith(second_key):
            raise RuntimeError("the gate's database went away")
        return request(**kwargs)

    monkeypatch.setattr(actions, "action_request", failing)
    services.step_work(step_run_id=first.pk)
    second = run.step_runs.get(position=1)
    assert run.step_runs.get(position=0).status == StepStatus.SUCCEEDED
    assert (second.status, second.attempt, second.action_id) == (StepStatus.READY, 0, None)
    assert sent == [first.pk, second.pk]  # sent, to be tried again by a worker

    monkeypatch.setattr(actions, "action_request", request)
    services.step_work(step_run_id=second.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED


def test_a_policy_published_by_another_process_decides_the_next_step(world, sent):
    """A step's request starts from the policy version this process last compiled and has
    the gate's read confirm it: a store that moved meanwhile decides the step on its new
    policies, not on the old ones."""
    from autonomy.policy import engine
    from autonomy.policy import services as policy_services

    first_run = services.run_start(template=chain("before", 1))
    services.step_work(step_run_id=first_run.step_runs.get().pk)
    assert first_run.step_runs.get().action.verdict == "allow"

    run = services.run_start(template=chain("after", 1))
    policy_services.policy_save(
        name="stop", enabled=True, by=world.officer, text="forbid (principal, action, resource);"
    )
    # Saving validated the text against the store compiled before the save: this process
    # now holds a version the store has moved past, as a worker that has not decided
    # anything since another process published the policy.
    stale = engine.compiled_version()
    assert stale < engine.store_version()
    services.step_work(step_run_id=run.step_runs.get().pk)
    action = run.step_runs.get().action
    assert action.verdict == "deny"
    assert engine.compiled_version() == engine.store_version() > stale


def test_an_operation_disabled_between_two_steps_of_a_chain_is_seen_by_the_next(
    world, sent, monkeypatch
):
    """A step claimed inline takes its operation from what this process saw for the policy
    version it compiled last; a change to the operation moves that version, which the gate
    confirms in the step's own transaction, so the next step sees the operation disabled."""
    from autonomy.models import Operation

    run = services.run_start(template=chain("disabled", 3))
    first = run.step_runs.get(position=0)
    perform = actions.action_perform

    def perform_then_disable(*, action_id, action=None):
        done = perform(action_id=action_id, action=action)
        if first.pk == run.step_runs.filter(action_id=action_id).values_list("pk").get()[0]:
            operation = Operation.objects.get(pk=done.operation_id)  # as an officer would
            operation.enabled = False
            operation.save()
        return done

    monkeypatch.setattr(actions, "action_perform", perform_then_disable)
    services.step_work(step_run_id=first.pk)
    first_done, second = run.step_runs.get(position=0), run.step_runs.get(position=1)
    assert first_done.status == StepStatus.SUCCEEDED
    assert second.action.verdict == "deny"
    assert "operation_disabled" in {reason["code"] for reason in second.action.reasons}


def test_a_chain_loads_no_column_on_its_own(world, sent, monkeypatch):
    """The step path reads the rows it uses with what it uses of them: a column or row left
    out and used later would be loaded on its own (``refresh_from_db``), a statement each."""
    from agents.models import Agent
    from workflows.models import Run, StepRun

    loads = []
    for model in (Agent, Run, StepRun):
        refresh = model.refresh_from_db

        def record(self, *args, _refresh=refresh, **kwargs):
            loads.append((type(self).__name__, kwargs.get("fields")))
            return _refresh(self, *args, **kwargs)

        monkeypatch.setattr(model, "refresh_from_db", record)
    run = services.run_start(template=chain("unread", 4))
    services.step_work(step_run_id=run.step_runs.get(position=0).pk)

    assert loads == []
    assert Run.objects.get(pk=run.pk).status == RunStatus.SUCCEEDED
