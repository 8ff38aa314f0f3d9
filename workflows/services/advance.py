"""Advancing a run: after a step succeeds, make ready every step whose dependencies are done
(or skip it when its condition does not hold), and finish the run when all steps are."""

from django.utils import timezone

from autonomy import audit, conditions
from workflows import selectors
from workflows.models import STEP_DONE, Run, RunStatus, StepKind, StepRun, StepStatus
from workflows.services.assignment import agent_pick
from workflows.services.failure import attempt_failed
from workflows.services.outbox import Outbox
from workflows.services.rollup import run_counted, step_counted, step_finished

# What ``advance`` reads of a step run (its step comes from ``selectors.template_steps``):
# what making it ready and claiming it next read and write.
ADVANCE_FIELDS = (
    "id", "run", "step", "status", "assignee", "assignee_role", "attempt", "generation",
    "escalations", "action", "started_at", "worker",
)  # fmt: skip
# What making a step ready writes of its step run.
MADE_READY_FIELDS = ["status", "input", "assignee", "assignee_role", "dispatched_at", "ready_at"]


def step_succeed(
    *, run: Run, step_run: StepRun, output: dict, actor: str, out: Outbox, action=None
) -> None:
    """Record a step's output in the step run and in the run's context, and advance the run.
    ``action``: the step's last action, for its times in the analytics. Call with the run
    and the step run locked."""
    step = step_run.step
    step_run.status = StepStatus.SUCCEEDED
    step_run.output = output
    step_run.error = None
    step_run.finished_at = timezone.now()
    step_run.lease_until = None
    step_run.save(update_fields=["status", "output", "error", "finished_at", "lease_until"])
    step_finished(step=step, step_run=step_run, counter="succeeded", action=action, out=out)
    before = run.context.get(step.context_key)
    run.context[step.context_key] = output
    run.save(update_fields=["context"])
    out.event(
        run,
        "step_succeeded",
        f"{step.name} done.",
        step_run=step_run,
        actor=actor,
        context_diff={"key": step.context_key, "before": before, "after": output},
    )
    advance(run=run, out=out, after=step)


def advance(*, run: Run, out: Outbox, after=None) -> None:
    """Move every step whose dependencies are done; finish the run when all steps are.
    ``after``: the step that just succeeded, when that is all that changed (``step_succeed``).

    Call with the run row locked, inside a transaction.
    """
    if run.status != RunStatus.RUNNING:
        return
    if after is not None and _advance_to_successor(run=run, after=after, out=out):
        return
    # Only the steps not done yet: a done step never changes while the run runs, so a long
    # run does not read its finished steps again at every step. A dependency missing here is
    # done (publishing refuses a dependency that names no step of the template). The
    # version's steps come from the process's cache.
    open_step_runs = list(
        StepRun.objects.filter(run_id=run.pk)
        .exclude(status__in=STEP_DONE)
        .order_by("position")
        .only(*ADVANCE_FIELDS)
    )
    steps = selectors.template_steps(run.template)
    status = {steps[sr.step_id].key: sr.status for sr in open_step_runs}
    pending = [sr for sr in open_step_runs if sr.status == StepStatus.PENDING]
    changed = True
    while changed:
        changed = False
        for sr in pending:
            if run.status != RunStatus.RUNNING:
                return  # a step just failed the run: its siblings were cancelled
            step = steps[sr.step_id]
            if status[step.key] != StepStatus.PENDING or not all(
                status.get(dep, StepStatus.SUCCEEDED) in STEP_DONE for dep in step.depends_on
            ):
                continue
            sr.run = run
            sr.step = selectors.step_copy(step)
            if not conditions.holds(step.run_when, run.context):
                sr.status = StepStatus.SKIPPED
                sr.finished_at = timezone.now()
                sr.save(update_fields=["status", "finished_at"])
                step_counted(step=step, counter="skipped", out=out)
                out.event(
                    run, "step_skipped", f"{step.name}: {step.run_when!r} does not hold.",
                    step_run=sr,
                )  # fmt: skip
            else:
                _make_ready(run=run, step_run=sr, out=out)
            status[step.key] = sr.status
            changed = True
    if run.status == RunStatus.RUNNING and all(value in STEP_DONE for value in status.values()):
        run.status = RunStatus.SUCCEEDED
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "finished_at"])
        run_counted(run=run, counter="succeeded", out=out)
        out.event(run, "run_succeeded", "Every step is done.")
        audit.append(
            kind="run_finished",
            actor="system",
            payload={"run_id": str(run.pk), "status": run.status},
        )


def _advance_to_successor(*, run: Run, after, out: Outbox) -> bool:
    """``advance`` after ``after`` succeeded, when ``after`` is the only dependency of the
    only step that depends on it (a linear stretch): make that step ready, reading its row
    alone, not every step run still open. Nothing else can have become ready, and the run
    cannot be finished with that step open. Returns False, having changed nothing, where
    the whole ``advance`` is needed: no such step, its row not pending, or its condition not
    holding (skipped steps move the run on in their turn)."""
    successor = selectors.sole_successor(run.template, after)
    if successor is None:
        return False
    step_run = (
        StepRun.objects.filter(run_id=run.pk, step_id=successor.pk).only(*ADVANCE_FIELDS).first()
    )
    if step_run is None or step_run.status != StepStatus.PENDING:
        return False
    if not conditions.holds(successor.run_when, run.context):
        return False
    step_run.run = run
    step_run.step = selectors.step_copy(successor)
    _make_ready(run=run, step_run=step_run, out=out)
    return True


def _make_ready(*, run: Run, step_run: StepRun, out: Outbox) -> None:
    """Resolve the step's input and give it to its agent: a task is offered; an operation
    step gets an agent of its role (the least busy, read whole for its request) and goes
    to a worker (``out.ready``), or fails when nobody active can take it."""
    out.write_held()  # a step made ready before: the pick below counts ready steps
    step = step_run.step
    step_run.input = conditions.resolve(step.input_map, run.context)
    step_run.ready_at = timezone.now()
    step_counted(step=step, counter="started", at=step_run.ready_at, out=out)
    if step_run.assignee_id is None and step_run.assignee_role_id is None:
        step_run.assignee_id = step.assignee_agent_id
        step_run.assignee_role_id = step.assignee_role_id
    if step.kind == StepKind.TASK:
        step_run.status = StepStatus.WAITING_AGENT
        step_run.save(update_fields=["status", "input", "assignee", "assignee_role", "ready_at"])
        who = step_run.assignee or step_run.assignee_role
        out.event(run, "task_offered", f"{step.name} offered to {who}.", step_run=step_run)
        return
    if step_run.assignee_id is None:
        step_run.assignee = agent_pick(role_id=step_run.assignee_role_id)
    step_run.status = StepStatus.READY
    step_run.dispatched_at = timezone.now()
    if step_run.assignee_id is None:
        step_run.save(update_fields=MADE_READY_FIELDS)
        attempt_failed(
            run=run,
            step_run=step_run,
            kind="failed",
            error={"code": "no_active_agent", "message": f"Nobody active in {step.assignee_role}."},
            out=out,
        )
        return
    out.step_ready(step_run, unwritten=MADE_READY_FIELDS)
