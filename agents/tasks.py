"""Thin Celery tasks of the agent registry: load fresh state, call one function."""

import logging

from celery import shared_task

from agents import notifications

log = logging.getLogger(__name__)


@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def agent_status_notify(agent_id: str, status: str, reason: str) -> None:
    """Tell the owner that their agent changed status. Retries on SMTP/socket errors."""
    notifications.owner_status_changed(agent_id=agent_id, status=status, reason=reason)


@shared_task(acks_late=True)
def drift_sweep(minutes: int = 10) -> int:
    """Check every agent that acted in the last ``minutes`` against its baseline (beat, ~60 s).

    A constant number of queries per agent; returns how many flags were raised.
    """
    from agents import behaviour
    from agents.models import Agent

    raised = 0
    ids = behaviour.agents_recently_active(minutes=minutes)
    for agent in Agent.objects.select_related("business_unit").filter(pk__in=ids):
        raised += len(behaviour.drift_check(agent=agent))
    return raised


@shared_task(acks_late=True)
def baselines_learn(window_days: int = 14) -> int:
    """Relearn every active agent's baseline (nightly)."""
    from agents import behaviour
    from agents.models import Agent, AgentStatus

    count = 0
    for agent in Agent.objects.filter(status=AgentStatus.ACTIVE).iterator():
        behaviour.baseline_learn(agent=agent, window_days=window_days)
        count += 1
    return count
