"""Executing an approved action: once, and never for an agent that was stopped since."""

from django.db import transaction
from django.utils import timezone

from agents import services as agent_services
from autonomy import connectors, services
from autonomy.models import ActionStatus, ConnectorCall, Operation


def approved(registry):
    action, _ = services.action_request(
        agent=registry.agent,
        operation_key="erp.post-invoice",
        params={"invoice_id": "INV-1", "amount": 10},
        reason="month end",
        dispatch=False,
    )
    assert action.status == ActionStatus.APPROVED, action.reasons
    return action


def test_an_agent_paused_after_the_decision_has_its_approved_action_cancelled(registry):
    action = approved(registry)
    agent_services.agent_pause(agent=registry.agent, by=registry.officer, reason="stop")

    action = services.action_execute(action_id=action.pk)

    assert action.status == ActionStatus.CANCELLED
    assert action.reasons[-1]["code"] == "agent_paused"
    assert not ConnectorCall.objects.exists()


def test_a_second_delivery_leaves_an_action_another_worker_is_executing(registry):
    action = approved(registry)
    action.status, action.started_at, action.attempts = ActionStatus.EXECUTING, timezone.now(), 1
    action.save()

    again = services.action_execute(action_id=action.pk)
    assert again.status == ActionStatus.EXECUTING and again.attempts == 1
    assert not ConnectorCall.objects.exists()

    recovered = services.action_execute(action_id=action.pk, recover=True)  # its worker died
    assert recovered.status == ActionStatus.SUCCEEDED and recovered.attempts == 2
    assert ConnectorCall.objects.count() == 1


def test_an_executed_action_leaves_one_receipt_of_its_params_and_answer(registry):
    action = services.action_execute(action_id=approved(registry).pk)

    receipt = ConnectorCall.objects.get(idempotency_key=str(action.pk))
    assert action.status == ActionStatus.SUCCEEDED
    assert (receipt.operation_id, receipt.params) == (registry.post.pk, action.params)
    assert action.outcome == {**receipt.result, "receipt": receipt.pk, "replayed": False}
    assert receipt.result["accepted"] == action.params and receipt.created_at is not None


def test_a_repeated_call_answers_from_its_receipt_without_a_second_side_effect(registry):
    post = Operation.objects.select_related("connector").get(pk=registry.post.pk)
    params = {"invoice_id": "INV-9", "amount": 5}

    first = connectors.call(operation=post, params=params, idempotency_key="call-1")
    # Inside a caller's transaction too, which stays usable after the clash on the key.
    with transaction.atomic():
        again = connectors.call(operation=post, params={"other": 1}, idempotency_key="call-1")
        assert ConnectorCall.objects.filter(idempotency_key="call-1").count() == 1

    assert first["replayed"] is False and again["replayed"] is True
    assert {**again, "replayed": False} == first  # the first call's answer, params and all
