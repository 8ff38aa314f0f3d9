"""Shared memory fixtures: agents of two units with the memory connector granted, and the
calls an agent makes."""

from rest_framework.test import APIClient

from agents import services as agent_services
from autonomy import grants
from autonomy.models import Connector
from tests.autonomy.gate_fixtures import build_registry
from tests.conftest import bearer
from tests.factories import BusinessUnitFactory, make_role

ACTIONS = "/api/v1/actions/"


class Fleet:
    """Agent A and its peer A2 (unit finance, role invoice-processor), agent B (unit IT,
    another role): the memory connector granted to both roles."""

    def __init__(self):
        registry = build_registry(slug="agent-a")
        self.a, self.token_a = registry.agent, registry.token
        self.officer = registry.officer
        self.a2 = agent_services.agent_register(
            approved=True, name="Agent A2", slug="agent-a2", owner=self.officer,
            business_unit=self.a.business_unit, role=self.a.role, risk_tier=1,
        )  # fmt: skip
        _, self.token_a2 = agent_services.credential_issue(agent=self.a2)
        self.b = agent_services.agent_register(
            approved=True, name="Agent B", slug="agent-b", owner=self.officer,
            business_unit=BusinessUnitFactory(slug="it", name="IT"), role=make_role("it-helper"),
            risk_tier=1,
        )  # fmt: skip
        _, self.token_b = agent_services.credential_issue(agent=self.b)
        self.memory = Connector.objects.get(slug="memory")
        for role in (self.a.role, self.b.role):
            grants.grant(target=self.memory, to=role)

    def api(self, token: str) -> APIClient:
        return bearer(APIClient(), token)


def act(client: APIClient, operation: str, **params) -> dict:
    response = client.post(ACTIONS, {"operation": operation, "params": params}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def remember(client, key, value, **params) -> dict:
    return act(client, "memory.write", key=key, value=value, **params)


def recall(client, key, **params) -> dict:
    return act(client, "memory.read", key=key, **params)
