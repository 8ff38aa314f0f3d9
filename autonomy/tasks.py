"""Thin Celery tasks of the kernel."""

from celery import shared_task
from django.db import DatabaseError

from autonomy import services


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
    services.action_execute(action_id=action_id)


@shared_task
def actions_redispatch() -> int:
    """Celery beat: resend approved actions whose publish was lost."""
    return services.actions_redispatch()
