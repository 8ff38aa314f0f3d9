"""Who may change what of an agent: owners edit the profile and resume their own pause; the
global authority (IT admins, risk officers) changes role, unit, risk tier, owner and
identity, and lifts quarantines and emergency stops. Ownership moves the owner's rights."""

import pytest
from django.urls import reverse

from agents.models import Agent
from autonomy import grants
from autonomy.models import Connector, ConnectorKind, Operation
from tests.agents.conftest import as_, error
from tests.factories import BusinessUnitFactory, UserFactory, make_role

pytestmark = pytest.mark.django_db

AGENTS = "/api/v1/agents/"


@pytest.mark.parametrize(
    "field, value",
    [
        ("role", "payments-clerk"),
        ("business_unit", "finance"),
        ("risk_tier", 1),
        ("owner", "mallory"),
        ("oidc_client_id", "stolen-client"),
    ],
)
def test_an_owner_cannot_change_what_the_agent_may_do_or_who_answers_for_it(
    api, hr_agent, owner, field, value
):
    payments = make_role("payments-clerk")
    erp = Connector.objects.create(slug="erp", name="ERP", kind=ConnectorKind.ERP)
    pay = Operation.objects.create(connector=erp, slug="pay-invoice", name="Pay invoice")
    grants.grant(target=pay, to=payments)
    BusinessUnitFactory(slug="finance", name="Finance")
    UserFactory(username="mallory")
    before = Agent.objects.values().get(pk=hr_agent.pk)

    response = as_(api, owner).patch(f"{AGENTS}{hr_agent.pk}/", {field: value}, format="json")

    assert response.status_code == 403, response.content
    assert error(response)["code"] == "fields_not_permitted"
    assert error(response)["details"] == {"fields": [field]}
    assert Agent.objects.values().get(pk=hr_agent.pk) == before
    assert pay not in grants.operations_callable(agent=Agent.objects.get(pk=hr_agent.pk))


def test_an_owner_edits_the_profile_of_their_agent(api, hr_agent, owner):
    body = {"name": "HR helper", "description": "Answers leave questions."}
    response = as_(api, owner).patch(f"{AGENTS}{hr_agent.pk}/", body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "HR helper"


def test_an_owner_may_send_the_current_role_back_unchanged(api, hr_agent, owner):
    body = {"name": "HR helper", "role": "hr-assistant", "business_unit": "hr"}
    response = as_(api, owner).patch(f"{AGENTS}{hr_agent.pk}/", body, format="json")
    assert response.status_code == 200, response.content


def test_an_it_admin_changes_the_role(api, hr_agent, it_admin):
    make_role("payments-clerk")
    response = as_(api, it_admin).patch(
        f"{AGENTS}{hr_agent.pk}/", {"role": "payments-clerk", "risk_tier": 1}, format="json"
    )
    assert response.status_code == 200, response.content
    # A lower tier applies at once; a riskier one waits (tests/agents/test_onboarding.py).
    assert (response.json()["role"], response.json()["risk_tier"]) == ("payments-clerk", 1)


def test_the_admin_offers_an_it_admin_every_governed_field(client, hr_agent, it_admin):
    client.force_login(it_admin)
    page = client.get(reverse("admin:agents_agent_change", args=[hr_agent.pk]))
    assert page.status_code == 200
    form = page.context["adminform"].form
    assert {"name", "role", "business_unit", "risk_tier", "owner"} <= set(form.fields)


# --- ownership transfer ---------------------------------------------------------------------


def _owner_rights(user, agent) -> set[str]:
    user = type(user).objects.get(pk=user.pk)  # fresh: guardian caches per user object
    return {p for p in ("agents.view_agent", "agents.change_agent") if user.has_perm(p, agent)}


def test_a_transfer_through_the_api_moves_the_owners_rights(api, hr_agent, owner, it_admin):
    heir = UserFactory(username="henry", is_staff=True)
    response = as_(api, it_admin).patch(
        f"{AGENTS}{hr_agent.pk}/", {"owner": "henry"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert _owner_rights(owner, hr_agent) == set()
    assert _owner_rights(heir, hr_agent) == {"agents.view_agent", "agents.change_agent"}
    as_(api, owner)
    assert api.get(f"{AGENTS}{hr_agent.pk}/").status_code == 404
    assert api.patch(f"{AGENTS}{hr_agent.pk}/", {"name": "x"}, format="json").status_code == 404


def test_a_transfer_in_the_admin_moves_the_owners_rights(client, hr_agent, owner, it_admin):
    heir = UserFactory(username="henry", is_staff=True)
    client.force_login(it_admin)
    url = reverse("admin:agents_agent_change", args=[hr_agent.pk])
    form = client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields}
    data = {k: ("" if v is None else v) for k, v in data.items()}
    data |= {
        "owner": heir.pk,
        "credentials-TOTAL_FORMS": 0,
        "credentials-INITIAL_FORMS": 0,
        "_save": "Save",
    }
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Agent.objects.get(pk=hr_agent.pk).owner == heir
    assert _owner_rights(owner, hr_agent) == set()
    assert _owner_rights(heir, hr_agent) == {"agents.view_agent", "agents.change_agent"}
