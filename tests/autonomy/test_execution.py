"""Executing an approved action: once, and never for an agent that was stopped since."""

from django.utils import timezone

from agents import services as agent_services
from autonomy import actions
from autonomy.models import ActionStatus, ConnectorCall


def approved(registry):
    action, _ = actions.action_request(
        agent=registry.agent,
        operation_key="erp.post-invoice",
        params={"invoice_id": "INV-1", "amount": 10},
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
