"""Thin Celery tasks of approvals."""

from celery import shared_task

from approvals import notifications, services


@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def approval_notify(request_id: str, reason: str = "new") -> None:
    """E-mail the people who may decide (new request, reminder, escalation)."""
    notifications.approvers_notify(request_id=request_id, reason=reason)


@shared_task(acks_late=True)
def approvals_sweep() -> dict:
    """Expire, escalate and remind by the clock (Celery beat, every 30 s)."""
    return services.approvals_sweep()


@shared_task(acks_late=True)
def suggestions_refresh() -> dict:
    """Propose and refresh suggestions from the last window's history (Celery beat)."""
    from approvals import suggestions

    return suggestions.suggestions_refresh()
