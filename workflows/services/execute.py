"""Executing an operation step on a worker: its request through the gate as its assignee,
the connector call, and recording the outcome; a worker then goes on with the run's next
step at once while the run is a chain."""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agents.models import Agent
from autonomy import actions, conditions, gate, liveness
from autonomy.errors import DomainError
from autonomy.models import ActionRequest, ActionStatus
from autonomy.policy import engine as policy_engine
from workflows import selectors
from workflows.models import Approval, Run, RunStatus, StepKind, StepRun, StepStatus
from workflows.services.advance import step_succeed
from workflows.services.assignment import assignees
from workflows.services.failure import attempt_failed, effect_after_cancel, run_fail
from workflows.services.locking import step_lock, step_relock
from workflows.services.outbox import Outbox, step_send

log = logging.getLogger(__name__)
ACTION_FINISHED = (
    ActionStatus.SUCCEEDED,
    ActionStatus.FAILED,
    ActionStatus.DENIED,
    ActionStatus.CANCELLED,
    ActionStatus.SHADOWED,
)
# What starting an attempt changes on its step run.
ATTEMPT_FIELDS = [
    "attempt", "status", "started_at", "lease_until", "next_attempt_at", "input", "worker"
]  # fmt: skip
# A step waiting on its action: an action that ends moves it on (``on_action_settled``).
WAITING_ON_ACTION = (StepStatus.RUNNING, StepStatus.WAITING_APPROVAL)


def step_work(*, step_run_id) -> None:
    """A worker's step task: execute the step; then, while that made exactly one operation
    step of the run ready, execute that one too, at once, in this task.

    A linear stretch of a run then goes step after step on the worker that finished the
    step before, without a broker round trip in between, and a run under load finishes in
    its turn instead of all runs finishing together at the end. The next step is claimed
    (its request through the gate) in the transaction that records the step before it, so
    the run stays locked from one to the next. A worker that dies between steps leaves the
    next one ready, or its action claimed as executing, and ``workflows_sweep`` sends it
    again as it does any ready step whose message was lost or running step whose lease ran
    out. Two or more steps made ready at once (parallel branches) are sent, to run in
    parallel; so is everything after ``AUTONOMY_WORKFLOW_INLINE_STEPS`` steps in a row, so
    that other runs' steps get their turn. Inside a caller's transaction nothing is run
    ahead of its commit: every step made ready is sent then.
    """
    in_transaction = transaction.get_connection().in_atomic_block
    chain = 0 if in_transaction else settings.AUTONOMY_WORKFLOW_INLINE_STEPS
    step_execute(step_run_id=step_run_id, chain=chain)


def step_execute(*, step_run_id, chain: int = 0) -> StepRun | None:
    """Request the step's action through the gate as its assignee and, if allowed, execute it.

    Idempotent: a ready step makes its request once per attempt (keyed by step run and
    attempt); a running step whose action is approved or executing is executed again, which
    the connector's idempotency key makes harmless; anything else is left alone.

    With ``chain`` (from ``step_work``), up to that many following steps that the run makes
    ready one at a time are claimed and executed here too. Returns the last step run.
    """
    execute_action, recover, claimed = None, False, None
    with transaction.atomic(), Outbox() as out:
        step_run, run = step_lock(step_run_id)
        if step_run is None:
            return None
        if run.status != RunStatus.RUNNING or step_run.step.kind != StepKind.OPERATION:
            if run.status == RunStatus.CANCELLED:
                effect_after_cancel(run=run, step_run=step_run, out=out)
            return step_run
        if step_run.status in WAITING_ON_ACTION and step_run.action_id:
            action = step_run.action
            if step_run.status == StepStatus.RUNNING and action.status in (
                ActionStatus.APPROVED,
                ActionStatus.EXECUTING,
            ):
                # Sent again after its lease ran out or its worker stopped beating (the
                # worker died): execute once more; the connector's idempotency key keeps it
                # to one side effect. This worker now answers for it.
                execute_action, recover = action.pk, action.status == ActionStatus.EXECUTING
                worker = liveness.current_worker()
                if step_run.worker != worker:
                    step_run.worker = worker
                    step_run.save(update_fields=["worker"])
            elif action.status in ACTION_FINISHED:
                _action_ended(step_run=step_run, run=run, action=action, out=out)
        elif step_run.status == StepStatus.READY:
            # Allowed: claimed as executing in this transaction, so it runs here at once.
            claimed = _request_action(run=run, step_run=step_run, out=out)
    while claimed is not None or execute_action is not None:
        # The connector call, then in one transaction: the action's outcome and the step's,
        # and the next step's claim.
        if claimed is not None:
            action_id = claimed.pk
            action = actions.action_perform(action_id=claimed.pk, action=claimed)
        else:
            action_id = execute_action
            action = actions.action_execute(action_id=execute_action, recover=recover)
        record = {"step_run": step_run, "run": run, "action": action, "action_id": action_id}
        record["settle"] = claimed is not None
        try:
            step_run, run, following = _record(**record, chain=chain)
        except Exception:
            if chain <= 0:
                raise
            # Rolled back whole, the step's outcome with the claim. Record the step alone;
            # the step it made ready is sent, as any ready step is.
            log.exception("could not record step run %s with the next; alone", step_run.pk)
            step_run, run, following = _record(**record, chain=0)
        if following is None:
            break
        step_run, claimed, execute_action, chain = following[0], following[1], None, chain - 1
    return step_run


def _record(*, step_run: StepRun, run: Run, action, action_id, settle: bool, chain: int):
    """One transaction after a step's connector call: the action's outcome (``settle``: the
    action this worker claimed and performed) and the step's, locked in the usual order (run,
    step run, then the action); with ``chain``, the claim of the one step that made ready
    (``_claim_next``). Returns the step run, the run and that claim. Steps made ready by a
    transaction that rolls back are not sent."""
    with transaction.atomic(), Outbox(hold_ready=chain > 0) as out:
        step_run, run = step_relock(step_run=step_run, run=run)
        if settle:
            action = actions.action_settle(action=action)
        elif action is None or action.status not in ACTION_FINISHED:
            # Left to another delivery that is executing it: see where it is now.
            action = ActionRequest.objects.get(pk=action_id)
        if run.status == RunStatus.RUNNING and action.status in ACTION_FINISHED:
            _action_ended(step_run=step_run, run=run, action=action, out=out)
        elif run.status == RunStatus.CANCELLED:
            effect_after_cancel(run=run, step_run=step_run, out=out)
        following = _claim_next(run=run, out=out) if chain > 0 else None
    return step_run, run, following


def _claim_next(*, run: Run, out: Outbox) -> tuple[StepRun, ActionRequest] | None:
    """In the transaction that just finished a step of ``run`` (locked): when that made
    exactly one operation step ready, ask the gate for its action. Returns the step run and
    its action when allowed (claimed as executing, for the caller to run); otherwise the
    step is left to be sent, as any ready step is. No savepoint (two round trips a step): if
    this fails, the whole transaction goes, and ``step_execute`` records the step before it
    again, without the claim."""
    if len(out.ready) != 1 or run.status != RunStatus.RUNNING:
        return None
    # Made ready by this transaction, which holds the run (every change to a step run locks
    # its run first). The operation is the one this process read last for the policy-store
    # version it compiled; the gate confirms that version in this transaction, so a changed
    # operation or connector (which moves the version) is read again.
    step_run = out.ready.pop()
    unwritten = out.take_held(step_run)  # written with the attempt, in one statement
    out.write_held()
    agent = step_run.assignee if StepRun.assignee.is_cached(step_run) else None
    if agent is None or not Agent.service_user.is_cached(agent):
        step_run.assignee = assignees().get(pk=step_run.assignee_id)
    step_run.step.operation = selectors.step_operation(step_run.step.operation_id)
    claimed = _request_action(run=run, step_run=step_run, out=out, also=unwritten)
    return (step_run, claimed) if claimed is not None else None


def step_approval(*, step, context: dict) -> gate.ApprovalAsk | None:
    """The step's approval gate as an input of the gate's decision: always, or when its
    condition holds over the run's context (the gate decides which)."""
    if step.approval == Approval.ALWAYS:
        return gate.ApprovalAsk(reason=f"The workflow asks for approval at {step.name}.")
    if step.approval == Approval.WHEN:
        return gate.ApprovalAsk(
            reason=f"The workflow asks for approval at {step.name}.",
            when=step.approval_when,
            context=context,
        )
    return None


def _request_action(*, run: Run, step_run: StepRun, out: Outbox, also=()) -> ActionRequest | None:
    """Ask the gate as the step's assignee. Returns the action when it was allowed, claimed
    as executing in the caller's transaction for this worker to run at once. ``also``:
    further fields of the step run to write with the attempt's."""
    fields = list(dict.fromkeys([*ATTEMPT_FIELDS, *also]))
    step = step_run.step
    now = timezone.now()
    step_run.attempt += 1
    step_run.status = StepStatus.RUNNING
    step_run.started_at = step_run.started_at or now
    step_run.lease_until = now + timedelta(seconds=step.timeout_seconds)
    step_run.next_attempt_at = None
    step_run.input = conditions.resolve(step.input_map, run.context)
    step_run.worker = liveness.current_worker()
    approval = step_approval(step=step, context=run.context)
    guess = policy_engine.compiled_version()
    try:
        action, _ = actions.action_request(
            agent=step_run.assignee,
            operation_key=step.operation.key,
            operation=step.operation,  # read with its connector: not looked up again
            params=step_run.input,
            reason=f"{run.template.name}: {step.name} (run {run.pk})",
            idempotency_key=f"step-run:{step_run.pk}:{step_run.generation}:{step_run.attempt}",
            approval=approval,
            run_here=True,  # allowed: recorded as executing, for this worker to run at once
            fresh_key=True,  # its attempt was counted just now, under the step run's lock
            template_key=run.template.key,  # the template's autonomy level applies
        )
    except DomainError as exc:
        step_run.save(update_fields=fields)
        attempt_failed(
            run=run,
            step_run=step_run,
            kind="invalid",
            error={"code": str(exc.code), "message": exc.message, "details": exc.details},
            out=out,
        )
        return None
    selectors.step_operation_confirmed(operation=step.operation, guess=guess, action=action)
    step_run.action = action
    if action.status == ActionStatus.PENDING_APPROVAL:
        step_run.status = StepStatus.WAITING_APPROVAL
    step_run.save(update_fields=[*fields, "action"])
    out.event(
        run,
        "action_requested",
        f"{step.name}: {step_run.assignee} asked for "
        f"{step.operation.key}; the gate said {action.verdict}.",
        step_run=step_run,
        actor=step_run.assignee.slug,
        action_id=str(action.pk),
        attempt=step_run.attempt,
        risk_score=action.risk_score,
    )
    if action.status == ActionStatus.EXECUTING:
        return action
    if action.status == ActionStatus.PENDING_APPROVAL:
        out.event(
            run,
            "waiting_approval",
            f"{step.name} waits for a person's approval.",
            step_run=step_run,
            reasons=action.reasons,
        )
        return None
    _action_ended(step_run=step_run, run=run, action=action, out=out)
    return None


def on_action_settled(*, action: ActionRequest) -> None:
    """Signal receiver: an action reached its end; its step moves on in a task.

    It runs inside the transaction that settled the action (a person's decision, an expiry, a
    kill, or the step's own worker), which holds the approval and action rows; locking the
    run here would take locks in the opposite order to a run being cancelled. So after
    commit, the step is sent to ``step_execute`` if it still waits on that action, or was
    cancelled meanwhile (its worker says what became of the effect). A step that executed
    its action itself has moved on by then, and is not sent again.
    """
    action_id = action.pk
    transaction.on_commit(lambda: _send_waiting_step(action_id))


def _send_waiting_step(action_id) -> None:
    step_run_id = (
        StepRun.objects.filter(
            action_id=action_id, status__in=[*WAITING_ON_ACTION, StepStatus.CANCELLED]
        )
        .values_list("pk", flat=True)
        .first()
    )
    if step_run_id is not None:
        step_send(step_run_id)


def _action_ended(*, step_run: StepRun, run: Run, action: ActionRequest, out: Outbox) -> None:
    """The step's action ended: the step succeeds, fails an attempt, or is cancelled."""
    if step_run.status not in WAITING_ON_ACTION:
        return
    step = step_run.step
    if action.status == ActionStatus.SUCCEEDED:
        step_succeed(run=run, step_run=step_run, output=action.outcome or {}, actor="worker",
                     out=out, action=action)  # fmt: skip
    elif action.status == ActionStatus.SHADOWED:
        # Decided and recorded, never executed: the run goes on, as a rehearsal does.
        output = {"executed": False, "autonomy_level": action.autonomy_level,
                  "action_id": str(action.pk)}  # fmt: skip
        step_succeed(run=run, step_run=step_run, output=output, actor="gate", out=out,
                     action=action)  # fmt: skip
    elif action.status == ActionStatus.FAILED:
        attempt_failed(run=run, step_run=step_run, kind="failed", error=action.error or {},
                       out=out, action=action)  # fmt: skip
    elif action.status == ActionStatus.DENIED:
        codes = {r.get("code") for r in action.reasons}
        people = codes & {"approval_rejected", "approval_expired"}
        attempt_failed(
            run=run,
            step_run=step_run,
            kind="rejected" if people else "denied",
            error={"code": "rejected" if people else "denied", "reasons": action.reasons},
            out=out,
            action=action,
        )
    elif action.status == ActionStatus.CANCELLED:
        step_run.status = StepStatus.CANCELLED
        step_run.finished_at = timezone.now()
        step_run.save(update_fields=["status", "finished_at"])
        out.event(run, "step_cancelled", f"{step.name}: its action was cancelled.",
                  step_run=step_run)  # fmt: skip
        run_fail(run=run, reason=f"{step.name} was cancelled.", out=out)
