"""Thin Celery tasks of the kernel."""

from celery import shared_task

from autonomy import services


@shared_task(acks_late=True, reject_on_worker_lost=True, max_retries=None)
def action_execute(action_id: str) -> None:
    """Execute an approved action. Idempotent by action id: redelivery is harmless."""
    services.action_execute(action_id=action_id)


@shared_task
def actions_redispatch() -> int:
    """Celery beat: resend approved actions whose publish was lost."""
    return services.actions_redispatch()
