"""An officer opens the fleet dashboard in headless Chromium: the charts are drawn with the
fleet's numbers, and the page picks up new activity without a reload."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from agents.portal_roles import PortalRole, group_name
from autonomy.models import Verdict
from autonomy.observability.rollup import rollup_rebuild, rollup_record
from tests.autonomy.dashboard_fixtures import history
from tests.autonomy.gate_fixtures import build_registry
from tests.factories import BusinessUnitFactory, UserFactory, make_agent
from tests.oidc_fixtures import screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a long local password"


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


def fleet_history():
    registry = build_registry()
    agents = [registry.agent]
    for slug, unit in [("ops-bot", "Operations"), ("hr-bot", "People"), ("buyer", "Procurement")]:
        agents.append(
            make_agent(slug=slug, business_unit=BusinessUnitFactory(slug=slug, name=unit))
        )
    now = timezone.now()
    history(agents=agents, operation=registry.post, n=600, now=now, span=timedelta(hours=23))
    history(agents=agents[:3], operation=registry.post, n=240, now=now, span=timedelta(hours=1))
    rollup_rebuild()
    return registry


def test_officer_sees_the_fleet_dashboard_charts(live_server, browser_page):
    from playwright.sync_api import expect

    registry = fleet_history()
    page = browser_page
    sign_in_officer(page, live_server)
    page.goto(f"{live_server.url}/dashboard/")

    hour = page.locator("svg#chart-hour")
    expect(hour).to_have_attribute("role", "img")
    expect(hour.locator("title").first).to_contain_text("over the last hour")
    assert int(hour.get_attribute("data-total")) >= 240
    assert hour.locator("rect.bar-allow").count() > 0 and hour.locator("rect.bar-deny").count()
    assert int(page.locator("svg#chart-day").get_attribute("data-total")) == 840
    expect(page.locator("svg#chart-agents rect.bar")).to_have_count(4)
    expect(page.locator("svg#chart-units rect.bar")).to_have_count(4)
    expect(page.locator("[data-tile=open-flags] .tile-value")).to_have_text("0")
    box = hour.bounding_box()
    assert box["width"] > 600 and box["height"] > 100
    screenshot(page, "dashboard")

    # New activity shows on the next refresh, in the same document.
    before = int(hour.get_attribute("data-total"))
    page.evaluate("window.__sameDocument = true")
    action = history(
        agents=[registry.agent], operation=registry.post, n=1, now=timezone.now(),
        span=timedelta(seconds=1),
    )[0]  # fmt: skip
    assert action.verdict == Verdict.ALLOW
    rollup_record(action=action)
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    expect(page.locator("svg#chart-hour")).to_have_attribute("data-total", str(before + 1))
    assert page.evaluate("window.__sameDocument") is True
