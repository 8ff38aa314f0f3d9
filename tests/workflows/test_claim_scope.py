"""Claims never cross business units: an agent of another unit cannot queue for, or ask to
yield, a key an IT agent holds, whatever its priority; within a unit nothing changes."""

import pytest
from rest_framework.test import APIClient

from agents import services as agent_services
from tests.conftest import bearer
from tests.factories import BusinessUnitFactory, UserFactory, make_role
from workflows.models import Claim, ClaimStatus

CLAIMS = "/api/v1/claims/"
TICKET = "itsm.ticket:INC-42"

pytestmark = pytest.mark.django_db


def agent_client(slug: str, unit: str, owner) -> APIClient:
    agent = agent_services.agent_register(
        approved=True, name=slug, slug=slug, owner=owner, role=make_role("clerk"),
        business_unit=BusinessUnitFactory(slug=unit, name=unit.upper()),
    )  # fmt: skip
    return bearer(APIClient(), agent_services.credential_issue(agent=agent)[1])


@pytest.fixture
def owner(db):
    return UserFactory(username="owner")


def test_another_units_high_priority_claim_is_refused_and_asks_nothing(owner):
    it_agent = agent_client("it-bot", "it", owner)
    finance_agent = agent_client("finance-bot", "finance", owner)
    held = it_agent.post(CLAIMS, {"resource_key": TICKET, "priority": 0}, format="json")
    assert held.status_code == 201, held.content

    refused = finance_agent.post(CLAIMS, {"resource_key": TICKET, "priority": 999}, format="json")

    assert refused.status_code == 409, refused.content
    error = refused.json()["error"]
    assert error["code"] == "claim_held" and error["details"] == {"resource_key": TICKET}
    holder = it_agent.get(f"{CLAIMS}{held.json()['id']}/").json()
    assert holder["status"] == "held" and holder["yield_requested"] is False
    assert not Claim.objects.filter(agent__slug="finance-bot").exists()


def test_the_holders_unit_still_queues_and_asks_it_to_yield(owner):
    it_agent = agent_client("it-bot", "it", owner)
    it_colleague = agent_client("it-bot-2", "it", owner)
    held = it_agent.post(CLAIMS, {"resource_key": TICKET}, format="json").json()
    waiting = it_colleague.post(CLAIMS, {"resource_key": TICKET, "priority": 9}, format="json")
    assert waiting.status_code == 202 and waiting.json()["status"] == ClaimStatus.WAITING
    assert it_agent.get(f"{CLAIMS}{held['id']}/").json()["yield_requested"] is True


def test_a_free_key_goes_to_any_unit(owner):
    it_agent = agent_client("it-bot", "it", owner)
    finance_agent = agent_client("finance-bot", "finance", owner)
    first = finance_agent.post(CLAIMS, {"resource_key": TICKET}, format="json")
    assert first.status_code == 201
    released = finance_agent.post(f"{CLAIMS}{first.json()['id']}/release/", {}, format="json")
    assert released.status_code == 200, released.content
    assert it_agent.post(CLAIMS, {"resource_key": TICKET}, format="json").status_code == 201
