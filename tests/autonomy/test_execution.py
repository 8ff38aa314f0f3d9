"""Executing an approved action: once, and never for an agent that was stopped since."""

import time

import pytest
from django.utils import timezone

from agents import services as agent_services
from autonomy import actions
from autonomy.models import ActionRequest, ActionStatus, ConnectorCall
from tests.autonomy.gate_fixtures import build_registry
from tests.conftest import wait_for


def approved(registry, invoice: str = "INV-1"):
    action, _ = actions.action_request(
        agent=registry.agent,
        operation_key="erp.post-invoice",
        params={"invoice_id": invoice, "amount": 10},
        reason="month end",
    )
    assert action.status == ActionStatus.APPROVED, action.reasons
    return action


def test_an_agent_paused_after_the_decision_has_its_approved_action_cancelled(registry):
    action = approved(registry)
    agent_services.agent_pause(agent=registry.agent, by=registry.officer, reason="stop")

    action = actions.action_execute(action_id=action.pk)

    assert action.status == ActionStatus.CANCELLED
    assert action.reasons[-1]["code"] == "agent_paused"
    assert not ConnectorCall.objects.exists()


def test_a_second_delivery_leaves_an_action_another_worker_is_executing(registry):
    action = approved(registry)
    action.status, action.started_at, action.attempts = ActionStatus.EXECUTING, timezone.now(), 1
    action.save()

    again = actions.action_execute(action_id=action.pk)
    assert again.status == ActionStatus.EXECUTING and again.attempts == 1
    assert not ConnectorCall.objects.exists()

    recovered = actions.action_execute(action_id=action.pk, recover=True)  # its worker died
    assert recovered.status == ActionStatus.SUCCEEDED and recovered.attempts == 2
    assert ConnectorCall.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_worker_keeps_its_database_session_across_tasks(postgres, celery_worker):
    """Celery's Django fix-up used to close the connection around every task: a new
    PostgreSQL session per task. Now one session serves them all (and the heartbeat its own)."""
    registry = build_registry()

    def sessions() -> int:
        time.sleep(1.5)  # PostgreSQL counts a live session's start at most once a second
        with postgres.cursor() as cursor:
            cursor.execute(
                "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
            )
            return cursor.fetchone()[0]

    # The first task opens the worker's session; count from there.
    first = approved(registry)
    wait_for(lambda: ActionRequest.objects.get(pk=first.pk).status == "succeeded", timeout=30,
             what="the first action")  # fmt: skip
    before = sessions()
    ids = [approved(registry, invoice=f"INV-{n}").pk for n in range(20)]
    wait_for(
        lambda: ActionRequest.objects.filter(pk__in=ids, status="succeeded").count() == 20,
        timeout=60,
        what=f"20 actions to run\n{celery_worker.log()}",
    )
    assert sessions() - before <= 3
