"""E-mail approvals: every approver gets a signed, single-use link to a confirmation page; a GET
only shows, a POST decides, and every refusal is a clear page that changes nothing."""

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import time_machine
from django.conf import settings
from django.contrib.auth.models import Group
from django.core import mail
from django.test import Client
from django.utils import timezone

from agents.portal_roles import PortalRole, group_name
from approvals import services
from approvals.models import ApprovalRequest, ApprovalStatus, Channel, Decision, EmailLink
from autonomy.models import ActionStatus, AuditRecord
from tests.approvals.conftest import approver, pending_action
from tests.autonomy.gate_fixtures import build_registry

# E-mails are sent by a Celery task: it runs here, so they land in mail.outbox.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("tasks_run_in_process")]

LINK = re.compile(r"https?://\S+/approvals/e/[^/\s]+/")


@pytest.fixture
def people(db):
    """Two approvers, and the agent's owner who is an approver too (but never gets a link)."""
    registry = build_registry()
    alice, bob = approver("alice"), approver("bob")
    registry.officer.groups.add(Group.objects.get(name=group_name(PortalRole.APPROVER)))
    return registry, alice, bob


@pytest.fixture
def waiting(people, django_capture_on_commit_callbacks):
    """An action waiting for approval, its approvers' e-mails sent."""
    registry, alice, bob = people
    with django_capture_on_commit_callbacks(execute=True):
        action = pending_action(registry)
    return ApprovalRequest.objects.get(action=action), alice, bob


def link_for(user) -> str:
    """The path of the link in the e-mail sent to ``user``."""
    (message,) = [m for m in mail.outbox if m.to == [user.email]]
    return urlsplit(LINK.search(message.body).group(0)).path


def state(approval: ApprovalRequest) -> tuple:
    """Everything a link could change."""
    approval.refresh_from_db()
    approval.action.refresh_from_db()
    return (
        approval.status,
        approval.approvals,
        approval.action.status,
        Decision.objects.count(),
        EmailLink.objects.filter(used_at__isnull=False).count(),
        AuditRecord.objects.count(),
    )


def test_opening_an_approval_mails_each_approver_a_link_but_not_the_agents_owner(waiting):
    approval, alice, bob = waiting
    assert sorted(m.to[0] for m in mail.outbox) == ["alice@example.com", "bob@example.com"]
    for message in mail.outbox:
        assert approval.subject in message.subject
        url = LINK.search(message.body).group(0)
        assert url.startswith(f"{settings.AUTONOMY_PORTAL_URL}/approvals/e/")
    assert link_for(alice) != link_for(bob)
    assert EmailLink.objects.filter(request=approval).count() == 2


def test_a_portal_url_with_a_trailing_slash_still_mails_a_link_that_opens(
    people, settings, django_capture_on_commit_callbacks, client
):
    registry, alice, _ = people
    settings.AUTONOMY_PORTAL_URL = "https://autonomy.example.com/"
    with django_capture_on_commit_callbacks(execute=True):
        pending_action(registry)
    (message,) = [m for m in mail.outbox if m.to == [alice.email]]
    url = LINK.search(message.body).group(0)
    assert url.startswith("https://autonomy.example.com/approvals/e/")
    assert client.get(urlsplit(url).path).status_code == 200


def test_opening_the_link_shows_the_request_and_decides_nothing(waiting, client):
    approval, alice, _ = waiting
    before = state(approval)
    response = client.get(link_for(alice))
    assert response.status_code == 200
    page = response.content.decode()
    for shown in ("AP bot", "erp.post-invoice", "INV-1", str(approval.risk_score), "Approve"):
        assert shown in page
    assert 'name="csrfmiddlewaretoken"' in page
    assert state(approval) == before


def test_approving_through_the_link_approves_the_request_and_its_action(waiting, client):
    approval, alice, _ = waiting
    response = client.post(link_for(alice), {"verdict": "approve", "comment": "rent is due"})
    assert response.status_code == 200
    assert response.context["outcome"] == "approved"
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.APPROVED
    assert approval.action.status == ActionStatus.APPROVED
    decision = Decision.objects.get(request=approval)
    assert (decision.approver, decision.channel, decision.comment) == (
        alice,
        Channel.EMAIL,
        "rent is due",
    )
    assert EmailLink.objects.get(request=approval, approver=alice).used_at is not None


def test_a_used_link_is_refused_with_410_and_changes_nothing(waiting, client):
    approval, alice, _ = waiting
    path = link_for(alice)
    client.post(path, {"verdict": "approve"})
    before = state(approval)
    for again in (client.get(path), client.post(path, {"verdict": "reject"})):
        assert again.status_code == 410
        assert again.context["outcome"] == "used"
        assert b"already used" in again.content
    assert state(approval) == before


def test_a_tampered_or_unknown_link_is_refused_with_400(waiting, client):
    approval, alice, _ = waiting
    path = link_for(alice)
    token = path.split("/")[-2]
    before = state(approval)
    tampered = path.replace(token, token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb"))
    for bad in (tampered, "/approvals/e/not-a-token/"):
        for response in (client.get(bad), client.post(bad, {"verdict": "approve"})):
            assert response.status_code == 400
            assert response.context["outcome"] == "invalid"
    EmailLink.objects.filter(request=approval, approver=alice).delete()
    assert client.get(path).status_code == 400  # signed, but its single-use row is gone
    assert state(approval) == before


def test_an_expired_link_is_refused_with_410_and_changes_nothing(waiting, client):
    approval, alice, _ = waiting
    path = link_for(alice)
    before = state(approval)
    later = timezone.now() + timedelta(seconds=settings.AUTONOMY_APPROVAL_LINK_MAX_AGE + 60)
    with time_machine.travel(later, tick=False):
        for response in (client.get(path), client.post(path, {"verdict": "approve"})):
            assert response.status_code == 410
            assert response.context["outcome"] == "expired"
    assert state(approval) == before


def test_a_signed_in_colleague_cannot_use_someone_elses_link(waiting, client):
    approval, alice, bob = waiting
    client.force_login(bob)
    path = link_for(alice)
    before = state(approval)
    for response in (client.get(path), client.post(path, {"verdict": "approve"})):
        assert response.status_code == 403
        assert response.context["outcome"] == "someone_else"
        assert b"for someone else" in response.content
        assert approval.subject.encode() not in response.content
        assert alice.email.encode() not in response.content
    assert state(approval) == before


def test_the_signed_in_approver_may_use_their_own_link(waiting, client):
    approval, alice, _ = waiting
    client.force_login(alice)
    assert client.post(link_for(alice), {"verdict": "approve"}).status_code == 200
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.APPROVED


def test_rejecting_through_the_link_denies_the_action(waiting, client):
    approval, _, bob = waiting
    response = client.post(link_for(bob), {"verdict": "reject", "comment": "wrong vendor"})
    assert response.status_code == 200
    assert response.context["outcome"] == "rejected"
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.REJECTED
    assert approval.action.status == ActionStatus.DENIED
    assert approval.decisions.get().channel == Channel.EMAIL


def test_a_link_for_a_request_someone_else_settled_explains_and_stays_unused(waiting, client):
    approval, alice, bob = waiting
    services.approval_decide(
        request_id=approval.pk, approver=bob, verdict="approve", channel=Channel.INBOX
    )
    path = link_for(alice)
    before = state(approval)
    for response in (client.get(path), client.post(path, {"verdict": "reject"})):
        assert response.status_code == 409
        assert response.context["outcome"] == "settled"
        assert b"already approved" in response.content
    assert state(approval) == before
    assert EmailLink.objects.get(request=approval, approver=alice).used_at is None


def test_a_refused_second_decision_leaves_the_link_usable(waiting, client):
    approval, alice, bob = waiting
    approval.quorum = 2
    approval.save(update_fields=["quorum"])
    services.approval_decide(
        request_id=approval.pk, approver=alice, verdict="approve", channel=Channel.INBOX
    )
    path = link_for(alice)
    before = state(approval)
    response = client.post(path, {"verdict": "approve"})
    assert response.status_code == 409
    assert response.context["outcome"] == "already_decided"
    assert state(approval) == before
    assert client.get(path).status_code == 200  # still usable: nothing was spent

    response = client.post(link_for(bob), {"verdict": "approve"})
    assert response.context["outcome"] == "approved"


def test_with_a_quorum_of_two_one_approval_through_a_link_is_recorded_and_waits(waiting, client):
    approval, alice, _ = waiting
    approval.quorum = 2
    approval.save(update_fields=["quorum"])
    response = client.post(link_for(alice), {"verdict": "approve"})
    assert response.status_code == 200
    assert response.context["outcome"] == "recorded"
    approval.refresh_from_db()
    assert (approval.status, approval.approvals) == (ApprovalStatus.PENDING, 1)


def test_an_approver_removed_from_the_group_is_told_and_nothing_changes(waiting, client):
    approval, alice, _ = waiting
    alice.groups.clear()
    path = link_for(alice)
    before = state(approval)
    for response in (client.get(path), client.post(path, {"verdict": "approve"})):
        assert response.status_code == 403
        assert response.context["outcome"] == "not_an_approver"
    assert state(approval) == before


def test_a_post_without_a_verdict_shows_the_page_again_and_decides_nothing(waiting, client):
    approval, alice, _ = waiting
    before = state(approval)
    response = client.post(link_for(alice), {"verdict": "maybe", "comment": "hmm"})
    assert response.status_code == 400
    assert b"Choose Approve or Reject." in response.content and b"hmm" in response.content
    assert state(approval) == before


def test_a_post_without_the_csrf_token_is_refused_and_decides_nothing(waiting):
    approval, alice, _ = waiting
    browser = Client(enforce_csrf_checks=True)
    path = link_for(alice)
    before = state(approval)
    assert browser.post(path, {"verdict": "approve"}).status_code == 403
    assert state(approval) == before
    page = browser.get(path)
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content).group(1)
    response = browser.post(path, {"verdict": "approve", "csrfmiddlewaretoken": token.decode()})
    assert response.status_code == 200
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.APPROVED


def test_the_plain_text_e_mail_shows_parameters_and_reason_as_written(
    people, django_capture_on_commit_callbacks
):
    """Issue 24 item 7: a quote, an ampersand or an angle bracket reaches the approver as
    written, never as an HTML entity."""
    from autonomy import actions

    registry, alice, _ = people
    unit = registry.agent.business_unit
    unit.approval_threshold = 0
    unit.save(update_fields=["approval_threshold"])
    with django_capture_on_commit_callbacks(execute=True):
        action, _ = actions.action_request(
            agent=registry.agent,
            operation_key="erp.post-invoice",
            params={"invoice_id": "O'Brien & Sons <INV-7>", "amount": 120},
            reason='Pay "now" & <fast>',
        )
    assert action.status == ActionStatus.PENDING_APPROVAL
    (message,) = [m for m in mail.outbox if m.to == [alice.email]]
    body = message.body
    assert 'Parameters:  {"amount": 120, "invoice_id": "O\'Brien & Sons <INV-7>"}' in body
    assert 'Reason:      Pay "now" & <fast>' in body
    for entity in ("&amp;", "&#x27;", "&#39;", "&quot;", "&lt;", "&gt;"):
        assert entity not in body
