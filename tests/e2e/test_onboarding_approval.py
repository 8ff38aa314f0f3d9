"""An agent registered by an IT admin waits in the inbox: the unit's owner approves stage 1,
a risk officer stage 2, and the agent page then shows it active."""

import pytest
from django.contrib.auth.models import Group

from agents import services as agent_services
from agents.models import Agent, AgentStatus
from agents.portal_roles import PortalRole, group_name
from approvals.models import ApprovalRequest
from tests.autonomy.gate_fixtures import build_registry
from tests.factories import UserFactory
from tests.oidc_fixtures import screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a long local password"


def person(username: str, first: str, group: str | None = None):
    user = UserFactory(username=username, first_name=first, last_name="Demo", is_staff=True)
    user.set_password(PASSWORD)
    user.save()
    if group:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    return user


def sign_in(page, live_server, username: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/admin/")


def test_a_registration_is_approved_by_the_unit_owner_then_security(live_server, browser_page):
    from playwright.sync_api import expect

    registry = build_registry()
    unit = registry.agent.business_unit
    unit.owner = person("oscar", "Oscar")
    unit.save(update_fields=["owner"])
    person("rita", "Rita", group_name(PortalRole.RISK_OFFICER))
    agent = agent_services.agent_register(
        name="Payables bot", slug="payables-bot", owner=UserFactory(username="dev"),
        business_unit=unit, role=registry.agent.role, by=UserFactory(username="ita"),
    )  # fmt: skip
    request = ApprovalRequest.objects.get(change__agent=agent)
    page = browser_page

    sign_in(page, live_server, "oscar")
    page.goto(f"{live_server.url}/inbox/")
    row = page.locator(f'.request-item[data-id="{request.pk}"]')
    expect(row).to_contain_text("Register Payables bot")
    expect(row).to_contain_text("Stage 1 of 2 · Unit owner")
    row.locator("a.request-link").click()
    expect(page.locator("#registry-change")).to_contain_text("Awaiting approval")
    screenshot(page, "onboarding-owner-stage")
    page.locator("#inbox-detail").get_by_role("button", name="Approve", exact=True).click()
    expect(page.locator(".flash-success")).to_contain_text("now waits for stage 2 of 2")

    sign_in(page, live_server, "rita")
    page.goto(f"{live_server.url}/inbox/{request.pk}/")
    expect(page.locator("#stage-track .stage.is-current")).to_contain_text("Security")
    screenshot(page, "onboarding-security-stage")
    page.locator("#inbox-detail").get_by_role("button", name="Approve", exact=True).click()
    expect(page.locator(".flash-success")).to_contain_text("The change takes effect now.")
    assert Agent.objects.get(pk=agent.pk).status == AgentStatus.ACTIVE

    page.goto(f"{live_server.url}/agents/{agent.slug}/")
    expect(page.locator("h1 .status")).to_have_text("Active")
    screenshot(page, "onboarding-agent-active")
