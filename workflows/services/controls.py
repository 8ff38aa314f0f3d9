"""People's controls over runs and their steps: pause, resume and cancel a run; retry, skip,
fail or redirect a step; and cancel the steps of an agent that was stopped."""

from django.db import transaction
from django.utils import timezone

from agents.models import Agent
from autonomy import audit
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import ActionStatus
from workflows.models import STEP_ACTIVE, Run, RunStatus, StepKind, StepRun, StepStatus
from workflows.services.advance import advance
from workflows.services.assignment import agent_pick, require_active
from workflows.services.execute import ACTION_FINISHED
from workflows.services.failure import open_steps_cancel, run_fail
from workflows.services.locking import run_lock
from workflows.services.outbox import Outbox, actor_name
from workflows.services.rollup import run_counted, step_counted, step_finished
from workflows.transitions import run_controls, step_controls

# Steps a person may hand to another agent: nobody is working on them.
REDIRECTABLE = (StepStatus.READY, StepStatus.WAITING_AGENT, StepStatus.ESCALATED)


def run_not_active(run: Run) -> DomainError:
    return DomainError(
        ErrorCode.RUN_NOT_ACTIVE, f"The run is {run.status}.", {"status": run.status}, 409
    )


def _control(run: Run, by, kind: str, reason: str, *, out: Outbox, step_run=None, **data):
    actor = actor_name(by)
    out.event(run, kind, f"{actor}: {reason}" if reason else actor, actor=actor,
              step_run=step_run, **data)  # fmt: skip
    audit.append(
        kind=f"run_{kind}",
        actor=actor,
        payload={"run_id": str(run.pk), "reason": reason, **data}
        | ({"step_run": str(step_run.pk)} if step_run is not None else {}),
    )


def run_pause(*, run: Run, by, reason: str = "") -> Run:
    """No new step starts until resumed; steps already running finish."""
    with transaction.atomic(), Outbox() as out:
        run = run_lock(run.pk)
        if "pause" not in run_controls(run=run):
            raise run_not_active(run)
        run.status = RunStatus.PAUSED
        run.save(update_fields=["status"])
        _control(run, by, "paused", reason, out=out)
    return run


def run_resume(*, run: Run, by, reason: str = "") -> Run:
    """Go on: steps made ready while paused are sent, steps whose action ended while paused
    move on, and steps whose dependencies are done become ready."""
    with transaction.atomic(), Outbox() as out:
        run = run_lock(run.pk)
        if "resume" not in run_controls(run=run):
            raise run_not_active(run)
        run.status = RunStatus.RUNNING
        run.save(update_fields=["status"])
        _control(run, by, "resumed", reason, out=out)
        for step_run_id in run.step_runs.filter(status=StepStatus.READY).values_list(
            "pk", flat=True
        ):
            out.send(step_run_id)
        settled = run.step_runs.filter(
            status__in=[StepStatus.RUNNING, StepStatus.WAITING_APPROVAL],
            action__status__in=ACTION_FINISHED,
        )
        for step_run_id in settled.values_list("pk", flat=True):
            out.send(step_run_id)  # its action ended while the run was paused
        advance(run=run, out=out)
    return run


def run_cancel(*, run: Run, by, reason: str = "") -> Run:
    """Stop the run: open steps and waiting approvals are cancelled. Completed steps are not
    undone; an action that still succeeds (it was executing) is, by its step's compensation.
    """
    with transaction.atomic(), Outbox() as out:
        run = run_lock(run.pk)
        if "cancel" not in run_controls(run=run):
            raise run_not_active(run)
        open_steps_cancel(run=run, reason=reason or "run cancelled", out=out)
        run.status = RunStatus.CANCELLED
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "finished_at"])
        run_counted(run=run, counter="cancelled", out=out)
        _control(run, by, "cancelled", reason, out=out)
        # A step whose action ended well while the run was paused, before its worker moved
        # it on: its worker says what happened and undoes it (``effect_after_cancel``).
        for step_run_id in run.step_runs.filter(
            status=StepStatus.CANCELLED, action__status=ActionStatus.SUCCEEDED
        ).values_list("pk", flat=True):
            out.send(step_run_id)
    return run


def _own_step(run: Run, step_run_id) -> StepRun:
    step_run = (
        StepRun.objects.select_for_update(of=("self",))
        .select_related("step")
        .filter(pk=step_run_id, run=run)
        .first()
    )
    if step_run is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such step in this run.", status_code=404)
    return step_run


def _controlled(step_run: StepRun, control: str, verb: str) -> tuple[StepRun, Run]:
    """Lock the step's run and the step, and refuse a control its state does not allow."""
    run = run_lock(step_run.run_id)
    step_run = _own_step(run, step_run.pk)
    if control not in step_controls(run=run, step_run=step_run):
        raise DomainError(
            ErrorCode.STEP_NOT_ACTIONABLE,
            f"A {step_run.status} step of a {run.status} run cannot be {verb}.",
            status_code=409,
        )
    return step_run, run


def step_retry(*, step_run: StepRun, by, reason: str = "") -> StepRun:
    """A person sends an escalated or failed step round again as if it had just become ready:
    to the assignee its template names, with every retry and escalation level once more."""
    with transaction.atomic(), Outbox() as out:
        step_run, run = _controlled(step_run, "retry", "retried")
        spent = {"attempts": step_run.attempt, "escalations": step_run.escalations,
                 "from": getattr(step_run.assignee, "slug", None)}  # fmt: skip
        _restart(step_run)
        step_counted(step=step_run.step, counter="retried", out=out)
        if step_run.step.kind == StepKind.TASK:
            step_run.status = StepStatus.WAITING_AGENT
            step_run.save()
        else:
            if step_run.assignee is None:
                raise DomainError(
                    ErrorCode.STEP_NOT_ACTIONABLE,
                    f"Nobody active in {step_run.assignee_role} can take {step_run.step.name}.",
                    status_code=409,
                )
            step_run.status = StepStatus.READY
            step_run.dispatched_at = timezone.now()
            step_run.save()
            out.send(step_run.pk)
        _control(run, by, "step_retried", f"{step_run.step.name}. {reason}".strip(), out=out,
                 step_run=step_run, spent=spent)  # fmt: skip
    return step_run


def _restart(step_run: StepRun) -> None:
    """Give a step a person sends round again the budget it started with: attempts and
    escalations count from zero (else it could not escalate as its template says), under a
    new generation, so its actions get keys of their own, and back with its own assignee."""
    step = step_run.step
    step_run.attempt = step_run.escalations = 0
    step_run.generation += 1
    step_run.error = step_run.finished_at = None
    step_run.claimed_at = step_run.lease_until = step_run.next_attempt_at = None
    if step.kind == StepKind.TASK:
        step_run.assignee_id = step.assignee_agent_id  # none: offered to its role again
        return
    own = step.assignee_agent if step.assignee_agent_id else None
    if own is None or not own.is_active:
        own = agent_pick(role_id=step_run.assignee_role_id)
    step_run.assignee = own or step_run.assignee  # nobody active in the role: as it was


def step_redirect(*, step_run: StepRun, to_agent: Agent, by, reason: str = "") -> StepRun:
    """A person hands a step that nobody is working on to another agent, with fresh retries."""
    require_active(to_agent)
    with transaction.atomic(), Outbox() as out:
        run = run_lock(step_run.run_id)
        step_run = _own_step(run, step_run.pk)
        if step_run.status not in REDIRECTABLE or run.status not in (
            RunStatus.RUNNING,
            RunStatus.PAUSED,
        ):
            raise DomainError(
                ErrorCode.STEP_NOT_ACTIONABLE,
                f"A {step_run.status} step of a {run.status} run cannot be redirected.",
                status_code=409,
            )
        previous = step_run.assignee
        step_run.assignee = to_agent
        step_run.attempt = 0
        step_run.generation += 1
        step_run.error = None
        step_run.claimed_at = None
        step_run.lease_until = None
        step_run.next_attempt_at = None
        if step_run.step.kind == StepKind.TASK:
            step_run.status = StepStatus.WAITING_AGENT
            step_run.save()
        else:
            step_run.status = StepStatus.READY
            step_run.dispatched_at = timezone.now()
            step_run.save()
            if run.status == RunStatus.RUNNING:
                out.send(step_run.pk)
        _control(
            run, by, "step_redirected",
            f"{step_run.step.name} from {previous or 'nobody'} to {to_agent}. {reason}".strip(),
            out=out,
        )  # fmt: skip
    return step_run


def agent_steps_cancel(*, agent: Agent, by, reason: str) -> int:
    """Cancel every open step assigned to ``agent`` (it was killed): each of their runs fails
    and compensates. Call inside the caller's transaction. Returns how many were cancelled."""
    run_ids = list(
        StepRun.objects.filter(assignee=agent, status__in=STEP_ACTIVE)
        .order_by("run_id")
        .values_list("run_id", flat=True)
        .distinct()
    )
    cancelled = 0
    with Outbox() as out:
        for run_id in run_ids:
            run = run_lock(run_id)
            now = timezone.now()
            for step_run in (
                run.step_runs.select_for_update(of=("self",))
                .select_related("step")
                .filter(assignee=agent, status__in=STEP_ACTIVE)
            ):
                step_run.status = StepStatus.CANCELLED
                step_run.finished_at = now
                step_run.lease_until = None
                step_run.save(update_fields=["status", "finished_at", "lease_until"])
                out.event(run, "step_cancelled", f"{step_run.step.name}: {reason}",
                          step_run=step_run, actor=actor_name(by))  # fmt: skip
                cancelled += 1
            run_fail(run=run, reason=f"{agent} was stopped: {reason}", out=out)
    return cancelled


def step_skip(*, step_run: StepRun, by, reason: str = "") -> StepRun:
    """A person decides the step is not needed; the run goes on without its output."""
    with transaction.atomic(), Outbox() as out:
        step_run, run = _controlled(step_run, "skip", "skipped")
        step_run.status = StepStatus.SKIPPED
        step_run.finished_at = timezone.now()
        step_run.save(update_fields=["status", "finished_at"])
        step_counted(step=step_run.step, counter="skipped", out=out)
        _control(run, by, "step_skipped", f"{step_run.step.name}. {reason}".strip(), out=out)
        advance(run=run, out=out)
    return step_run


def step_fail(*, step_run: StepRun, by, reason: str = "") -> StepRun:
    """A person gives up on an escalated step: the run fails and compensates."""
    with transaction.atomic(), Outbox() as out:
        step_run, run = _controlled(step_run, "fail", "failed by hand")
        step_run.status = StepStatus.FAILED
        step_run.finished_at = timezone.now()
        step_run.save(update_fields=["status", "finished_at"])
        step_finished(step=step_run.step, step_run=step_run, counter="failed", out=out)
        _control(run, by, "step_failed", f"{step_run.step.name}. {reason}".strip(), out=out)
        run_fail(run=run, reason=f"{actor_name(by)} failed {step_run.step.name}.", out=out)
    return step_run
