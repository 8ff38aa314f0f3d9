"""An officer writes a Cedar policy in the admin, simulates it, enables it, and the agent's
next request obeys it — in headless Chromium against the live portal."""

import pytest
import requests
from django.contrib.auth.models import Group

from agents.portal_roles import PortalRole, group_name
from autonomy.models import ActionRequest, Policy
from tests.autonomy.gate_fixtures import build_registry
from tests.factories import UserFactory
from tests.oidc_fixtures import screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FORBID = 'forbid (principal in Role::"invoice-processor", action, resource == Operation::"erp.post-invoice")\nwhen { context has amount && context.amount > 1000 };'


def post_action(live_server, token, amount):
    return requests.post(
        f"{live_server.url}/api/v1/actions/",
        json={"operation": "erp.post-invoice", "params": {"invoice_id": "INV-9", "amount": amount}},
        headers={"Authorization": f"Bearer {token}", "Connection": "close"},
        timeout=10,
    )


def test_officer_writes_simulates_and_enables_a_policy_that_the_next_request_obeys(
    live_server, browser_page
):
    from playwright.sync_api import expect

    registry = build_registry()
    officer = UserFactory(username="rita-risk", is_staff=True)
    officer.set_password("a long local password")
    officer.save()
    officer.groups.add(Group.objects.get(name=group_name(PortalRole.RISK_OFFICER)))
    assert post_action(live_server, registry.token, 5000).json()["decision"] == "allow"

    page = browser_page
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "rita-risk")
    page.fill("#id_password", "a long local password")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/admin/")

    # A policy with a typo is refused with Cedar's message, and nothing is saved.
    page.goto(f"{live_server.url}/admin/autonomy/policy/add/")
    page.fill("#id_name", "Large invoices need finance review")
    page.fill("#id_text", FORBID.replace("context.amount > 1000", "context.amout > 1000"))
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".errorlist")).to_be_visible()
    screenshot(page, "policy-invalid")
    assert not Policy.objects.filter(name="Large invoices need finance review").exists()

    # The corrected policy is saved disabled; the simulate page shows what it would do.
    page.fill("#id_text", FORBID)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    policy = Policy.objects.get(name="Large invoices need finance review")
    assert policy.enabled is False
    page.goto(f"{live_server.url}/admin/autonomy/actionrequest/simulate/")
    page.fill("#id_agent", "ap-bot")
    page.select_option("#id_operation", label="erp.post-invoice")
    page.fill("#id_params", '{"invoice_id": "INV-9", "amount": 5000}')
    page.fill("#id_draft_policy", FORBID)
    page.get_by_role("button", name="Simulate").click()
    expect(page.locator("#simulation-result")).to_contain_text("policy_forbid")
    screenshot(page, "policy-simulated")
    assert post_action(live_server, registry.token, 5000).json()["decision"] == "allow"

    # Enabled from the list: the agent's very next request is refused, naming the policy.
    page.goto(f"{live_server.url}/admin/autonomy/policy/")
    page.locator(f"input[name=_selected_action][value='{policy.pk}']").check()
    page.select_option("select[name=action]", "enable_policies")
    page.get_by_role("button", name="Go").click()
    expect(page.locator(".messagelist")).to_contain_text("Enabled 1")
    screenshot(page, "policy-enabled")
    denied = post_action(live_server, registry.token, 5000).json()
    assert denied["decision"] == "deny"
    assert denied["reasons"][0]["code"] == "policy_forbid"
    assert denied["reasons"][0]["details"]["policies"] == ["Large invoices need finance review"]
    assert post_action(live_server, registry.token, 500).json()["decision"] == "allow"
    assert ActionRequest.objects.count() == 4
