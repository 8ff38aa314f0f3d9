"""Thin Celery tasks of access reviews."""

from celery import shared_task

from reviews import services


@shared_task(acks_late=True)
def reviews_schedule() -> int:
    """Open the quarter's review of every unit without one (Celery beat, daily)."""
    return services.reviews_schedule()


@shared_task(acks_late=True)
def reviews_escalate() -> int:
    """Escalate reviews past due with answers missing (Celery beat, hourly)."""
    return services.reviews_escalate()


@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def review_escalated_notify(review_id: int) -> int:
    from reviews import notifications

    return notifications.review_escalated_notify(review_id=review_id)
