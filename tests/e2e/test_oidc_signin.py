"""People sign in to the portal through the company IdP; IT admins issue agent tokens.

Drives headless Chromium against the live server and the loopback OIDC provider.
"""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse

from agents.portal_roles import PortalRole, group_name
from tests.factories import UserFactory, make_agent
from tests.oidc_fixtures import api_get, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

User = get_user_model()


def sign_in_at_idp(page, live_server, provider, login: str) -> None:
    """From the portal's login page, through the IdP's form, back to the portal."""
    from playwright.sync_api import expect

    page.goto(f"{live_server.url}/admin/login/")
    page.get_by_role("link", name="Sign in with your company account").click()
    page.wait_for_url(f"{provider.issuer}/interaction/**")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.fill('input[name="login"]', login)
    page.fill('input[name="password"]', provider.password(login))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server.url}/**")


def portal_groups(user) -> set[str]:
    return set(user.groups.values_list("name", flat=True))


def test_risk_officer_signs_in_through_the_idp_and_gets_the_portal_role(
    live_server, oidc_settings, browser_page
):
    from playwright.sync_api import expect

    page = browser_page
    page.goto(f"{live_server.url}/admin/login/")
    screenshot(page, "signin-page")

    sign_in_at_idp(page, live_server, oidc_settings, "rita")

    page.wait_for_url(f"{live_server.url}/admin/")
    expect(page.locator("#site-name")).to_have_text("Autonomy OS")
    screenshot(page, "signin-risk-officer")
    user = User.objects.get(username="oidc-rita")
    assert user.is_staff
    assert user.email == "rita@example.com"
    assert not user.has_usable_password()
    assert portal_groups(user) == {group_name(PortalRole.RISK_OFFICER)}


def test_groups_map_to_several_roles_and_follow_the_idp_on_each_sign_in(
    live_server, oidc_settings, browser_page
):
    from playwright.sync_api import expect

    # Ivan signed in before, when the IdP still had him among the risk officers.
    ivan = UserFactory(username="oidc-ivan", is_staff=True)
    ivan.groups.add(Group.objects.get(name=group_name(PortalRole.RISK_OFFICER)))
    page = browser_page

    sign_in_at_idp(page, live_server, oidc_settings, "ivan")

    page.wait_for_url(f"{live_server.url}/admin/")
    expect(page.locator("#site-name")).to_have_text("Autonomy OS")
    # IT admins run the registry, so the admin index offers the agents.
    expect(page.locator("#content-main").get_by_role("link", name="Agents")).to_be_visible()
    ivan.refresh_from_db()
    assert ivan.is_staff
    assert portal_groups(ivan) == {
        group_name(PortalRole.IT_ADMIN),
        group_name(PortalRole.VIEWER),
    }
    assert User.objects.filter(username__startswith="oidc-ivan").count() == 1


def test_person_in_no_mapped_group_is_refused_and_not_created(
    live_server, oidc_settings, browser_page
):
    from playwright.sync_api import expect

    page = browser_page
    sign_in_at_idp(page, live_server, oidc_settings, "mallory")

    page.wait_for_url(f"{live_server.url}/signin/refused/")
    expect(page.get_by_role("heading", name="Sign-in refused")).to_be_visible()
    expect(page.locator("#site-name")).to_have_text("Autonomy OS")
    screenshot(page, "signin-refused")
    assert not User.objects.filter(username="oidc-mallory").exists()
    # Not signed in either: the admin sends her back to the login page.
    page.goto(f"{live_server.url}/admin/")
    page.wait_for_url(f"{live_server.url}/admin/login/**")


def test_person_deactivated_in_the_portal_stays_out_whatever_the_idp_says(
    live_server, oidc_settings, browser_page
):
    from playwright.sync_api import expect

    rita = UserFactory(username="oidc-rita", is_staff=True, is_active=False)
    page = browser_page

    sign_in_at_idp(page, live_server, oidc_settings, "rita")

    page.wait_for_url(f"{live_server.url}/signin/refused/")
    expect(page.get_by_role("heading", name="Sign-in refused")).to_be_visible()
    rita.refresh_from_db()
    assert rita.is_active is False


def test_it_admin_issues_a_token_in_the_admin_and_the_agent_calls_me(live_server, browser_page):
    from playwright.sync_api import expect

    admin = UserFactory(username="local-it-admin", is_staff=True)
    admin.set_password("a long local password")
    admin.save()
    admin.groups.add(Group.objects.get(name=group_name(PortalRole.IT_ADMIN)))
    agent = make_agent(slug="invoice-bot")
    page = browser_page

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "local-it-admin")
    page.fill("#id_password", "a long local password")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/admin/")
    page.goto(live_server.url + reverse("admin:agents_agent_change", args=[agent.pk]))
    page.get_by_role("link", name="Issue credential").click()
    page.wait_for_url("**/credentials/issue/")
    page.get_by_role("button", name="Issue credential").click()
    token_box = page.locator("#issued-token")
    expect(token_box).to_be_visible()
    token = token_box.inner_text().strip()
    screenshot(page, "admin-credential-issued")

    response = api_get(f"{live_server.url}/api/v1/agents/me/", token)

    assert response.status_code == 200, response.text
    assert response.json()["slug"] == "invoice-bot"
    page.goto(live_server.url + reverse("admin:agents_agent_changelist"))
    expect(page.get_by_role("link", name=agent.name)).to_be_visible()
    screenshot(page, "admin-agents")
