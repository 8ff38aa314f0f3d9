"""Fixtures of the registry's authority tests: an HR agent, its owner, a risk officer."""

import pytest
from django.contrib.auth.models import Group

from agents.portal_roles import PortalRole, group_name
from tests.factories import BusinessUnitFactory, UserFactory, make_agent, make_role


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
