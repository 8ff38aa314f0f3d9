"""When a step's attempt fails: retry with backoff, escalate (to an agent or a role, then a
person), fail the run, and undo what its done steps did (compensation)."""

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from autonomy import actions, audit, conditions
from autonomy.errors import DomainError
from autonomy.models import ActionRequest, ActionStatus
from workflows.models import (
    RUN_FINISHED,
    STEP_ACTIVE,
    Run,
    RunStatus,
    StepKind,
    StepRun,
    StepStatus,
)
from workflows.services.assignment import agent_pick
from workflows.services.locking import run_lock
from workflows.services.outbox import Outbox
from workflows.services.rollup import run_counted, step_counted, step_finished

# What a cancelled run's timeline says of a step whose action succeeded after the cancel.
AFTER_CANCEL = ("compensating_after_cancel", "effect_not_compensated")


def escalation_levels(step) -> list[str]:
    levels = []
    if step.escalate_to_agent_id or step.escalate_to_role_id:
        levels.append("agent")
    if step.escalate_to_human:
        levels.append("human")
    return levels


def attempt_failed(
    *, run: Run, step_run: StepRun, kind: str, error: dict, out: Outbox, action=None
) -> None:
    """One attempt failed. ``kind``: failed (retryable), denied (by the gate), rejected (by
    people), invalid (bad input), escalated (the agent asked), timeout (no result in time).
    ``action``: the attempt's action, for the step's times in the analytics.

    Call with the run and the step run locked."""
    step = step_run.step
    now = timezone.now()
    step_run.error = error
    step_run.lease_until = None
    if kind == "failed" and step_run.attempt < step.max_retries + 1 and step_run.assignee_id:
        delay = step.retry_backoff_seconds * (2 ** max(step_run.attempt - 1, 0))
        step_run.next_attempt_at = now + timedelta(seconds=delay)
        step_run.dispatched_at = now
        if step.kind == StepKind.TASK:
            step_run.status = StepStatus.WAITING_AGENT  # offered again once the backoff is over
            step_run.claimed_at = None
        else:
            step_run.status = StepStatus.READY
        step_run.save()
        step_counted(step=step, counter="retried", at=now, out=out)
        out.event(
            run,
            "retry_scheduled",
            f"{step.name} failed (attempt {step_run.attempt}); retrying in {delay}s.",
            step_run=step_run,
            error=error,
        )
        if step.kind == StepKind.OPERATION:
            out.send(step_run.pk, countdown=delay)
        return
    levels = escalation_levels(step)
    escalable = ("failed", "denied", "escalated", "invalid", "timeout")
    if kind in escalable and step_run.escalations < len(levels):
        level = levels[step_run.escalations]
        step_run.escalations += 1
        if level == "human":
            step_run.status = StepStatus.ESCALATED
            step_run.save()
            out.event(
                run,
                "escalated_to_person",
                f"{step.name} needs a person: retry, skip or fail it.",
                step_run=step_run,
                error=error,
            )
            return
        target = step.escalate_to_agent
        if target is None or not target.is_active:
            target = agent_pick(role_id=step.escalate_to_role_id)
        if target is not None:
            previous = step_run.assignee
            step_run.assignee = target
            step_run.attempt = 0
            step_run.generation += 1
            step_run.claimed_at = None
            if step.kind == StepKind.TASK:
                step_run.status = StepStatus.WAITING_AGENT
                step_run.save()
            else:
                step_run.status = StepStatus.READY
                step_run.dispatched_at = now
                step_run.save()
                out.step_ready(step_run)
            out.event(
                run,
                "escalated",
                f"{step.name} escalated from {previous} to {target}.",
                step_run=step_run,
                error=error,
                to=target.slug,
            )
            return
        if "human" in levels[step_run.escalations :]:
            return attempt_failed(
                run=run, step_run=step_run, kind=kind, error=error, out=out, action=action
            )
    step_run.status = StepStatus.FAILED
    step_run.finished_at = now
    step_run.save()
    step_finished(step=step, step_run=step_run, counter="failed", action=action, out=out)
    out.event(run, "step_failed", f"{step.name} failed.", step_run=step_run, error=error)
    run_fail(run=run, reason=f"{step.name} failed.", out=out)


def run_fail(*, run: Run, reason: str, out: Outbox) -> None:
    """Stop the run's other work and undo what was done, in reverse order, on a worker."""
    if run.status in (*RUN_FINISHED, RunStatus.COMPENSATING):
        return
    open_steps_cancel(run=run, reason=reason, out=out)
    run.status = RunStatus.COMPENSATING
    run.save(update_fields=["status"])
    out.event(run, "compensating", f"{reason} Undoing completed steps.")
    from workflows import tasks

    run_id = str(run.pk)
    transaction.on_commit(lambda: tasks.run_compensate.delay(run_id))


def open_steps_cancel(*, run: Run, reason: str, out: Outbox) -> None:
    """Cancel the run's steps not finished yet, and the actions of theirs that wait for
    people or have not started. Call with the run locked."""
    now = timezone.now()
    open_steps = list(
        run.step_runs.select_for_update(of=("self",))
        .select_related("step")
        .filter(status__in=[StepStatus.PENDING, *STEP_ACTIVE])
    )
    # Waiting for people, or approved and not yet started: neither will run now. An action
    # already executing finishes (its connector call is in flight); if it succeeds, its
    # step's compensation undoes it (``effect_after_cancel``), which the run's events say.
    actions.actions_cancel_waiting(
        pk__in=[sr.action_id for sr in open_steps if sr.action_id],
        code="run_cancelled",
        message=f"Cancelled with its workflow run: {reason}",
    )
    StepRun.objects.filter(pk__in=[sr.pk for sr in open_steps]).update(
        status=StepStatus.CANCELLED, finished_at=now, lease_until=None
    )
    for sr in open_steps:
        if sr.status != StepStatus.PENDING:
            out.event(run, "step_cancelled", f"{sr.step.name} cancelled: {reason}", step_run=sr)


def run_compensate(*, run_id) -> Run:
    """Run the compensation of every succeeded step, last finished first, then fail the run.

    Idempotent: compensated steps are skipped and each compensation action is keyed by its
    step run, so a redelivered task neither repeats nor skips one.
    """
    run = Run.objects.get(pk=run_id)
    if run.status != RunStatus.COMPENSATING:
        return run
    done = (
        run.step_runs.filter(
            status=StepStatus.SUCCEEDED, step__compensation_operation__isnull=False
        )
        .select_related("step__compensation_operation__connector", "assignee")
        .order_by("-finished_at", "-position")
    )
    failed = 0
    for step_run in done:
        failed += 0 if compensate_step(run=run, step_run=step_run) else 1
    with transaction.atomic(), Outbox() as out:
        run = run_lock(run.pk)
        if run.status == RunStatus.COMPENSATING:
            run.status = RunStatus.FAILED
            run.finished_at = timezone.now()
            run.save(update_fields=["status", "finished_at"])
            run_counted(run=run, counter="failed", out=out)
            out.event(
                run,
                "run_failed",
                "The run failed; completed steps were compensated."
                if not failed
                else f"The run failed; {failed} compensation(s) did not succeed — see above.",
                compensations_failed=failed,
            )
            audit.append(
                kind="run_finished",
                actor="system",
                payload={"run_id": str(run.pk), "status": run.status},
            )
    return run


def compensate_step(*, run: Run, step_run: StepRun) -> bool:
    """Undo one step's side effect with its compensation operation, through the gate; True
    when undone. Idempotent: the compensation action is keyed by the step run.

    Call outside a transaction, with the step run read with its step, its compensation
    operation and its assignee: the connector call happens in between two of its own.
    """
    step = step_run.step
    # The agent that did the step undoes it; if it was stopped since, someone of its role
    # (or the escalation target) does, so a kill never leaves a payment un-voided.
    undoer = step_run.assignee
    if undoer is None or not undoer.is_active:
        undoer = (
            agent_pick(role_id=step_run.assignee_role_id or step.assignee_role_id)
            or (step.escalate_to_agent if step.escalate_to_agent_id else None)
            or undoer
        )
    params = conditions.resolve(
        step.compensation_input_map, {**run.context, "output": step_run.output or {}}
    )
    with transaction.atomic(), Outbox() as out:
        try:
            action, _ = actions.action_request(
                agent=undoer,
                operation_key=step.compensation_operation.key,
                params=params,
                reason=f"Compensate {step.name} of run {run.pk}",
                idempotency_key=f"compensate:{step_run.pk}",
                run_here=True,
            )
        except DomainError as exc:
            action = None
            out.event(run, "compensation_failed", f"{step.name}: {exc.message}", step_run=step_run)
        if action is not None:
            StepRun.objects.filter(pk=step_run.pk).update(compensation_action=action)
    if action is not None and action.status in (ActionStatus.APPROVED, ActionStatus.EXECUTING):
        # A redelivered compensation: the earlier attempt's worker is gone.
        action = actions.action_execute(action_id=action.pk, recover=True)
    with transaction.atomic(), Outbox() as out:
        run = run_lock(run.pk)
        step_run = StepRun.objects.select_for_update().get(pk=step_run.pk)
        if step_run.status == StepStatus.COMPENSATED:
            return True  # undone already, by an earlier delivery
        ok = action is not None and action.status == ActionStatus.SUCCEEDED
        if ok:
            step_run.status = StepStatus.COMPENSATED
            step_run.save(update_fields=["status"])
            step_counted(step=step, counter="compensated", out=out)
        out.event(
            run,
            "step_compensated" if ok else "compensation_failed",
            f"{step.name}: {step.compensation_operation.key} "
            + ("done." if ok else f"ended {getattr(action, 'status', 'unrequested')}."),
            step_run=step_run,
            action_id=str(action.pk) if action else None,
        )
    return ok


def effect_after_cancel(*, run: Run, step_run: StepRun, out: Outbox) -> None:
    """The step's action succeeded although its run was cancelled (it was executing when the
    cancel came, or ended while the run was paused): its side effect happened. Say so on the
    run and undo it with the step's compensation after commit, on this worker, as a failed
    run would; without one, say that the effect stays.

    Call with the run and the step run locked. Safe to repeat: it records once, and the
    compensation action is keyed by the step run.
    """
    if step_run.status != StepStatus.CANCELLED or not step_run.action_id:
        return
    action = ActionRequest.objects.get(pk=step_run.action_id)
    if action.status != ActionStatus.SUCCEEDED:
        return
    step = step_run.step
    undo = step.compensation_operation if step.compensation_operation_id else None
    if not run.events.filter(step_run=step_run, kind__in=AFTER_CANCEL).exists():
        step_run.output = action.outcome or {}  # what the compensation's input may name
        step_run.save(update_fields=["output"])
        done = f"{step.name}: {step.operation.key} succeeded after the run was cancelled"
        details = {"action_id": str(action.pk), "operation": step.operation.key}
        if undo is not None:
            out.event(run, AFTER_CANCEL[0], f"{done}; undoing it with {undo.key}.",
                      step_run=step_run, compensation=undo.key, **details)  # fmt: skip
        else:
            out.event(run, AFTER_CANCEL[1], f"{done}; it has no compensation, so its effect "
                      "stays.", step_run=step_run, **details)  # fmt: skip
            audit.append(
                kind="run_effect_not_compensated",
                actor="system",
                action_id=action.pk,
                payload={"run_id": str(run.pk), "step_run": str(step_run.pk)},
            )
    if undo is not None:
        step_run_id = step_run.pk
        transaction.on_commit(lambda: _compensate_after_cancel(step_run_id))


def _compensate_after_cancel(step_run_id) -> None:
    step_run = StepRun.objects.select_related(
        "run", "step__compensation_operation__connector", "assignee"
    ).get(pk=step_run_id)
    if step_run.status == StepStatus.CANCELLED:
        compensate_step(run=step_run.run, step_run=step_run)
