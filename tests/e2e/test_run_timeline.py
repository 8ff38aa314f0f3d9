"""An officer follows workflow runs in the portal: the list, a run's timeline updating live,
and a control on an escalated step — in headless Chromium against the live portal."""

import pytest
from django.contrib.auth.models import Group

from agents.portal_roles import PortalRole, group_name
from autonomy import grants
from tests.factories import UserFactory
from tests.oidc_fixtures import screenshot
from tests.workflows.fixtures import build_world, published, step
from workflows import services
from workflows.models import StepRun, StepStatus

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


def test_officer_sees_a_task_step_succeed_without_a_reload(live_server, browser_page):
    from playwright.sync_api import expect

    world = build_world()
    template = published(
        "onboarding",
        [step("gather", None, name="Gather documents", visible_context=["customer"]),
         step("check", None, after=["gather"], name="Check documents")],
    )  # fmt: skip
    run = services.run_start(template=template, context={"customer": {"id": 7}}, by=world.officer)
    page = browser_page
    sign_in_officer(page, live_server)

    page.goto(f"{live_server.url}/workflows/runs/{run.pk}/")
    gather = page.locator('[data-step="gather"]')
    expect(gather).to_have_attribute("data-status", StepStatus.WAITING_AGENT)
    expect(gather).to_contain_text("Waiting for an agent")
    page.evaluate("window.__sameDocument = true")

    clerk = world.agents[0]
    task = services.task_next(agent=clerk)
    services.task_complete(agent=clerk, step_run_id=task.pk, output={"docs": ["id.pdf"]})

    expect(gather).to_have_attribute("data-status", StepStatus.SUCCEEDED, timeout=10_000)
    expect(gather).to_contain_text("Succeeded")
    expect(page.locator('[data-step="check"]')).to_have_attribute(
        "data-status", StepStatus.WAITING_AGENT
    )
    expect(page.locator(".event[data-kind=step_succeeded]")).to_contain_text("gather.docs")
    assert page.evaluate("window.__sameDocument") is True
    screenshot(page, "run-timeline-live")


def test_officer_reads_waits_approvals_escalations_and_skips_an_escalated_step(
    eager,  # noqa: F811
    live_server,
    browser_page,
):
    from playwright.sync_api import expect

    world = build_world()
    template = published(
        "invoice-intake",
        [
            step("extract", None, name="Read the invoice"),
            step("post", "post-invoice", after=["extract"], name="Post the invoice",
                 input_map={"amount": "$.extract.amount"},
                 approval="when", approval_when="extract.amount > 10000"),
            step("notify", "notify", after=["extract"], name="Tell the buyer",
                 escalate_to_human=True),
            step("file", None, after=["post", "notify"], name="File the paperwork"),
        ],
    )  # fmt: skip
    grants.revoke_grant(target=world.ops["notify"], to=world.clerks)
    run = services.run_start(template=template, context={"source": "mailbox"}, by=world.officer)
    services.run_start(template=published("tiny", [step("a", None)]), by=world.officer)
    clerk = world.agents[0]
    task = services.task_next(agent=clerk)
    services.task_complete(
        agent=clerk,
        step_run_id=task.pk,
        output={"invoice": "INV-7", "amount": 25000, "vendor": "Nordlicht GmbH"},
    )
    notify = StepRun.objects.get(run=run, step__key="notify")
    assert notify.status == StepStatus.ESCALATED
    page = browser_page
    sign_in_officer(page, live_server)

    page.goto(f"{live_server.url}/workflows/runs/")
    row = page.locator(f'.run-row[data-run-id="{run.pk}"]')
    expect(page.locator(".run-row")).to_have_count(2)
    expect(row).to_contain_text("Invoice-Intake")
    expect(row).to_contain_text("1 needs a person")
    screenshot(page, "runs-list")

    row.locator("a.run-link").click()
    page.wait_for_url(f"{live_server.url}/workflows/runs/{run.pk}/")
    post = page.locator('[data-step="post"]')
    expect(post).to_contain_text("Waiting for approval")
    approval = StepRun.objects.get(run=run, step__key="post").action.approval
    expect(post.get_by_role("link", name="Approval", exact=True)).to_have_attribute(
        "href", f"/inbox/{approval.pk}/"
    )
    expect(page.locator('[data-step="notify"]')).to_contain_text("Escalated to a person")
    expect(page.locator('[data-step="notify"]')).to_contain_text("grant_missing")
    diff = page.locator(".event[data-kind=step_succeeded] .diff")
    expect(diff).to_contain_text("extract.amount")
    expect(diff).to_contain_text("25000")
    expect(page.locator(".event[data-kind=escalated_to_person]")).to_be_visible()
    screenshot(page, "run-timeline")

    notify_row = page.locator('[data-step="notify"]')
    notify_row.get_by_placeholder("Reason").fill("the buyer was told by phone")
    notify_row.get_by_role("button", name="Skip").click()
    expect(page.locator(".flash-success")).to_contain_text("Tell the buyer skipped")
    expect(notify_row).to_have_attribute("data-status", StepStatus.SKIPPED)
    expect(page.locator(".event[data-kind=step_skipped]")).to_contain_text("rita-risk")
    notify.refresh_from_db()
    assert notify.status == StepStatus.SKIPPED
    screenshot(page, "run-timeline-after-skip")
