"""An IT admin clones HR's assistant's permission model to Legal in headless Chromium: picks
the role and units, reads the diff (grants, rewritten policy lines, thresholds), saves it, and
the page then has nothing left to add; a screenshot of the diff is kept."""

import pytest
from django.contrib.auth.models import Group

from agents.models import Role
from agents.portal_roles import PortalRole, group_name
from autonomy import grants
from autonomy.models import Connector, Operation
from autonomy.policy import services as policy_services
from tests.e2e.test_run_timeline import PASSWORD
from tests.factories import BusinessUnitFactory, UserFactory, make_role
from tests.oidc_fixtures import screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_it_admin_reviews_the_diff_and_saves_the_clone(live_server, browser_page):
    from playwright.sync_api import expect

    admin = UserFactory(username="ian-it", first_name="Ian", is_staff=True)
    admin.set_password(PASSWORD)
    admin.save()
    admin.groups.add(Group.objects.get(name=group_name(PortalRole.IT_ADMIN)))
    BusinessUnitFactory(slug="hr", name="HR", approval_threshold=40)
    BusinessUnitFactory(slug="legal", name="Legal")
    hris = Connector.objects.create(slug="hris", name="HRIS", kind="http")
    employee = Operation.objects.create(connector=hris, slug="read-employee", name="Employee")
    role = make_role("hr-assistant", name="HR assistant")
    grants.grant(target=employee, to=role)
    policy_services.policy_save(
        name="HR records stay in HR", enabled=True, by=admin,
        text='forbid (principal in Role::"hr-assistant", action, resource in Connector::"hris")'
        '\nunless { principal in BusinessUnit::"hr" };',
    )  # fmt: skip

    page = browser_page
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "ian-it")
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/admin/")
    page.goto(f"{live_server.url}/inbox/")
    page.get_by_role("link", name="Permission models").click()
    page.select_option("#id_role", label="HR assistant")
    page.select_option("#id_from_unit", label="HR")
    page.select_option("#id_to_unit", label="Legal")
    page.fill("#id_new_role", "legal-assistant")
    page.get_by_role("button", name="Show the diff").click()
    expect(page.locator("[data-grant='hris.read-employee']")).to_be_visible()
    expect(page.locator(".diff-code .diff-add").first).to_contain_text('Role::"legal-assistant"')
    expect(page.locator("[data-threshold='approval_threshold']")).to_contain_text("40")
    screenshot(page, "permission-model-clone")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".flash-success")).to_contain_text("Cloned hr-assistant")
    # widening access waits for people: the grants stay to add until approved
    expect(page.locator(".flash-success")).to_contain_text("wait for approval in the inbox")
    assert Role.objects.filter(slug="legal-assistant").exists()
