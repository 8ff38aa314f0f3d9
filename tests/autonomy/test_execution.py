"""Executing an approved action: once, and never for an agent that was stopped since."""

import time

import pytest
from django.db import transaction
from django.utils import timezone

from agents import services as agent_services
from autonomy import actions, connectors
from autonomy.models import ActionRequest, ActionStatus, ConnectorCall, Operation
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


def test_an_executed_action_leaves_one_receipt_of_its_params_and_answer(registry):
    action = actions.action_execute(action_id=approved(registry).pk)

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


@pytest.mark.django_db(transaction=True)
def test_a_worker_whose_connection_drops_during_the_call_records_the_outcome_itself(postgres):
    """The database drops the executing worker's session while the system is answering: the
    worker reconnects and settles the action (one side effect), instead of leaving it
    ``executing`` under a live worker until its 300 s lease runs out."""
    import threading

    from django.db import connections

    registry = build_registry()
    registry.erp.config = {"latency_ms": 1500}  # the ledger's answer takes this long
    registry.erp.save()
    action = approved(registry)
    outcome = {}

    def worker():
        try:
            outcome["action"] = actions.action_execute(action_id=action.pk)
        except Exception as exc:  # noqa: BLE001 (the assertion below shows it)
            outcome["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=worker)
    thread.start()
    wait_for(lambda: ConnectorCall.objects.filter(idempotency_key=str(action.pk)).exists(),
             what="the side effect")  # fmt: skip
    with postgres.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] == 1  # the worker's session, mid-call
    thread.join(30)

    assert "error" not in outcome, outcome.get("error")
    assert outcome["action"].status == ActionStatus.SUCCEEDED
    assert ActionRequest.objects.get(pk=action.pk).status == ActionStatus.SUCCEEDED
    assert ConnectorCall.objects.filter(idempotency_key=str(action.pk)).count() == 1
