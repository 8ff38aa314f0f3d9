"""The clock: recovering work the broker or a worker lost (Celery beat)."""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from autonomy import services as kernel
from workflows.models import Run, RunStatus, StepKind, StepRun, StepStatus
from workflows.services.failure import attempt_failed
from workflows.services.locking import step_lock
from workflows.services.outbox import Outbox, step_send


def workflows_sweep(*, now=None, broker_returned: bool = False) -> dict[str, int]:
    """Recover work the broker or a worker lost; runs on Celery beat, safe to run twice.

    - ready steps whose message never arrived are dispatched again;
    - running operation steps past their lease, or whose worker stopped beating
      (``autonomy.liveness``), are dispatched again (the worker died; the action's
      idempotency makes re-execution harmless);
    - claimed tasks past their lease are offered again (the agent went away);
    - compensating runs whose task was lost are compensated again.

    ``broker_returned``: a worker reconnected to a broker that may have lost its messages (a
    restart), so every ready step is dispatched again at once, not after
    ``AUTONOMY_WORKFLOW_REDISPATCH_SECONDS`` (a step executes once: its second message finds
    it running or done).
    """
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.AUTONOMY_WORKFLOW_REDISPATCH_SECONDS)
    ready_stale = now if broker_returned else stale
    counts = {"redispatched": 0, "lease_expired": 0, "worker_lost": 0, "timed_out": 0,
              "tasks_reoffered": 0, "compensations": 0}  # fmt: skip
    ready = StepRun.objects.filter(status=StepStatus.READY, run__status=RunStatus.RUNNING).filter(
        Q(next_attempt_at__isnull=True, dispatched_at__lte=ready_stale)
        | Q(next_attempt_at__lte=stale)
    )
    for step_run_id in ready.values_list("pk", flat=True)[: 100_000 if broker_returned else 1000]:
        if StepRun.objects.filter(pk=step_run_id, status=StepStatus.READY).update(
            dispatched_at=now
        ):
            transaction.on_commit(lambda i=step_run_id: step_send(i))
            counts["redispatched"] += 1
    alive = kernel.workers_alive(now=now)
    worker_lost = Q(step__kind=StepKind.OPERATION) & ~Q(worker="") & ~Q(worker__in=alive)
    expired = StepRun.objects.filter(
        Q(lease_until__lte=now) | worker_lost,
        status=StepStatus.RUNNING,
        run__status=RunStatus.RUNNING,
    )
    for step_run_id in expired.values_list("pk", flat=True)[:1000]:
        with transaction.atomic(), Outbox() as out:
            outcome = _take_back(step_run_id, now=now, alive=alive, out=out)
        if outcome:
            counts[outcome] += 1
    from workflows import tasks

    lost = Run.objects.filter(status=RunStatus.COMPENSATING).exclude(events__created_at__gt=stale)
    for run_id in lost.values_list("pk", flat=True)[:100]:
        transaction.on_commit(lambda i=str(run_id): tasks.run_compensate.delay(i))
        counts["compensations"] += 1
    return counts


def _take_back(step_run_id, *, now, alive: set, out: Outbox) -> str | None:
    """A running step past its lease, or whose worker stopped: offer a task again, or send an
    operation step again (both, as a timeout, when their retries are spent). Returns which
    count it adds to, or None when the step moved on meanwhile."""
    step_run, run = step_lock(step_run_id)
    if step_run is None:
        return None
    lost = step_run.step.kind == StepKind.OPERATION and step_run.worker not in alive | {""}
    if (
        step_run.status != StepStatus.RUNNING
        or not step_run.lease_until
        or (step_run.lease_until > now and not lost)
        or run.status != RunStatus.RUNNING
    ):
        return None
    if step_run.step.kind == StepKind.TASK:
        if step_run.attempt > step_run.step.max_retries:
            # Claimed as often as retries allow and never finished: a lapsed lease is a
            # failed attempt too, so the task escalates (or fails) instead of going round
            # agents that take it and go away, for ever.
            attempt_failed(run=run, step_run=step_run, kind="timeout", error={
                "code": "task_timeout",
                "message": f"Claimed {step_run.attempt} times; no result within any lease.",
            }, out=out)  # fmt: skip
            return "timed_out"
        step_run.status = StepStatus.WAITING_AGENT
        # A task someone sent to this agent (hand-off, escalation, redirect) stays with it
        # while it is active; otherwise it goes back to whom the step names.
        chosen = step_run.generation > 0 or step_run.escalations > 0
        if not (chosen and step_run.assignee and step_run.assignee.is_active):
            step_run.assignee = step_run.step.assignee_agent
        step_run.claimed_at = None
        step_run.lease_until = None
        step_run.save()
        out.event(
            run,
            "task_lease_expired",
            f"{step_run.step.name}: the agent's lease ran out; offered again.",
            step_run=step_run,
        )
        return "tasks_reoffered"
    executions = step_run.action.attempts if step_run.action_id else 0
    if executions > step_run.step.max_retries:
        # Re-executed as often as retries allow and still not done: a timeout.
        attempt_failed(run=run, step_run=step_run, kind="timeout", error={
            "code": "step_timeout",
            "message": f"No result after {executions} executions of "
            f"{step_run.step.timeout_seconds}s each.",
        }, out=out)  # fmt: skip
        return "timed_out"
    step_run.lease_until = now + timedelta(seconds=step_run.step.timeout_seconds)
    worker, step_run.worker = step_run.worker, ""  # the next execution names its own
    step_run.save(update_fields=["lease_until", "worker"])
    if lost:
        out.event(
            run,
            "worker_lost",
            f"{step_run.step.name}: its worker {worker} stopped; dispatched again.",
            step_run=step_run,
            worker=worker,
        )
    else:
        out.event(
            run,
            "lease_expired",
            f"{step_run.step.name} ran past its lease; dispatched again.",
            step_run=step_run,
        )
    out.send(step_run.pk)
    return "worker_lost" if lost else "lease_expired"
