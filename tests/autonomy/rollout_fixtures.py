"""A rollout plan for the page, admin and API tests: an invoice-processing rollout in its
second wave, its agents in finance and procurement, with an action history written directly
(``dashboard_fixtures.history``) so its next wave's criteria hold or not as a test needs."""

from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import Group
from django.utils import timezone

from agents.portal_roles import PortalRole, group_name
from autonomy.models import AutonomyLevel, RolloutPlan, RolloutWave
from tests.autonomy.dashboard_fixtures import history
from tests.autonomy.gate_fixtures import Registry, build_registry
from tests.factories import BusinessUnitFactory, UserFactory, make_agent


@dataclass
class Rollout:
    plan: RolloutPlan
    registry: Registry
    finance: list
    procurement: list


def person(username: str, role: str | None, **kwargs):
    user = UserFactory(username=username, is_staff=True, **kwargs)
    if role:
        user.groups.add(Group.objects.get(name=group_name(role)))
    return user


def officer(username: str = "risk-officer"):
    return person(username, PortalRole.RISK_OFFICER)


def build_rollout(*, actions: int = 20, finance: int = 3, procurement: int = 2) -> Rollout:
    """Wave 1: the registry's agent, shadow; wave 2 (current): finance, supervised; wave 3:
    procurement too, guarded, entered on at least 10 actions with at most 30 % denied and
    10 % failed; wave 4: everyone, autonomous. ``actions``: the history of finance's agents
    in the last hours (20 % denied, none failed)."""
    registry = build_registry()
    agent = registry.agent
    unit, role = agent.business_unit, agent.role
    procurement_unit = BusinessUnitFactory(slug="procurement", name="Procurement")
    finance_agents = [agent] + [
        make_agent(slug=f"ap-bot-{i}", business_unit=unit, role=role) for i in range(finance - 1)
    ]
    procurement_agents = [
        make_agent(slug=f"buyer-{i}", business_unit=procurement_unit, role=role)
        for i in range(procurement)
    ]
    now = timezone.now()
    plan = RolloutPlan.objects.create(
        slug="invoice-rollout",
        name="Invoice processing",
        role=role,
        held_level=AutonomyLevel.SHADOW,
        current_wave=2,
        wave_since=now - timedelta(hours=6),
        window_minutes=24 * 60,
        auto_propose=False,
    )
    first = RolloutWave.objects.create(plan=plan, number=1, level=AutonomyLevel.SHADOW)
    first.agents.add(agent)
    second = RolloutWave.objects.create(
        plan=plan, number=2, name="finance", level=AutonomyLevel.SUPERVISED, min_actions=1
    )
    second.business_units.add(unit)
    third = RolloutWave.objects.create(
        plan=plan, number=3, name="finance and procurement", level=AutonomyLevel.GUARDED,
        min_actions=10, max_denial_ratio=0.3, max_failure_ratio=0.1, guard_failures=3,
    )  # fmt: skip
    third.business_units.add(procurement_unit)
    RolloutWave.objects.create(
        plan=plan, number=4, name="the enterprise", level=AutonomyLevel.AUTONOMOUS,
        everyone=True, min_actions=50, max_override_ratio=0.1, guard_drift_flag=True,
    )  # fmt: skip
    if actions:
        history(
            agents=finance_agents, operation=registry.post, n=actions, now=now,
            span=timedelta(hours=5),
        )  # fmt: skip
    return Rollout(
        plan=plan, registry=registry, finance=finance_agents, procurement=procurement_agents
    )
