"""The one rule for an action's autonomy level: which settings apply, and which wins.

A level is set (``AutonomySetting``) on an agent, its role, its business unit or the
workflow template a step runs for, optionally narrowed to some operations; an active rollout
plan covering the agent (``autonomy.rollouts``) gives it its current wave's level, or the
plan's held level when no wave has reached it yet. The most
restrictive that applies wins (shadow < supervised < guarded < autonomous); with none, the
level is ``guarded``, the gate's behaviour before levels existed. ``gate.decide`` calls
``level_for`` once per decision: two indexed queries (settings, plans), read fresh, so a
changed setting or a plan's new wave holds from the next decision in every process, with no
cache to invalidate.
"""

from dataclasses import dataclass

from django.db.models import Q

from autonomy.models import AutonomyLevel, AutonomySetting
from autonomy.rollouts import selectors as rollout_selectors

ORDER = [
    AutonomyLevel.SHADOW,
    AutonomyLevel.SUPERVISED,
    AutonomyLevel.GUARDED,
    AutonomyLevel.AUTONOMOUS,
]
RANK = {level: rank for rank, level in enumerate(ORDER)}


@dataclass(frozen=True)
class Level:
    level: str
    source: str  # where it was set, "business unit finance"; "default" when nowhere

    def describe(self) -> str:
        if self.source == "default":
            return f"{self.level} (the default)"
        return f"{self.level}, set on {self.source}"

    def as_dict(self) -> dict:
        return {"level": str(self.level), "source": self.source}


DEFAULT = Level(AutonomyLevel.GUARDED, "default")


def level_for(*, agent, operation_key: str | None = None, template_key: str | None = None):
    """The level ``agent`` acts at for ``operation_key`` (a setting narrowed to other
    operations does not apply; without an operation, only settings narrowed to none do),
    within the workflow template ``template_key`` when a step asks. Two queries; the agent's
    role and business unit names come from the agent as loaded."""
    scope = (
        Q(agent_id=agent.pk) | Q(role_id=agent.role_id) | Q(business_unit_id=agent.business_unit_id)
    )
    if template_key:
        scope |= Q(template_key=template_key)
    rows = AutonomySetting.objects.filter(scope).values_list(
        "level", "agent_id", "role_id", "business_unit_id", "template_key", "operations"
    )
    candidates = [
        (
            level,
            operations,
            lambda a=agent_id, r=role_id, u=unit_id, t=template: _source(agent, a, r, u, t),
        )
        for level, agent_id, role_id, unit_id, template, operations in rows.order_by("pk")
    ]
    candidates += [
        (plan.level, plan.operations, lambda plan=plan: plan.source)
        for plan in rollout_selectors.plan_levels(agent=agent, template_key=template_key)
    ]
    found = DEFAULT
    for level, operations, source in candidates:
        if operations and operation_key not in operations:
            continue
        if found is not DEFAULT and RANK[level] >= RANK[found.level]:
            continue
        found = Level(AutonomyLevel(level), source())
    return found


def _source(agent, agent_id, role_id, unit_id, template) -> str:
    if agent_id:
        return f"agent {agent.slug}"
    if role_id:
        return f"role {agent.role.slug}"
    if unit_id:
        return f"business unit {agent.business_unit.slug}"
    return f"workflow template {template}"
