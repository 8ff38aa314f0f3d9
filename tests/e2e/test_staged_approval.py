"""A payment above the threshold goes through two stages in the browser: the manager approves
stage 1 in the inbox, and the finance approver sees stage 2 with who decided stage 1."""

import pytest
from django.contrib.auth.models import Group

from approvals.models import ApprovalStatus
from autonomy.models import ActionRequest, ActionStatus
from tests.approvals.route_fixtures import payments_route, staged_request
from tests.autonomy.gate_fixtures import build_registry
from tests.factories import UserFactory
from tests.oidc_fixtures import screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a long local password"


def person(username: str, first: str, group: str):
    user = UserFactory(username=username, first_name=first, last_name="Demo", is_staff=True)
    user.set_password(PASSWORD)
    user.save()
    user.groups.add(Group.objects.get_or_create(name=group)[0])
    return user


def sign_in(page, live_server, username: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/admin/")


def test_a_payment_goes_through_two_stages_in_the_inbox(live_server, browser_page):
    from playwright.sync_api import expect

    registry = build_registry()
    payments_route(registry)
    person("mia", "Mia", "Managers")
    person("fred", "Fred", "Finance approvers")
    request = staged_request(registry, amount=24_000)
    page = browser_page

    sign_in(page, live_server, "mia")
    page.goto(f"{live_server.url}/inbox/")
    row = page.locator(f'.request-item[data-id="{request.pk}"]')
    expect(row).to_contain_text("Stage 1 of 2 · Manager")
    row.locator("a.request-link").click()
    track = page.locator("#stage-track")
    expect(track).to_contain_text("Approval route: Payments over 10k")
    expect(track.locator(".stage.is-current")).to_contain_text("Manager")
    screenshot(page, "inbox-stage-1")
    page.locator("#inbox-detail").get_by_role("button", name="Approve", exact=True).click()
    expect(page.locator(".flash-success")).to_contain_text("now waits for stage 2 of 2")
    expect(page.locator(f'.request-item[data-id="{request.pk}"]')).to_have_count(0)
    assert ActionRequest.objects.get(pk=request.action_id).status == ActionStatus.PENDING_APPROVAL

    sign_in(page, live_server, "fred")
    page.goto(f"{live_server.url}/inbox/{request.pk}/")
    track = page.locator("#stage-track")
    expect(track.locator(".stage-approved")).to_contain_text("Mia Demo")
    expect(track.locator(".stage.is-current")).to_contain_text("Finance")
    expect(page.locator(f'.request-item[data-id="{request.pk}"]')).to_contain_text(
        "Stage 2 of 2 · Finance"
    )
    screenshot(page, "inbox-stage-2")
    page.locator("#inbox-detail").get_by_role("button", name="Approve", exact=True).click()
    expect(page.locator(".flash-success")).to_contain_text("The action is released to run.")
    request.refresh_from_db()
    assert request.status == ApprovalStatus.APPROVED
