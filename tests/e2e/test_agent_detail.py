"""An officer opens a drifting agent's page, reads the flag's evidence and dismisses one flag,
in headless Chromium against the live portal; a screenshot is kept as an artifact."""

from datetime import timedelta

import pytest
from django.utils import timezone

from agents import behaviour
from agents.models import DriftFlag, FlagStatus
from autonomy.models import ActionRequest, ActionStatus, Operation, Verdict
from tests.autonomy.gate_fixtures import build_registry
from tests.e2e.test_run_timeline import sign_in_officer
from tests.oidc_fixtures import screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _history(registry) -> None:
    """Two days of steady invoice reading, then a burst on a restricted CRM export."""
    now = timezone.now()
    rows = [
        ActionRequest(
            agent=registry.agent, operation=registry.read, verdict=Verdict.ALLOW,
            status=ActionStatus.SUCCEEDED, created_at=now - timedelta(hours=h, minutes=m),
            risk_score=8 + (h * 7 + m) % 20,
        )
        for h in range(2, 48) for m in (5, 25, 45)
    ]  # fmt: skip
    ActionRequest.objects.bulk_create(rows)
    behaviour.baseline_learn(agent=registry.agent, until=now - timedelta(hours=1))
    export = Operation.objects.create(
        connector=registry.erp, slug="export-ledger", name="Export ledger", data_class="restricted"
    )
    ActionRequest.objects.bulk_create(
        ActionRequest(
            agent=registry.agent, operation=export, verdict=Verdict.NEEDS_APPROVAL,
            status=ActionStatus.PENDING_APPROVAL, created_at=now - timedelta(seconds=20 * i),
            risk_score=60 + i % 25,
        )
        for i in range(25)
    )  # fmt: skip
    assert behaviour.drift_check(agent=registry.agent, now=now)


def test_officer_reads_drift_evidence_and_dismisses_a_flag(live_server, browser_page):
    from playwright.sync_api import expect

    registry = build_registry(slug="ap-bot")
    _history(registry)
    page = browser_page
    sign_in_officer(page, live_server)

    page.goto(f"{live_server.url}/agents/ap-bot/")
    expect(page.locator("h1")).to_contain_text("AP bot")
    escalation = page.locator(".flag-open", has_text="Data-class escalation")
    expect(escalation).to_contain_text("baseline max data class")
    expect(page.locator("svg.sparkline circle")).not_to_have_count(0)
    expect(page.locator(".intervention-buttons")).to_be_visible()
    screenshot(page, "agent-detail")

    spike = page.locator(".flag-open", has_text="Rate spike")
    spike.locator("input[name=note]").fill("quarter-end export")
    spike.get_by_role("button", name="Dismiss").click()

    expect(page.locator(".flash-success")).to_contain_text("Dismissed")
    flag = DriftFlag.objects.get(agent=registry.agent, kind="rate_spike")
    assert flag.status == FlagStatus.DISMISSED and flag.review_note == "quarter-end export"
