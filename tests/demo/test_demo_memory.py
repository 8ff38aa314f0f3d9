"""The demo's shared memory: customer-ops agents share what they remember; IT cannot read it."""

import pytest
from django.core.management import call_command

from agents.models import Agent, AgentStatus
from autonomy import actions
from autonomy.models import MemoryEntry

pytestmark = pytest.mark.django_db


def _agent(role: str) -> Agent:
    return (
        Agent.objects.select_related("role__group", "business_unit", "service_user")
        .filter(role__slug=role, status=AgentStatus.ACTIVE)
        .order_by("-slug")
        .first()
    )


def _recall(agent: Agent, key: str) -> dict:
    action, _ = actions.action_request(
        agent=agent, operation_key="memory.read", params={"key": key}, reason="test"
    )
    assert action.status == "succeeded", action.reasons
    return action.outcome


def test_seed_demo_writes_customer_ops_memory_that_only_its_unit_reads(capsys):
    call_command("seed_demo", "--agents", "60")
    assert "memory entries" in capsys.readouterr().out

    entry = MemoryEntry.objects.select_related("business_unit", "agent").get(
        key="customer:4411:contact"
    )
    assert entry.business_unit.slug == "customer-ops" and entry.value == "prefers e-mail"
    assert entry.agent.role.slug == "support-agent" and entry.action_id is not None

    # another agent of customer-ops (the onboarding role) reads it; an IT triager cannot
    assert _recall(_agent("onboarding-agent"), "customer:4411:contact")["found"] is True
    assert _recall(_agent("incident-triager"), "customer:4411:contact")["found"] is False
    assert _recall(_agent("incident-triager"), "vpn:known-issue")["found"] is True

    call_command("seed_demo", "--agents", "60")
    assert "0 memory entries" in capsys.readouterr().out


def test_every_memory_play_of_the_fleet_is_within_the_demo_grants():
    from autonomy import grants
    from demo.fleet import ROUTINE

    call_command("seed_demo", "--agents", "60")
    for role, plays in ROUTINE.items():
        memory_ops = {op for op, _ in plays if op.startswith("memory.")}
        if memory_ops:
            callable_ops = {op.key for op in grants.operations_callable(agent=_agent(role))}
            assert memory_ops <= callable_ops, role
