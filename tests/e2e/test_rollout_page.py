"""An officer opens a rollout plan in its second wave, reads the waves, the live criteria of
the third and the charts over time, sees the figures move without a reload, proposes the
promotion and then demotes the plan with a reason, in headless Chromium against the live
portal; screenshots are kept."""

from datetime import timedelta

import pytest
from django.utils import timezone

from autonomy.rollouts import services
from tests.autonomy.dashboard_fixtures import history
from tests.autonomy.rollout_fixtures import build_rollout
from tests.e2e.test_run_timeline import sign_in_officer
from tests.oidc_fixtures import screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_officer_reads_a_plan_watches_it_live_and_demotes_it(live_server, browser_page, settings):
    from playwright.sync_api import expect

    settings.AUTONOMY_ROLLOUT_KEEP_DAYS = 14
    rollout = build_rollout(actions=0)
    now = timezone.now()
    for half_hours in range(48, -1, -1):  # a day of history, measured as the beat would
        at = now - timedelta(minutes=30 * half_hours)
        if half_hours < 40:
            history(
                agents=rollout.finance, operation=rollout.registry.post, n=3, now=at,
                span=timedelta(minutes=30),
            )  # fmt: skip
        services.plans_measure(now=at)
    page = browser_page
    violations = []
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    sign_in_officer(page, live_server)

    page.goto(f"{live_server.url}/rollouts/")
    page.get_by_role("link", name="Invoice processing").click()
    expect(page.locator("h1")).to_contain_text("Invoice processing")
    expect(page.locator(".wave-row")).to_have_count(4)
    expect(page.locator(".wave-row.is-current")).to_have_attribute("data-wave", "2")
    expect(page.locator("[data-criterion='actions']")).to_contain_text("120")
    expect(page.locator("svg.chart-line polyline")).not_to_have_count(0)
    screenshot(page, "rollout-plan")

    history(  # more actions arrive: the live figures follow without a reload
        agents=rollout.finance, operation=rollout.registry.post, n=5, now=timezone.now(),
        span=timedelta(minutes=5),
    )  # fmt: skip
    expect(page.locator("[data-figure='actions']")).to_have_text("125", timeout=15_000)

    page.locator("#propose-promotion").click()
    expect(page.locator(".flash-success")).to_contain_text("Promotion to wave 3 proposed")
    expect(page.locator(".promotion-waiting")).to_contain_text("waits for an approval")
    expect(page.locator(".history-proposed")).to_contain_text("actions 125")

    page.fill("#demote-reason", "invoice totals look off")
    page.locator("#demote-wave").click()
    expect(page.locator(".flash-success")).to_contain_text("Demoted to wave 1")
    expect(page.locator(".history-demoted")).to_contain_text("invoice totals look off")
    expect(page.locator(".history-demoted")).to_contain_text("rita-risk")
    screenshot(page, "rollout-plan-demoted")
    assert not violations, violations
