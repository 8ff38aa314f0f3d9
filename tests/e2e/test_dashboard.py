"""An officer opens the fleet dashboard in headless Chromium: the charts are drawn with the
fleet's numbers, and the page picks up new activity without a reload."""

import re
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
from tests.oidc_fixtures import ARTIFACTS, screenshot

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


def test_officer_reads_the_approval_load_on_the_dashboard_and_over_the_inbox(
    live_server, browser_page
):
    from playwright.sync_api import expect

    from approvals.models import ApprovalStatus
    from tests.approvals.conftest import approver
    from tests.approvals.load_fixtures import Spec, seed_requests

    registry = build_registry()
    clerks = Group.objects.get_or_create(name=group_name(PortalRole.APPROVER))[0]
    ann, bob = approver("ann"), approver("bob")
    ops = BusinessUnitFactory(slug="ops", name="Operations")
    approved, expired = ApprovalStatus.APPROVED, ApprovalStatus.EXPIRED
    specs = [Spec(i * 7 % 60, group=clerks, unit=ops if i % 3 else None) for i in range(40)]
    specs += [Spec(60 * h + 50, 60 * h + 20 - i, approved, group=clerks, by=(ann, bob)[i % 2])
              for h in range(12) for i in range(6)]  # fmt: skip
    specs += [Spec(25 * 60, 60 * h, expired, expired=True, group=clerks) for h in range(3)]
    seed_requests(registry=registry, specs=specs, now=timezone.now())

    page = browser_page
    sign_in_officer(page, live_server)
    page.goto(f"{live_server.url}/dashboard/")
    panel = page.locator("#approval-load")
    expect(panel.locator("[data-load=forecast]")).to_contain_text("Backlog 40, growing by")
    chart = panel.locator("svg#chart-load")
    assert chart.locator("rect.bar-arrived").count() > 0
    assert chart.locator("rect.bar-allow").count() > 0
    expect(panel.locator("[data-load=decided]")).to_have_text("72")
    expect(panel.locator("[data-load=expired]")).to_have_text("3")
    expect(panel.locator("[data-load=approvers] tbody tr")).to_have_count(2)
    box = chart.bounding_box()
    assert box["width"] > 600 and box["height"] > 100
    screenshot(page, "dashboard-approval-load")
    panel.screenshot(path=str(ARTIFACTS / "dashboard-approval-load-panel.png"))

    # One unit: a link in the table narrows the panel, and says how to get back.
    panel.get_by_role("link", name="Operations").click()
    expect(panel.locator("h2")).to_contain_text("Operations")
    expect(panel.locator("[data-load=forecast]")).to_contain_text("Backlog 26")

    page.goto(f"{live_server.url}/inbox/")
    strip = page.locator("[data-load-strip]")
    expect(strip.locator("[data-strip=backlog]")).to_have_text("40")
    expect(strip.locator("[data-strip=trend]")).to_contain_text("↑")
    assert strip.bounding_box()["height"] < 60  # a strip, not a panel pushing the list down
    screenshot(page, "inbox-load-strip")
    strip.get_by_role("link", name="Load on the dashboard →").click()
    page.wait_for_url(re.compile(r"/dashboard/#approval-load$"))
