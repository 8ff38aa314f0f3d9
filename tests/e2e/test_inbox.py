"""An approver signs in, decides a request from the inbox, and sees a new one arrive live —
in headless Chromium against the live portal."""

import re

import pytest
from django.contrib.auth.models import Group

from agents.portal_roles import PortalRole, group_name
from approvals.models import ApprovalRequest, ApprovalStatus
from autonomy import actions, grants
from autonomy.models import ActionRequest, ActionStatus, DataClass, Effect, Operation
from autonomy.policy import services as policy_services
from tests.autonomy.gate_fixtures import build_registry
from tests.factories import BusinessUnitFactory, UserFactory, make_agent
from tests.oidc_fixtures import screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a long local password"


def ask(agent, *, op="erp.post-invoice", amount=5000, invoice="INV-1", reason=""):
    action, _ = actions.action_request(
        agent=agent,
        operation_key=op,
        params={"invoice_id": invoice, "amount": amount},
        reason=reason,
    )
    assert action.status == ActionStatus.PENDING_APPROVAL, action.reasons
    return ApprovalRequest.objects.get(action=action)


def test_approver_decides_from_the_inbox_and_sees_new_requests_arrive_live(
    live_server, browser_page
):
    from playwright.sync_api import expect

    # Finance is decided by the portal's Approvers; Logistics by its own group.
    registry = build_registry()
    finance = registry.agent.business_unit
    finance.approval_threshold = 0
    finance.dual_control_risk = 90
    finance.save()
    logistics = BusinessUnitFactory(
        slug="logistics", name="Logistics", approval_threshold=0,
        approver_group=Group.objects.create(name="Logistics approvers"),
    )  # fmt: skip
    role = registry.agent.role
    expenses = make_agent(slug="expense-bot", business_unit=finance, role=role, risk_tier=2)
    ship_bot = make_agent(slug="ship-bot", business_unit=logistics, role=role, risk_tier=1)
    pay = Operation.objects.create(
        connector=registry.erp, slug="pay-supplier", name="Pay supplier", effect=Effect.WRITE,
        sensitivity=5, data_class=DataClass.RESTRICTED, financial=True, amount_param="amount",
        params_schema={"type": "object"},
    )  # fmt: skip
    grants.grant(target=pay, to=role)
    policy_services.registry_changed()

    payment = ask(
        registry.agent, op="erp.pay-supplier", amount=940, invoice="INV-2291",
        reason="Supplier Nordlicht GmbH: invoice INV-2291 is due today; matched to PO-4410.",
    )  # fmt: skip
    ask(registry.agent, amount=1280, invoice="INV-2288", reason="Three-way match OK.")
    ask(expenses, amount=86.5, invoice="EXP-771", reason="Team lunch, within policy.")
    other_unit = ask(ship_bot, amount=15000, invoice="FRT-19")

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

    # Only Finance's requests, riskiest first; Logistics' request is not shown.
    page.goto(f"{live_server.url}/inbox/")
    items = page.locator(".request-item")
    expect(items).to_have_count(3)
    expect(items.first).to_have_attribute("data-id", str(payment.pk))
    expect(page.locator(f'[data-id="{other_unit.pk}"]')).to_have_count(0)
    expect(page.locator("#inbox-count")).to_have_text("3")
    screenshot(page, "inbox")

    # Opening one shows everything needed to decide, without leaving the page.
    items.first.locator("a.request-link").click()
    detail = page.locator("#inbox-detail")
    expect(detail.locator(".decision-card")).to_be_visible()
    expect(detail).to_contain_text("erp.pay-supplier")
    expect(detail).to_contain_text("Nordlicht GmbH")
    expect(detail).to_contain_text("Not part of a workflow.")
    expect(items.first).to_have_class(re.compile(r"\bis-selected\b"))
    assert page.url == f"{live_server.url}/inbox/{payment.pk}/"
    screenshot(page, "inbox-decision")

    page.fill("#id_comment", "Due today and matched to the PO.")
    detail.get_by_role("button", name="Approve", exact=True).click()
    expect(page.locator(".flash-success")).to_contain_text("The action is released to run.")
    expect(page.locator(".request-item")).to_have_count(2)
    payment.refresh_from_db()
    assert payment.status == ApprovalStatus.APPROVED
    assert ActionRequest.objects.get(pk=payment.action_id).status in (
        ActionStatus.APPROVED, ActionStatus.EXECUTING, ActionStatus.SUCCEEDED,
    )  # fmt: skip

    # A request that arrives while the page is open shows up without a reload.
    page.evaluate("window.__sameDocument = true")
    arrived = ask(expenses, amount=312, invoice="EXP-780", reason="Conference tickets.")
    expect(page.locator(f'.request-item[data-id="{arrived.pk}"]')).to_be_visible(timeout=10_000)
    expect(page.locator("#inbox-count")).to_have_text("3")
    assert page.evaluate("window.__sameDocument") is True
    screenshot(page, "inbox-live")
