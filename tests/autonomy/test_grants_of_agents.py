"""``grants.grants_of_agents``: the one grant rule over many agents at once agrees, agent by
agent, with the rule asked for each agent alone, in one query."""

import pytest

from agents.models import Agent
from autonomy import grants
from autonomy.models import Operation
from tests.autonomy.gate_fixtures import build_registry
from tests.factories import make_agent, make_role

pytestmark = pytest.mark.django_db


def test_many_agents_at_once_agree_with_each_agent_alone(django_assert_num_queries):
    registry = build_registry()
    other_role = make_role("reporter")
    own = make_agent(slug="own-grants", role=registry.agent.role)
    via_connector = make_agent(slug="connector-grant", role=other_role)
    nothing = make_agent(slug="no-grants", role=other_role)
    grants.grant(target=registry.read, to=own)
    grants.grant(target=registry.erp, to=via_connector)
    agents = Agent.objects.filter(pk__in=[registry.agent.pk, own.pk, via_connector.pk, nothing.pk])
    with django_assert_num_queries(1):
        rows = grants.grants_of_agents(agents=agents)
    together = {(agent_id, op) for agent_id, op, _ in rows}
    alone = {(agent.pk, op.pk) for agent in agents for op in grants.operations_granted(agent=agent)}
    assert together == alone and together
    paths = {(agent_id, Operation.objects.get(pk=op).key): path for agent_id, op, path in rows}
    assert paths[(own.pk, "erp.read-invoice")] == "agent_operation"
    assert paths[(own.pk, "erp.post-invoice")] == "role_operation"
    assert paths[(via_connector.pk, "erp.read-invoice")] == "agent_connector"
    assert not any(agent_id == nothing.pk for agent_id, _, _ in rows)
