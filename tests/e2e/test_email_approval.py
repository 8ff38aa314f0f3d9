"""An approval by e-mail, end to end on real parts: the agent's action waits, a Celery worker
mails the approver over SMTP, the approver opens the link in Chromium and approves, and the
worker runs the action. The link then works no more."""

import email
import re
import threading
from email import policy

import pytest
import requests
from aiosmtpd.controller import Controller

from approvals.models import ApprovalRequest, ApprovalStatus, Channel, Decision, EmailLink
from autonomy.models import ActionRequest, ActionStatus, ConnectorCall
from tests.approvals.conftest import approver
from tests.autonomy.gate_fixtures import build_registry
from tests.conftest import wait_for
from tests.oidc_fixtures import screenshot
from tests.realparts import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

LINK = re.compile(r"https?://\S+/approvals/e/[^/\s]+/")


class Inbox:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content, policy=policy.default)
        with self.lock:
            self.messages.append(message)
        return "250 Message accepted for delivery"

    def received(self) -> list[email.message.EmailMessage]:
        with self.lock:
            return list(self.messages)


@pytest.fixture
def smtp_server():
    """A real SMTP server on loopback; yields (port, inbox)."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port, inbox
    finally:
        controller.stop()


@pytest.fixture
def celery_worker_env(smtp_server, live_server):
    """The worker sends over SMTP, with links to this live portal."""
    port, _ = smtp_server
    return {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_URL": f"smtp://127.0.0.1:{port}",
        "AUTONOMY_PORTAL_URL": live_server.url,
    }


def post_action(live_server, token):
    return requests.post(
        f"{live_server.url}/api/v1/actions/",
        json={"operation": "erp.post-invoice", "params": {"invoice_id": "INV-77", "amount": 420}},
        headers={"Authorization": f"Bearer {token}", "Connection": "close"},
        timeout=10,
    )


def test_an_approver_approves_by_email_link_and_the_worker_runs_the_action(
    live_server, smtp_server, celery_worker, browser_page
):
    from playwright.sync_api import expect

    _, inbox = smtp_server
    registry = build_registry()
    unit = registry.agent.business_unit
    unit.approval_threshold = 0  # every action of this unit needs a person
    unit.save(update_fields=["approval_threshold"])
    alice = approver("alice")

    response = post_action(live_server, registry.token)
    assert response.status_code in (200, 201, 202), response.text
    assert response.json()["decision"] == "needs_approval"
    action = ActionRequest.objects.get()
    assert action.status == ActionStatus.PENDING_APPROVAL

    # The worker mails the approver over SMTP; the link points at this portal.
    (message,) = wait_for(inbox.received, timeout=30, what="the approval e-mail over SMTP")
    assert message["To"] == alice.email
    assert "Approval needed" in message["Subject"]
    url = LINK.search(message.get_body(("plain",)).get_content()).group(0)
    assert url.startswith(f"{live_server.url}/approvals/e/")

    # Opening the link only shows the request.
    page = browser_page
    page.goto(url)
    expect(page.locator("h1")).to_contain_text("AP bot asks to post invoice")
    expect(page.locator("#approval-params")).to_contain_text("INV-77")
    screenshot(page, "email-confirm")
    action.refresh_from_db()
    assert action.status == ActionStatus.PENDING_APPROVAL and not Decision.objects.exists()

    page.fill("#id_comment", "Vendor checked.")
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("h1")).to_have_text("Approved")
    screenshot(page, "email-approved")
    decision = Decision.objects.get()
    assert (decision.approver, decision.channel) == (alice, Channel.EMAIL)
    assert ApprovalRequest.objects.get().status == ApprovalStatus.APPROVED

    # The worker executes the approved action through its connector, once.
    wait_for(
        lambda: ActionRequest.objects.get(pk=action.pk).status == ActionStatus.SUCCEEDED,
        timeout=30,
        what=f"the action to succeed on the worker\n{celery_worker.log()}",
    )
    assert ConnectorCall.objects.filter(idempotency_key=str(action.pk)).count() == 1

    # The same link again: a clear "already used" page, and nothing changes.
    again = page.goto(url)
    assert again.status == 410
    expect(page.locator("h1")).to_have_text("This link was already used")
    screenshot(page, "email-link-used")
    assert Decision.objects.count() == 1
    assert ConnectorCall.objects.count() == 1
    assert EmailLink.objects.get().used_at is not None
    assert ActionRequest.objects.get(pk=action.pk).status == ActionStatus.SUCCEEDED
    assert len(inbox.received()) == 1
