"""The policy trials' portal pages: who reads them, who starts, stops and promotes, what an
invalid draft shows, and a detail page whose queries do not grow with the differences."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Group

from agents import services as agent_services
from agents.portal_roles import PortalRole, group_name
from autonomy import actions as lifecycle
from autonomy.models import Policy, PolicyTrial, TrialStatus
from autonomy.policy import trials
from tests.autonomy.gate_fixtures import build_registry
from tests.factories import BusinessUnitFactory, UserFactory

pytestmark = pytest.mark.django_db

LIST = "/policies/trials/"
STRICTER = (
    'forbid (principal, action, resource == Operation::"erp.post-invoice") '
    "when { context has amount && context.amount > 5000 } "
    'unless { principal in BusinessUnit::"finance" };'
)


def person(username: str, role: str | None):
    user = UserFactory(username=username, is_staff=True)
    if role:
        user.groups.add(Group.objects.get(name=group_name(role)))
    return user


@pytest.fixture
def setup():
    registry = build_registry()
    unit = BusinessUnitFactory(slug="ops", name="Operations")
    agent = agent_services.agent_register(
        name="Ops bot", slug="ops-bot", owner=registry.officer, business_unit=unit,
        role=registry.agent.role, risk_tier=1, approved=True,
    )  # fmt: skip
    agent.max_actions_per_minute = 10_000
    agent.max_daily_spend = Decimal("100000000")
    agent.save()
    officer = person("risk", PortalRole.RISK_OFFICER)
    return registry, agent, officer


def _post(agent, amount):
    lifecycle.action_request(
        agent=agent,
        operation_key="erp.post-invoice",
        params={"invoice_id": str(amount), "amount": amount},
    )


def test_a_risk_officer_starts_a_trial_reads_the_difference_and_promotes_it(setup, client):
    registry, agent, officer = setup
    client.force_login(officer)
    # Trials sit under Policies in the nav, and the policies page leads to them.
    assert 'href="/policies/"' in client.get(LIST).content.decode()
    assert 'href="/policies/trials/"' in client.get("/policies/").content.decode()

    response = client.post(
        "/policies/trials/start/", {"name": "big invoices", "text": STRICTER, "replaces": ""}
    )
    trial = PolicyTrial.objects.get()
    assert response.status_code == 302 and response["Location"] == f"{LIST}{trial.pk}/"
    for amount in (6_000, 7_000, 100):
        _post(agent, amount)
    _post(registry.agent, 9_000)

    html = client.get(f"{LIST}{trial.pk}/").content.decode()
    assert "would have denied 50% of Post invoice (2 of 4)" in html
    assert "Ops bot" in html and 'class="trial-example"' in html
    assert 'id="promote-trial"' in html and "data-confirm=" in html

    client.post(f"{LIST}{trial.pk}/promote/")
    trial.refresh_from_db()
    assert trial.status == TrialStatus.PROMOTED
    assert Policy.objects.get(name="big invoices").enabled


def test_an_invalid_draft_shows_its_errors_and_starts_nothing(setup, client):
    _, _, officer = setup
    client.force_login(officer)
    response = client.post(
        "/policies/trials/start/",
        {"name": "bad", "text": "forbid (principal, action, resource) when { context.nope };"},
    )
    assert response.status_code == 400
    assert "field-error" in response.content.decode()
    assert not PolicyTrial.objects.exists()


def test_a_draft_may_replace_the_whole_enabled_set_from_the_form(setup, client):
    _, _, officer = setup
    client.force_login(officer)
    client.post(
        "/policies/trials/start/",
        {"name": "only reads", "text": 'permit (principal, action, resource == Operation::"erp.read-invoice");', "replaces": "all"},
    )  # fmt: skip
    assert PolicyTrial.objects.get().kind == "set"


def test_an_auditor_reads_trials_but_cannot_start_stop_or_promote(setup, client):
    _, _, officer = setup
    trial = trials.trial_start(name="strict", text=STRICTER, by=officer)
    client.force_login(person("auditor", PortalRole.AUDITOR))

    assert client.get(LIST).status_code == 200
    html = client.get(f"{LIST}{trial.pk}/").content.decode()
    assert 'id="promote-trial"' not in html
    assert client.post(f"{LIST}{trial.pk}/promote/").status_code == 403
    assert client.post(f"{LIST}{trial.pk}/stop/").status_code == 403
    assert (
        client.post("/policies/trials/start/", {"name": "x", "text": STRICTER}).status_code == 403
    )
    trial.refresh_from_db()
    assert trial.status == TrialStatus.RUNNING and PolicyTrial.objects.count() == 1


def test_people_outside_the_portal_and_agents_are_refused(setup, client):
    registry, _, officer = setup
    trial = trials.trial_start(name="strict", text=STRICTER, by=officer)
    client.force_login(person("nobody", None))
    assert client.get(LIST).status_code == 403
    client.force_login(registry.agent.service_user)
    assert client.get(f"{LIST}{trial.pk}/").status_code == 403
    client.logout()
    assert client.get(LIST).status_code == 302  # to sign in


def test_an_unknown_trial_is_not_found(setup, client):
    _, _, officer = setup
    client.force_login(officer)
    assert client.get(f"{LIST}999999/").status_code == 404
    assert client.post(f"{LIST}999999/promote/").status_code == 404


def test_stop_from_the_page(setup, client):
    _, _, officer = setup
    trial = trials.trial_start(name="strict", text=STRICTER, by=officer)
    client.force_login(officer)
    client.post(f"{LIST}{trial.pk}/stop/")
    trial.refresh_from_db()
    assert trial.status == TrialStatus.STOPPED
    assert 'id="stop-trial"' not in client.get(f"{LIST}{trial.pk}/").content.decode()


def test_the_detail_page_does_not_grow_with_differences(
    setup, client, django_assert_max_num_queries
):
    _, agent, officer = setup
    trial = trials.trial_start(name="strict", text=STRICTER, by=officer)
    client.force_login(officer)
    _post(agent, 6_000)
    with django_assert_max_num_queries(30) as few:
        client.get(f"{LIST}{trial.pk}/")
    for amount in range(6_001, 6_040):
        _post(agent, amount)
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(f"{LIST}{trial.pk}/")
