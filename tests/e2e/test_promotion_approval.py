"""A risk officer opens a rollout promotion in the inbox, reads the figures against the next
wave's thresholds, and approves it: the plan moves up — in headless Chromium against the
live portal."""

import pytest

from autonomy.models import PromotionStatus, RolloutPlan
from autonomy.rollouts import services as rollouts
from tests.approvals.conftest import officer, seed_plan
from tests.autonomy.gate_fixtures import build_registry
from tests.oidc_fixtures import screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a long local password"


def test_officer_approves_a_promotion_from_the_inbox(live_server, browser_page):
    from playwright.sync_api import expect

    registry = build_registry()
    plan = seed_plan(registry)
    promotion = rollouts.promotion_propose(plan_id=plan.pk, by=officer("paula"))
    olga = officer("olga")
    olga.first_name, olga.last_name = "Olga", "Risk"
    olga.set_password(PASSWORD)
    olga.save()

    page = browser_page
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "olga")
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/admin/")

    page.goto(f"{live_server.url}/inbox/")
    item = page.locator(f'.request-item[data-id="{promotion.approval.pk}"]')
    expect(item).to_contain_text("Promote Invoice rollout")
    expect(item).to_contain_text("wave 1 → 2")
    expect(item.locator('input[type="checkbox"]')).to_have_count(0)  # never in bulk

    item.locator("a.request-link").click()
    detail = page.locator("#inbox-detail")
    figures = detail.locator("#promotion-figures")
    expect(figures).to_contain_text("actions taken")
    expect(figures).to_contain_text("≤ 20.0%")
    expect(figures.locator("tbody tr")).to_have_count(2)
    expect(detail.locator("#promotion-plan")).to_contain_text("Invoice rollout")
    expect(detail.get_by_role("button", name="Redirect")).to_be_visible()
    screenshot(page, "inbox-promotion")

    page.fill("#id_comment", "Three clean actions, no denials.")
    detail.get_by_role("button", name="Approve", exact=True).click()
    expect(page.locator(".flash-success")).to_contain_text("The plan is at wave 2 now.")
    screenshot(page, "inbox-promotion-approved")
    assert RolloutPlan.objects.get(pk=plan.pk).current_wave == 2
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.APPROVED


def test_officer_approves_a_promotion_through_its_e_mail_link(live_server, browser_page):
    from playwright.sync_api import expect

    from approvals import links

    registry = build_registry()
    plan = seed_plan(registry)
    promotion = rollouts.promotion_propose(plan_id=plan.pk, by=officer("paula"))
    path = links.link_path(request=promotion.approval, approver=officer("olga"))

    page = browser_page
    page.goto(f"{live_server.url}{path}")
    expect(page.locator("h1")).to_have_text("Promote Invoice rollout to wave 2")
    expect(page.locator("#promotion-figures")).to_contain_text("≥ 3")
    expect(page.locator(".detail-expiry")).to_contain_text("then it is not carried out")
    screenshot(page, "email-promotion-review")

    page.get_by_role("button", name="Approve", exact=True).click()
    expect(page.locator("#outcome-message")).to_contain_text("Invoice rollout is at wave 2 now.")
    screenshot(page, "email-promotion-approved")
    assert RolloutPlan.objects.get(pk=plan.pk).current_wave == 2
