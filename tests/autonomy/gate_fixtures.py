"""A small registry for gate tests: one unit, one role, one agent with a token, ERP ops."""

from dataclasses import dataclass

import pytest

from agents import services as agent_services
from agents.models import Agent
from autonomy import grants
from autonomy.models import Connector, ConnectorKind, DataClass, Effect, Operation, Policy
from autonomy.policy import services as policy_services
from tests.factories import BusinessUnitFactory, UserFactory, make_role

INVOICE_SCHEMA = {
    "type": "object",
    "properties": {"invoice_id": {"type": "string"}, "amount": {"type": "number", "minimum": 0}},
    "required": ["invoice_id", "amount"],
    "additionalProperties": False,
}
BASELINE = 'permit (principal, action == Action::"invoke", resource);'


@dataclass
class Registry:
    agent: Agent
    token: str
    erp: Connector
    post: Operation
    read: Operation
    officer: object


def build_registry(*, slug: str = "ap-bot", baseline: bool = True) -> Registry:
    officer = UserFactory(username=f"officer-{slug}")
    unit = BusinessUnitFactory(slug="finance", name="Finance")
    role = make_role("invoice-processor")
    agent = agent_services.agent_register(
        approved=True,
        name="AP bot",
        slug=slug,
        owner=officer,
        business_unit=unit,
        role=role,
        risk_tier=1,
    )
    _, token = agent_services.credential_issue(agent=agent)
    erp, _ = Connector.objects.get_or_create(
        slug="erp", defaults={"name": "ERP", "kind": ConnectorKind.ERP}
    )
    post, _ = Operation.objects.get_or_create(
        connector=erp,
        slug="post-invoice",
        defaults=dict(
            name="Post invoice", effect=Effect.WRITE, sensitivity=2, data_class=DataClass.INTERNAL,
            financial=True, params_schema=INVOICE_SCHEMA, amount_param="amount",
        ),
    )  # fmt: skip
    read, _ = Operation.objects.get_or_create(
        connector=erp, slug="read-invoice", defaults=dict(name="Read invoice", sensitivity=1)
    )
    grants.grant(target=post, to=role)
    policy_services.registry_changed()
    if baseline and not Policy.objects.filter(name="baseline").exists():
        policy_services.policy_save(name="baseline", text=BASELINE, enabled=True, by=officer)
    return Registry(agent=agent, token=token, erp=erp, post=post, read=read, officer=officer)


@pytest.fixture
def registry(db) -> Registry:
    return build_registry()
