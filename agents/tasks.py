"""Thin Celery tasks of the agent registry: load fresh state, call one function."""

import logging

from celery import shared_task

from agents import notifications

log = logging.getLogger(__name__)


@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def agent_status_notify(agent_id: str, status: str, reason: str) -> None:
    """Tell the owner that their agent changed status. Retries on SMTP/socket errors."""
    notifications.owner_status_changed(agent_id=agent_id, status=status, reason=reason)
