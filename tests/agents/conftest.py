"""Fixtures of the registry's authority tests (an HR agent, its owner, a risk officer) and
their two helpers (a client as someone, the error envelope read)."""

import pytest
from django.contrib.auth.models import Group

from agents.portal_roles import PortalRole, group_name
from tests.factories import BusinessUnitFactory, UserFactory, make_agent, make_role


def as_(api, user):
    api.force_authenticate(user)
    return api


def error(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    return body["error"]


@pytest.fixture
def owner(db):
    return UserFactory(username="olivia", is_staff=True)


@pytest.fixture
def hr_agent(owner):
    return make_agent(
        slug="hr-bot",
        owner=owner,
        business_unit=BusinessUnitFactory(slug="hr", name="HR"),
        role=make_role("hr-assistant"),
    )


@pytest.fixture
def risk_officer(db):
    user = UserFactory(username="rita", is_staff=True)
    user.groups.add(Group.objects.get(name=group_name(PortalRole.RISK_OFFICER)))
    return user
