"""Agents' tasks: a task step offered to an agent (or its role) is claimed, completed,
handed off, escalated or failed by the agent through the API."""

from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from agents.models import Agent
from autonomy import audit
from autonomy.errors import DomainError, ErrorCode
from workflows.models import Run, RunStatus, StepRun, StepStatus
from workflows.services.advance import step_succeed
from workflows.services.assignment import require_active, step_ineligibility
from workflows.services.controls import run_not_active
from workflows.services.failure import attempt_failed
from workflows.services.locking import step_lock
from workflows.services.outbox import Outbox


def tasks_offered(agent: Agent):
    """The task steps offered to ``agent`` now: to it, or to its role and nobody in it yet."""
    return StepRun.objects.filter(
        Q(assignee=agent) | Q(assignee__isnull=True, assignee_role_id=agent.role_id),
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=timezone.now()),
        status=StepStatus.WAITING_AGENT,
        run__status=RunStatus.RUNNING,
    )


def _not_available(step_run_id, why: str) -> DomainError:
    return DomainError(ErrorCode.TASK_NOT_AVAILABLE, why, {"task": str(step_run_id)}, 409)


def task_claim(*, agent: Agent, step_run_id, lease_seconds: int | None = None) -> StepRun:
    """Take an offered task; nobody else can until it is completed, handed off or its lease
    runs out."""
    require_active(agent)
    with transaction.atomic(), Outbox() as out:
        step_run, run = step_lock(step_run_id)
        if step_run is None or not tasks_offered(agent).filter(pk=step_run.pk).exists():
            if step_run is not None and step_run.assignee_id == agent.pk:
                if step_run.status == StepStatus.RUNNING:
                    return step_run  # claimed already by this agent: a retried claim
            raise _not_available(step_run_id, "This task is not offered to you.")
        now = timezone.now()
        step_run.status = StepStatus.RUNNING
        step_run.assignee = agent
        step_run.attempt += 1
        step_run.claimed_at = now
        step_run.started_at = step_run.started_at or now
        step_run.lease_until = now + timedelta(
            seconds=lease_seconds or step_run.step.timeout_seconds
        )
        step_run.save()
        out.event(
            run,
            "task_claimed",
            f"{agent} took {step_run.step.name}.",
            step_run=step_run,
            actor=agent.slug,
        )
    return step_run


def task_next(*, agent: Agent, claim: bool = True) -> StepRun | None:
    """The oldest task offered to the agent (or its role), claimed for it unless told not to.

    Two agents asking at once never get the same task: a lost race moves to the next one.
    """
    require_active(agent)
    for step_run_id in (
        tasks_offered(agent)
        .order_by("run__created_at", "position")
        .values_list("pk", flat=True)[:20]
    ):
        if not claim:
            return StepRun.objects.select_related("step", "run").get(pk=step_run_id)
        try:
            return task_claim(agent=agent, step_run_id=step_run_id)
        except DomainError:
            continue
    return None


def _own_running(agent: Agent, step_run_id) -> tuple[StepRun, Run]:
    step_run, run = step_lock(step_run_id)
    if step_run is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such task.", status_code=404)
    if step_run.assignee_id != agent.pk:
        raise DomainError(ErrorCode.TASK_NOT_YOURS, "This task is not yours.", status_code=403)
    if step_run.status != StepStatus.RUNNING:
        raise _not_available(step_run_id, f"This task is {step_run.status}.")
    return step_run, run


def task_context(*, agent: Agent, step_run_id) -> dict:
    """What the task's agent may see: its inputs and the context keys its step names."""
    step_run = StepRun.objects.select_related("step", "run").filter(pk=step_run_id).first()
    if step_run is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such task.", status_code=404)
    if step_run.assignee_id != agent.pk:
        raise DomainError(ErrorCode.TASK_NOT_YOURS, "This task is not yours.", status_code=403)
    visible = step_run.step.visible_context or []
    return {
        "input": step_run.input,
        "context": {k: step_run.run.context[k] for k in visible if k in step_run.run.context},
    }


def task_complete(*, agent: Agent, step_run_id, output: dict) -> StepRun:
    """Finish the task; the output goes into the run's context under the step's key."""
    if not isinstance(output, dict):
        raise DomainError(ErrorCode.VALIDATION_FAILED, "output must be a JSON object.")
    with transaction.atomic(), Outbox() as out:
        step_run = StepRun.objects.filter(pk=step_run_id).only("status", "assignee_id").first()
        if step_run is not None and step_run.status == StepStatus.SUCCEEDED:
            if step_run.assignee_id == agent.pk:
                return step_run  # a retried completion
        step_run, run = _own_running(agent, step_run_id)
        if run.status not in (RunStatus.RUNNING, RunStatus.PAUSED):
            raise run_not_active(run)
        step_succeed(run=run, step_run=step_run, output=output, actor=agent.slug, out=out)
    return step_run


def task_handoff(*, agent: Agent, step_run_id, to: Agent, reason: str = "") -> StepRun:
    """Pass the task to another agent, who finds it with ``task_next``; only to one eligible
    for the step (``assignment.step_ineligibility``)."""
    with transaction.atomic(), Outbox() as out:
        # Whose task it is comes first: an agent learns nothing of another's task, not even
        # whether its hand-off would be valid.
        step_run, run = _own_running(agent, step_run_id)
        if to.pk == agent.pk:
            raise DomainError(ErrorCode.VALIDATION_FAILED, "Hand off to another agent.")
        require_active(to)
        unmet = step_ineligibility(agent=to, step_run=step_run, run=run)
        if unmet:
            raise DomainError(
                ErrorCode.HANDOFF_TARGET_INELIGIBLE,
                f"{to} may not hold {step_run.step.name}: it lacks the step's "
                + ", ".join(u.replace("_", " ") for u in unmet)
                + ".",
                {"agent": to.slug, "unmet": unmet},
                status_code=403,
            )
        step_run.assignee = to
        step_run.generation += 1  # chosen by a person or an agent: kept if its lease runs out
        step_run.status = StepStatus.WAITING_AGENT
        step_run.claimed_at = None
        step_run.lease_until = None
        step_run.save()
        out.event(
            run,
            "handoff",
            f"{agent} handed {step_run.step.name} to {to}: {reason}",
            step_run=step_run,
            actor=agent.slug,
            to=to.slug,
            reason=reason,
        )
        audit.append(
            kind="task_handoff",
            actor=agent.slug,
            agent_id=agent.pk,
            payload={"step_run": str(step_run.pk), "to": to.slug, "reason": reason},
        )
    return step_run


def task_escalate(*, agent: Agent, step_run_id, reason: str) -> StepRun:
    """The agent cannot do it: escalate by the step's rule (another agent, then a person)."""
    with transaction.atomic(), Outbox() as out:
        step_run, run = _own_running(agent, step_run_id)
        out.event(run, "escalation_asked", f"{agent}: {reason}", step_run=step_run,
                  actor=agent.slug)  # fmt: skip
        attempt_failed(
            run=run,
            step_run=step_run,
            kind="escalated",
            error={"code": "escalated", "message": reason, "by": agent.slug},
            out=out,
        )
    return step_run


def task_fail(*, agent: Agent, step_run_id, message: str, retryable: bool = True) -> StepRun:
    """The agent could not do it: a retryable failure is offered again after the step's
    backoff; any other escalates or fails the run."""
    with transaction.atomic(), Outbox() as out:
        step_run, run = _own_running(agent, step_run_id)
        attempt_failed(
            run=run,
            step_run=step_run,
            kind="failed" if retryable else "invalid",
            error={"code": "task_failed", "message": message, "by": agent.slug},
            out=out,
        )
    return step_run
