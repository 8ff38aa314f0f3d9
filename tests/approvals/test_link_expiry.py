"""The server, not the signature, decides when an e-mail link expires: the link's own record
and its request's expiry are checked on every use, and a used link stays refused."""

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from approvals.models import ApprovalRequest, ApprovalStatus, Decision
from tests.approvals.conftest import approver, pending_action
from tests.autonomy.gate_fixtures import build_registry

# E-mails are sent by a Celery task: it runs here, so they land in mail.outbox.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("tasks_run_in_process")]

LINK = re.compile(r"https?://\S+/approvals/e/[^/\s]+/")


@pytest.fixture
def issued(settings, django_capture_on_commit_callbacks):
    """A pending request whose approver was mailed a link meant to live one hour."""
    settings.AUTONOMY_APPROVAL_LINK_MAX_AGE = 3600
    registry = build_registry()
    alice = approver("alice")
    with django_capture_on_commit_callbacks(execute=True):
        action = pending_action(registry)
    (message,) = [m for m in mail.outbox if m.to == [alice.email]]
    path = urlsplit(LINK.search(message.body).group(0)).path
    return ApprovalRequest.objects.get(action=action), path


def test_a_link_past_its_server_side_expiry_is_refused_though_its_signature_is_still_valid(
    issued, client, settings
):
    approval, path = issued
    settings.AUTONOMY_APPROVAL_LINK_MAX_AGE = 30 * 24 * 3600  # the signature would still pass
    with time_machine.travel(timezone.now() + timedelta(hours=2), tick=False):
        for response in (client.get(path), client.post(path, {"verdict": "approve"})):
            assert response.status_code == 410
            assert response.context["outcome"] == "expired"
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.PENDING
    assert not Decision.objects.exists()


def test_a_link_whose_request_has_expired_is_refused_before_the_sweeper_runs(issued, client):
    approval, path = issued
    ApprovalRequest.objects.filter(pk=approval.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    for response in (client.get(path), client.post(path, {"verdict": "approve"})):
        assert response.status_code == 410
        assert response.context["outcome"] == "expired"
    assert not Decision.objects.exists()


def test_a_used_link_is_refused(issued, client):
    approval, path = issued
    assert client.post(path, {"verdict": "reject"}).status_code == 200
    for response in (client.get(path), client.post(path, {"verdict": "approve"})):
        assert response.status_code == 410
        assert response.context["outcome"] == "used"
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.REJECTED
    assert Decision.objects.count() == 1
