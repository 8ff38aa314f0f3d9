"""Thin Celery tasks of the kernel."""

from celery import shared_task
from django.db import DatabaseError

from autonomy import actions


# A database error (a failover, a deadlock victim) is retried: the action is not lost.
@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=True,
    max_retries=8,
)
def action_execute(action_id: str) -> None:
    """Execute an approved action. Idempotent by action id: redelivery is harmless."""
    actions.action_execute(action_id=action_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def actions_fan_out(entries: list) -> None:
    """Several approved actions the web process published as one message: send each its own
    ``action_execute``. A lost fan-out is covered by ``actions_redispatch``."""
    from autonomy import dispatch

    dispatch.fan_out(entries)


@shared_task
def actions_redispatch(broker_returned: bool = False) -> int:
    """Celery beat: resend approved actions whose publish was lost, and executing ones
    whose worker died; and a worker that reconnected to its broker (``config/celery.py``)."""
    return actions.actions_redispatch(broker_returned=broker_returned)


@shared_task
def usage_prune() -> int:
    """Celery beat: delete per-agent minute counters no gate window reads any more."""
    from autonomy import usage

    return usage.usage_prune()


@shared_task
def memory_prune() -> int:
    """Celery beat: delete shared-memory entries past their time to live."""
    from autonomy.memory import services

    return services.memory_prune()


@shared_task(ignore_result=True)
def audit_seal() -> int:
    """Celery beat (``AUTONOMY_AUDIT_SEAL_SECONDS``): chain the audit records appended since
    the last seal. One sealer at a time: a run that overlaps one still at work returns at
    once, since that one seals the same records."""
    from autonomy import audit

    return audit.seal(wait=False)


@shared_task(ignore_result=True)
def audit_publish() -> int | None:
    """Celery beat (``AUTONOMY_AUDIT_PUBLISH_SECONDS``): seal, then publish a signed
    checkpoint of the chain's head outside the database. A chain that no longer holds the
    last published checkpoint raises ``NotExtending``: tampering, logged by the worker."""
    from autonomy import audit

    published = audit.publish()
    return published.checkpoint["seq"] if published.checkpoint else None


@shared_task
def rollouts_measure() -> dict:
    """Celery beat: measure every active rollout plan and propose the promotions whose
    criteria hold."""
    from autonomy.rollouts import services

    return services.plans_measure()


@shared_task(autoretry_for=(DatabaseError,), retry_backoff=True, max_retries=5)
def rollout_notify(event_id: int) -> int:
    """Tell a plan's owner and approvers that its wave changed."""
    from autonomy.rollouts import notify

    return notify.event_notify(event_id=event_id)
