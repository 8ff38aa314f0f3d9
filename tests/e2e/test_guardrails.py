"""Content rules as a person sees them, in headless Chromium against the live portal: a
brand-rule violation waits in the inbox with the words highlighted; a card number blocked
by the gate shows in the trace with the rule's name and only a masked number."""

import pytest
from django.contrib.auth.models import Group

from agents.portal_roles import PortalRole, group_name
from approvals.models import ApprovalRequest
from autonomy import actions, grants
from autonomy.models import (
    ActionStatus,
    Connector,
    ConnectorKind,
    ContentEffect,
    ContentRule,
    Detector,
    Effect,
    Operation,
)
from autonomy.policy import services as policy_services
from tests.autonomy.gate_fixtures import build_registry
from tests.factories import UserFactory
from tests.oidc_fixtures import screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a long local password"
CARD = "4111 1111 1111 1111"


def test_a_person_sees_the_matches_in_the_inbox_and_the_blocked_card_in_the_trace(
    live_server, browser_page
):
    from playwright.sync_api import expect

    registry = build_registry()
    mail = Connector.objects.create(slug="mail", name="Outbound mail", kind=ConnectorKind.EMAIL)
    send = Operation.objects.create(
        connector=mail, slug="send-email", name="Send an e-mail", effect=Effect.WRITE,
        params_schema={"type": "object"}, content_params=["subject", "body"],
        recipient_params=["to"],
    )  # fmt: skip
    grants.grant(target=send, to=registry.agent.role)
    policy_services.registry_changed()
    ContentRule.objects.create(name="Card numbers never leave", detector=Detector.CARD,
                               effect=ContentEffect.BLOCK)  # fmt: skip
    ContentRule.objects.create(
        name="Brand: no promises we cannot keep", detector=Detector.FORBIDDEN_TERMS,
        effect=ContentEffect.NEEDS_APPROVAL, options={"terms": ["guaranteed", "risk-free"]},
    )  # fmt: skip
    brand, _ = actions.action_request(
        agent=registry.agent, operation_key="mail.send-email", reason="Sales follow-up",
        params={"to": "ana@customer.example", "subject": "Our offer",
                "body": "Hello Ana,\nour plan gives guaranteed returns with a risk-free trial."},
    )  # fmt: skip
    assert brand.status == ActionStatus.PENDING_APPROVAL, brand.reasons
    card, _ = actions.action_request(
        agent=registry.agent, operation_key="mail.send-email", reason="Customer asked",
        params={"to": "ana@customer.example", "subject": "Your card",
                "body": f"Hello Ana,\nthe card on file is {CARD}."},
    )  # fmt: skip
    assert card.status == ActionStatus.DENIED

    approver = UserFactory(username="anna-approver", first_name="Anna", last_name="Berg")
    approver.is_staff = True
    approver.set_password(PASSWORD)
    approver.save()
    approver.groups.add(Group.objects.get(name=group_name(PortalRole.APPROVER)))
    page = browser_page
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "anna-approver")
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/admin/")

    approval = ApprovalRequest.objects.get(action=brand)
    page.goto(f"{live_server.url}/inbox/{approval.pk}/")
    marks = page.locator("#inbox-detail mark.content-match")
    expect(marks).to_have_count(2)
    expect(marks.first).to_have_text("guaranteed")
    expect(marks.nth(1)).to_have_text("risk-free")
    expect(page.locator("#approval-content-rules")).to_contain_text(
        "Brand: no promises we cannot keep"
    )
    page.locator("#approval-content-rules").scroll_into_view_if_needed()
    screenshot(page, "guardrails-inbox")

    page.goto(f"{live_server.url}/actions/{card.pk}/trace/")
    expect(page.locator("#trace-verdict")).to_have_text("Deny")
    content = page.locator("#trace-content")
    expect(content).to_contain_text("Card numbers never leave")
    expect(content).to_contain_text("1111")
    expect(page.locator("body")).not_to_contain_text(CARD)
    expect(page.locator("#trace-decision mark.content-block")).to_have_text(
        "[redacted: card number]"
    )
    screenshot(page, "guardrails-trace")
