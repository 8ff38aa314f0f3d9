"""Under the Content-Security-Policy, Chromium blocks nothing on the portal's pages, and the
API docs page (Swagger UI from this server) still draws the API."""

import pytest
from django.contrib.auth.models import Group

from agents.portal_roles import PortalRole, group_name
from tests.factories import UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a long local password"
PAGES = [
    "/admin/",
    "/inbox/",
    "/activity/",
    "/dashboard/",
    "/workflows/runs/",
    "/rollouts/",
    "/api/docs/",
]


def test_the_policy_blocks_nothing_on_the_portal_and_the_api_docs_draw(live_server, browser_page):
    from playwright.sync_api import expect

    officer = UserFactory(username="csp-officer", is_staff=True)
    officer.set_password(PASSWORD)
    officer.save()
    officer.groups.add(Group.objects.get(name=group_name(PortalRole.RISK_OFFICER)))
    page = browser_page
    violations = []
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "csp-officer")
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/admin/")
    for path in PAGES:
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"]
        page.wait_for_load_state("networkidle")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Autonomy OS API")
    expect(page.locator(".opblock-tag-section").first).to_be_visible()
    assert not violations, violations
