"""An officer watches the fleet live and opens an action's trace — in headless Chromium
against the live portal, the stream served as server-sent events."""

import pytest
from django.contrib.auth.models import Group

from agents.portal_roles import PortalRole, group_name
from autonomy import actions, gate
from portal import views_activity
from tests.autonomy.gate_fixtures import build_registry
from tests.conftest import wait_for
from tests.factories import UserFactory
from tests.oidc_fixtures import screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a long local password"


@pytest.fixture
def short_streams(settings):
    """Streams close after a few seconds and beat every second, so a stream whose browser
    has gone notices at once and its server thread (and database connection) ends."""
    settings.AUTONOMY_ACTIVITY_STREAM_SECONDS = 5
    settings.AUTONOMY_ACTIVITY_HEARTBEAT_SECONDS = 0.2
    yield
    # The page is gone; its stream ends at its next heartbeat. Wait, so that no stream
    # thread still polls the database when the test's database is torn down.
    wait_for(lambda: views_activity.open_streams() == 0, timeout=10, what="streams closed")


def sign_in_officer(page, live_server) -> None:
    officer = UserFactory(username="rita-risk", first_name="Rita", last_name="Risk")
    officer.is_staff = True
    officer.set_password(PASSWORD)
    officer.save()
    officer.groups.add(Group.objects.get(name=group_name(PortalRole.RISK_OFFICER)))
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "rita-risk")
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/admin/")


def test_officer_sees_a_new_action_arrive_without_a_reload_and_opens_its_trace(
    live_server, browser_page, short_streams
):
    from playwright.sync_api import expect

    registry = build_registry()
    earlier, _ = actions.action_request(
        agent=registry.agent,
        operation_key="erp.read-invoice",
        params={},
        reason="look before posting",
    )
    page = browser_page
    sign_in_officer(page, live_server)

    page.goto(f"{live_server.url}/activity/")
    expect(page.locator("#stream-state")).to_have_attribute("data-state", "live")
    expect(page.locator(f'.activity-row a[href="/actions/{earlier.pk}/trace/"]')).to_be_visible()
    page.evaluate("window.__sameDocument = true")

    action, _ = actions.action_request(
        agent=registry.agent,
        operation_key="erp.post-invoice",
        params={"invoice_id": "INV-7", "amount": 4200},
        reason="monthly close",
        approval=gate.ApprovalAsk(reason="Posting needs a person."),
    )

    link = page.locator(f'.activity-row a[href="/actions/{action.pk}/trace/"]').first
    expect(link).to_be_visible(timeout=10_000)
    newest = page.locator(".activity-row").first
    expect(newest).to_contain_text("AP bot")
    decision = page.locator(".activity-row[data-kind=action_decision]").first
    expect(decision).to_contain_text("erp.post-invoice")
    expect(decision).to_contain_text("needs approval")
    assert page.evaluate("window.__sameDocument") is True
    screenshot(page, "activity-stream")

    page.locator(".activity-row[data-kind=action_decision] a.trace-link").first.click()
    page.wait_for_url(f"{live_server.url}/actions/{action.pk}/trace/")
    expect(page.locator("#trace-reasons")).to_contain_text("approval_gate")
    expect(page.locator("#trace-policies")).to_contain_text("baseline")
    expect(page.locator("#trace-risk")).to_contain_text("Amount")
    expect(page.locator("#trace-approval")).to_contain_text("Pending")
    screenshot(page, "action-trace")
    page.goto("about:blank")
