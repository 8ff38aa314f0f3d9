"""An officer finds a policy's versions from the admin, reads the diff of the change that
broke invoices, rolls it back with one click, and the agent's next request is decided by the
restored text — in headless Chromium against the live portal."""

import pytest
import requests
from django.contrib.auth.models import Group

from agents.portal_roles import PortalRole, group_name
from autonomy.models import Policy
from autonomy.policy import services
from tests.autonomy.gate_fixtures import BASELINE, build_registry
from tests.factories import UserFactory
from tests.oidc_fixtures import screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FORBID = (
    'forbid (principal, action, resource == Operation::"erp.post-invoice")\n'
    "when { context has amount && context.amount > 100 };"
)


def post_action(live_server, token, amount):
    return requests.post(
        f"{live_server.url}/api/v1/actions/",
        json={"operation": "erp.post-invoice", "params": {"invoice_id": "INV-1", "amount": amount}},
        headers={"Authorization": f"Bearer {token}", "Connection": "close"},
        timeout=10,
    ).json()


def test_officer_reads_the_diff_rolls_back_and_the_next_request_obeys(live_server, browser_page):
    from playwright.sync_api import expect

    registry = build_registry()
    officer = UserFactory(username="rita-risk", is_staff=True)
    officer.set_password("a long local password")
    officer.save()
    officer.groups.add(Group.objects.get(name=group_name(PortalRole.RISK_OFFICER)))
    baseline = Policy.objects.get(name="baseline")
    services.policy_save(
        policy=baseline, name="baseline", text=BASELINE + "\n" + FORBID, enabled=True,
        by=officer,
    )  # fmt: skip
    denied = post_action(live_server, registry.token, 500)
    assert denied["decision"] == "deny"
    assert denied["policies"]["forbids"][0]["version"] == 2

    page = browser_page
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "rita-risk")
    page.fill("#id_password", "a long local password")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/admin/")

    page.goto(f"{live_server.url}/admin/autonomy/policy/{baseline.pk}/change/")
    page.get_by_role("link", name="Versions and diffs").click()
    expect(page.locator("#policy-versions tr[data-version]")).to_have_count(2)
    page.locator("#policy-versions tr[data-version='2'] a").first.click()
    expect(page.locator("#policy-diff .diff-add").first).to_contain_text("forbid")
    screenshot(page, "policy-history-diff")

    page.goto(f"{live_server.url}/policies/{baseline.pk}/versions/1/")
    page.fill("#rollback-note", "the forbid caught every invoice")
    page.locator("#rollback").click()
    expect(page.locator("#version-number")).to_have_text("v3")
    screenshot(page, "policy-history-rolled-back")

    allowed = post_action(live_server, registry.token, 500)
    assert allowed["decision"] == "allow"
    assert allowed["policies"]["permits"][0]["version"] == 3
