"""An officer grants a standing approval from a waiting request's pane, sees the next such
action allowed by it (the list counts the use, the trace names it), and revokes it, in
headless Chromium against the live portal; screenshots are kept."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from agents.portal_roles import PortalRole, group_name
from autonomy import actions
from tests.approvals.conftest import pending_action
from tests.autonomy.gate_fixtures import build_registry
from tests.e2e.test_run_timeline import sign_in_officer
from tests.oidc_fixtures import screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_officer_grants_a_standing_approval_from_a_request_and_revokes_it(
    live_server, browser_page
):
    from playwright.sync_api import expect

    registry = build_registry()
    waiting = pending_action(registry, amount=5000)
    page = browser_page
    sign_in_officer(page, live_server)
    officer = get_user_model().objects.get(username="rita-risk")
    officer.groups.add(Group.objects.get(name=group_name(PortalRole.APPROVER)))

    page.goto(f"{live_server.url}/inbox/{waiting.approval.pk}/")
    screenshot(page, "standing-request-pane")
    page.locator("#grant-standing-link").click()
    expect(page.locator("h1")).to_contain_text("Grant a standing approval")
    expect(page.locator("#id_operation")).to_have_value("erp.post-invoice")
    expect(page.locator("#id_role")).to_have_value("invoice-processor")
    expect(page.locator("#id_days")).to_have_value("7")
    page.fill("#id_daily_limit", "200")
    page.fill("#id_reason", "Month-end invoices of the finance unit")
    screenshot(page, "standing-grant-form")
    page.locator("#grant-standing").click()
    expect(page.locator(".flash-success")).to_contain_text("Granted standing approval")
    expect(page.locator("[data-state]")).to_have_text("active")

    allowed, _ = actions.action_request(
        agent=registry.agent, operation_key="erp.post-invoice",
        params={"invoice_id": "INV-7", "amount": 5000},
    )  # fmt: skip
    assert allowed.status == "approved", allowed.reasons
    page.goto(f"{live_server.url}/inbox/standing/")
    expect(page.locator(".standing-row")).to_have_count(1)
    expect(page.locator("[data-used]")).to_contain_text("1 / 200")
    screenshot(page, "standing-list")
    page.goto(f"{live_server.url}/actions/{allowed.pk}/trace/")
    expect(page.locator("#trace-standing")).to_contain_text("granted by rita-risk")
    screenshot(page, "standing-trace")
    page.locator("#trace-standing a").click()
    page.fill("#id_reason", "Month end is over")
    page.locator("#revoke-standing").click()
    expect(page.locator("[data-state]")).to_have_text("revoked")
    screenshot(page, "standing-detail-revoked")
    after, _ = actions.action_request(
        agent=registry.agent, operation_key="erp.post-invoice",
        params={"invoice_id": "INV-8", "amount": 5000},
    )  # fmt: skip
    assert after.status == "pending_approval"
