"""An approver opens a group of similar requests in the grouped inbox, reads its spread and
sample, and decides the whole group in one action — in headless Chromium."""

import pytest
from django.contrib.auth.models import Group

from agents.portal_roles import PortalRole, group_name
from approvals.models import ApprovalRequest, ApprovalStatus, Decision
from autonomy import actions
from autonomy.models import ActionStatus, AuditRecord
from tests.autonomy.gate_fixtures import build_registry
from tests.factories import UserFactory, make_agent
from tests.oidc_fixtures import screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a long local password"


def ask(agent, n: int) -> ApprovalRequest:
    action, _ = actions.action_request(
        agent=agent,
        operation_key="erp.post-invoice",
        params={"invoice_id": f"INV-{2200 + n}", "amount": 120 + 15 * n},
        reason=f"Invoice INV-{2200 + n} matched to its purchase order.",
    )
    assert action.status == ActionStatus.PENDING_APPROVAL, action.reasons
    return ApprovalRequest.objects.get(action=action)


def test_approver_opens_a_group_reads_its_sample_and_decides_it(live_server, browser_page):
    from playwright.sync_api import expect

    registry = build_registry()
    finance = registry.agent.business_unit
    finance.approval_threshold = 0
    finance.dual_control_risk = 95
    finance.save()
    second = make_agent(slug="ap-bot-2", business_unit=finance, role=registry.agent.role)
    members = [ask(registry.agent if n % 2 else second, n) for n in range(8)]
    assert len({(m.risk_score >= 40, m.risk_score >= 70) for m in members}) == 1

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

    page.goto(f"{live_server.url}/inbox/")
    page.locator("#inbox-tab-groups").click()
    groups = page.locator(".group-list .request-item")
    expect(groups).to_have_count(1)
    expect(groups.first).to_contain_text("8×")
    expect(groups.first).to_contain_text("Post invoice")
    screenshot(page, "inbox-groups")

    groups.first.locator("a.request-link").click()
    expect(page.locator("#group-title")).to_contain_text("8 × post invoice by")
    spread = page.locator("#group-spread")
    expect(spread.locator('[data-param="amount"]')).to_contain_text("min 120")
    expect(spread.locator('[data-param="amount"]')).to_contain_text("max 225")
    sample = page.locator("#group-sample .sample-item")
    expect(sample).to_have_count(5)
    expect(sample.first).to_contain_text("matched to its purchase order")
    expect(page.locator("#group-agents")).to_contain_text("Ap Bot 2")
    screenshot(page, "inbox-group")

    left_out = sample.first.get_attribute("data-id")
    sample.first.locator("input[name=exclude]").check()
    page.fill("#id_comment", "All matched to their purchase orders.")
    page.get_by_role("button", name="Approve all").click()
    expect(page.locator(".flash-success")).to_contain_text("You approved 7 requests.")
    screenshot(page, "inbox-group-decided")

    decided = ApprovalRequest.objects.exclude(pk=left_out)
    assert set(decided.values_list("status", flat=True)) == {ApprovalStatus.APPROVED}
    assert ApprovalRequest.objects.get(pk=left_out).status == ApprovalStatus.PENDING
    assert Decision.objects.filter(approver=approver).count() == 7
    assert AuditRecord.objects.filter(kind="approval_decision").count() == 7
