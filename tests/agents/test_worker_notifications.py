"""A real Celery worker process on the configured broker (Redis in CI) sends the owner's mail."""

import pytest

from agents.models import AgentStatus
from tests.conftest import wait_for
from tests.factories import UserFactory, make_agent


@pytest.fixture
def owned_agent(transactional_db):
    return make_agent(
        slug="payroll-bot", owner=UserFactory(username="dana", email="dana@example.com")
    )


def test_quarantine_mails_the_owner_from_the_worker_with_the_request_id(
    celery_worker, owned_agent, it_admin_client
):
    response = it_admin_client.post(
        f"/api/v1/agents/{owned_agent.pk}/quarantine/",
        {"reason": "odd hours"},
        format="json",
        HTTP_X_REQUEST_ID="req-quarantine-1",
    )
    assert response.status_code == 200
    mails = wait_for(celery_worker.mails, timeout=30, what="the owner's mail from the worker")
    assert len(mails) == 1
    mail = mails[0]
    assert "To: dana@example.com" in mail
    assert "Payroll Bot" in mail and "quarantined" in mail
    assert "Reason: odd hours" in mail
    assert "Reference: req-quarantine-1" in mail
    # the worker's own log lines carry the same request id
    assert "[req-quarantine-1]" in celery_worker.log()


def test_a_stale_notice_is_dropped_when_the_status_moved_on(celery_worker, owned_agent, it_admin):
    from django.db import transaction

    from agents import services
    from config.celery import app

    # Both notices are dispatched on commit, so the "paused" one reaches the worker when the
    # agent is already active again: the worker must drop it and send only the "active" one.
    with transaction.atomic():
        services.agent_pause(agent=owned_agent, by=it_admin)
        services.agent_resume(agent=owned_agent, by=it_admin)
    # One worker takes the queue in order: once the "active" mail exists, the "paused"
    # notice before it has been handled, and must have been dropped.
    mails = wait_for(celery_worker.mails, timeout=30, what="the 'active' notice")
    assert len(mails) == 1 and "is now active" in mails[0], celery_worker.log()
    assert f"status notice for {owned_agent.pk} skipped" in celery_worker.log()
    owned_agent.refresh_from_db()
    assert owned_agent.status == AgentStatus.ACTIVE
    assert app.conf.task_default_queue.startswith("autonomy-test-")
