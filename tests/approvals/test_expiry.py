"""Time-based approval work on a moved clock (never a sleep): the reminder at half the
escalation time, the escalation to risk officers, and expiry with its configured outcome."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core import mail

from agents.portal_roles import PortalRole, group_name
from approvals import services
from approvals.models import ApprovalRequest, ApprovalStatus, Decision, ExpiryOutcome
from autonomy.models import ActionStatus, AuditRecord
from tests.approvals.conftest import approver, pending_action
from tests.autonomy.gate_fixtures import build_registry

# E-mails are sent by a Celery task: it runs here, so they land in mail.outbox.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("tasks_run_in_process")]

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ESCALATE = timedelta(seconds=settings.AUTONOMY_APPROVAL_ESCALATE_SECONDS)
TTL = timedelta(seconds=settings.AUTONOMY_APPROVAL_TTL_SECONDS)
SECOND = timedelta(seconds=1)


@pytest.fixture
def clock():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def waiting(db, clock, django_capture_on_commit_callbacks):
    """At START an action waits for the approver Ann; Rita is a risk officer."""
    registry = build_registry()
    ann = approver("ann")
    rita = approver("rita", group=group_name(PortalRole.RISK_OFFICER))
    with django_capture_on_commit_callbacks(execute=True):
        action = pending_action(registry)
    mail.outbox.clear()
    return ApprovalRequest.objects.get(action=action), ann, rita


@pytest.fixture
def sweep(django_capture_on_commit_callbacks):
    """One beat of the sweep, with the e-mails it dispatches on commit sent."""

    def run() -> dict[str, int]:
        with django_capture_on_commit_callbacks(execute=True):
            return services.approvals_sweep()

    return run


def subjects() -> list[str]:
    return sorted(f"{m.to[0]} {m.subject.split(':')[0]}" for m in mail.outbox)


def state(approval: ApprovalRequest) -> tuple:
    approval.refresh_from_db()
    approval.action.refresh_from_db()
    return (
        approval.status,
        approval.action.status,
        approval.escalated_at,
        approval.reminded_at,
        Decision.objects.count(),
        AuditRecord.objects.count(),
        len(mail.outbox),
    )


def may_decide(user, approval) -> bool:
    fresh = get_user_model().objects.get(pk=user.pk)  # no cached permissions
    return services.may_decide(user=fresh, request=approval)


def test_nothing_happens_before_half_the_escalation_time(waiting, clock, sweep):
    approval, _, _ = waiting
    before = state(approval)
    clock.shift(ESCALATE / 2 - SECOND)
    assert sweep() == {"expired": 0, "escalated": 0, "reminded": 0}
    assert state(approval) == before


def test_half_way_to_escalation_the_approvers_are_reminded_once(waiting, clock, sweep):
    approval, _, _ = waiting
    clock.shift(ESCALATE / 2)
    assert sweep() == {"expired": 0, "escalated": 0, "reminded": 1}
    assert subjects() == ["ann@example.com [Autonomy OS] Reminder"]
    approval.refresh_from_db()
    assert approval.reminded_at == START + ESCALATE / 2

    clock.shift(timedelta(minutes=30))
    assert sweep() == {"expired": 0, "escalated": 0, "reminded": 0}
    assert len(mail.outbox) == 1


def test_after_the_escalation_time_risk_officers_may_decide_and_are_mailed(waiting, clock, sweep):
    approval, ann, rita = waiting
    assert not may_decide(rita, approval)
    clock.shift(ESCALATE)
    assert sweep() == {"expired": 0, "escalated": 1, "reminded": 0}
    assert may_decide(rita, approval) and may_decide(ann, approval)
    assert subjects() == [
        "ann@example.com [Autonomy OS] Escalated",
        "rita@example.com [Autonomy OS] Escalated",
    ]
    assert AuditRecord.objects.filter(kind="approval_escalated").count() == 1

    before = state(approval)
    clock.shift(timedelta(minutes=30))
    assert sweep() == {"expired": 0, "escalated": 0, "reminded": 0}
    assert state(approval) == before


def test_an_unanswered_request_expires_and_its_action_is_denied(waiting, clock, sweep):
    approval, _, _ = waiting
    assert approval.expiry_outcome == ExpiryOutcome.DENY
    clock.shift(TTL - SECOND)
    sweep()
    assert state(approval)[:2] == (ApprovalStatus.PENDING, ActionStatus.PENDING_APPROVAL)

    clock.shift(SECOND)
    assert sweep()["expired"] == 1
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.EXPIRED
    assert approval.decided_at == START + TTL
    action = approval.action
    action.refresh_from_db()
    assert action.status == ActionStatus.DENIED
    assert action.reasons[-1]["code"] == "approval_expired"
    assert AuditRecord.objects.filter(kind="approval_expired").count() == 1

    before = state(approval)
    clock.shift(timedelta(hours=1))
    assert sweep() == {"expired": 0, "escalated": 0, "reminded": 0}
    assert state(approval) == before


def test_with_expiry_outcome_approve_an_unanswered_request_is_approved(
    waiting, clock, django_capture_on_commit_callbacks
):
    approval, _, _ = waiting
    approval.expiry_outcome = ExpiryOutcome.APPROVE
    approval.save(update_fields=["expiry_outcome"])
    clock.shift(TTL)
    with django_capture_on_commit_callbacks() as dispatched:  # kept, not run: stays approved
        assert services.approvals_sweep()["expired"] == 1
    assert len(dispatched) == 1  # the action's execution, queued for after commit
    approval.refresh_from_db()
    approval.action.refresh_from_db()
    assert approval.status == ApprovalStatus.APPROVED
    assert approval.action.status == ActionStatus.APPROVED
    assert approval.action.reasons[-1]["code"] == "approval_expired"

    before = state(approval)
    with django_capture_on_commit_callbacks() as again:
        assert services.approvals_sweep() == {"expired": 0, "escalated": 0, "reminded": 0}
    assert again == [] and state(approval) == before


def test_a_decided_request_is_left_alone_by_the_sweep(waiting, clock, sweep):
    approval, ann, _ = waiting
    services.approval_decide(
        request_id=approval.pk, approver=ann, verdict="reject", channel="inbox"
    )
    before = state(approval)
    clock.shift(TTL + ESCALATE)
    assert sweep() == {"expired": 0, "escalated": 0, "reminded": 0}
    assert state(approval) == before


def test_the_escalation_link_lets_the_risk_officer_approve(waiting, clock, sweep, client):
    approval, _, rita = waiting
    clock.shift(ESCALATE)
    sweep()
    (message,) = [m for m in mail.outbox if m.to == ["rita@example.com"]]
    path = "/approvals/e/" + message.body.split("/approvals/e/")[1].split("/")[0] + "/"
    assert client.post(path, {"verdict": "approve"}).status_code == 200
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.APPROVED
    assert approval.decisions.get().approver == rita
    assert Group.objects.get(name=group_name(PortalRole.RISK_OFFICER)) == approval.escalation_group
