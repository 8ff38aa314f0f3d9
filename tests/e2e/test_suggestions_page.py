"""A risk officer follows the inbox's suggestions badge, reads a suggestion's evidence and
replay, and dismisses it, in headless Chromium against the live portal; screenshots kept."""

import pytest

from approvals import suggestions
from approvals.models import Suggestion, SuggestionStatus
from tests.approvals.test_suggestions import NOW, seed_history
from tests.autonomy.gate_fixtures import build_registry
from tests.e2e.test_run_timeline import sign_in_officer
from tests.oidc_fixtures import screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_officer_reads_a_suggestion_from_the_inbox_and_dismisses_it(
    live_server, browser_page, settings
):
    from playwright.sync_api import expect

    settings.AUTONOMY_SUGGEST_MIN_APPROVED = 5
    settings.AUTONOMY_SUGGEST_MAX_REJECTED = 1
    seed_history(build_registry())
    suggestions.suggestions_refresh(now=NOW)
    page = browser_page
    violations = []
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    sign_in_officer(page, live_server)

    page.goto(f"{live_server.url}/inbox/")
    badge = page.locator("#suggestions-badge")
    expect(badge).to_contain_text("1")
    screenshot(page, "suggestions-inbox-badge")
    badge.click()
    page.wait_for_url(f"{live_server.url}/inbox/suggestions/")
    card = page.locator(".suggestion")
    expect(card).to_contain_text("approved 7 times unchanged and rejected 1 time in 14 days")
    expect(card).to_contain_text("~0.6")
    expect(card.locator("dd").filter(has_text="9")).not_to_have_count(0)
    screenshot(page, "suggestions")

    card.get_by_role("button", name="Dismiss").click()
    expect(page.locator(".flash")).to_contain_text("dismissed")
    expect(page.locator(".suggestion")).to_have_count(0)
    assert Suggestion.objects.get().status == SuggestionStatus.DISMISSED
    assert not violations
