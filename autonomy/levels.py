"""The one rule for an action's autonomy level: which settings apply, and which wins.

A level is set (``AutonomySetting``) on an agent, its role, its business unit or the
workflow template a step runs for, optionally narrowed to some operations; an active rollout
plan covering the agent (``autonomy.rollouts``) gives it its current wave's level, or the
plan's held level when no wave has reached it yet. The most restrictive that applies wins
(shadow < supervised < guarded < autonomous); with none, the level is ``guarded``, the
gate's behaviour before levels existed.

``gate.decide`` calls ``level_for`` once per decision with the policy-store version its one
read saw. Settings and plans are read once per version into a ``LevelIndex`` that every
decision of the process shares, so a decision asks the database nothing for its level. Any
save or delete of a setting, a plan or a wave (a promotion, a demotion by a guard included)
moves that version in its own transaction (``autonomy.rollouts.receivers``), so the next
decision in every process reads them again.
"""

from dataclasses import dataclass

from autonomy.models import AutonomyLevel, AutonomySetting
from autonomy.policy import engine as policy_engine
from autonomy.policy.versioned import PerVersion
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


class LevelIndex:
    """Every autonomy setting and active rollout plan, as one policy-store version has them.
    Replaced whole when the version moves."""

    def __init__(self, version: int):
        self.version = version
        self.settings = tuple(
            AutonomySetting.objects.order_by("pk").values_list(
                "level", "agent_id", "role_id", "business_unit_id", "template_key", "operations"
            )
        )
        self.plans = rollout_selectors.plan_table()

    def level_for(self, agent, operation_key, template_key) -> Level:
        found = DEFAULT
        for level, agent_id, role_id, unit_id, template, operations in self.settings:
            if not (
                agent_id == agent.pk
                or role_id == agent.role_id
                or unit_id == agent.business_unit_id
                or (template and template == template_key)
            ):
                continue
            if operations and operation_key not in operations:
                continue
            if found is not DEFAULT and RANK[level] >= RANK[found.level]:
                continue
            found = Level(
                AutonomyLevel(level), _source(agent, agent_id, role_id, unit_id, template)
            )
        for plan in self.plans:
            said = plan.level_of(agent, template_key=template_key)
            if said is None or (plan.operations and operation_key not in plan.operations):
                continue
            if found is not DEFAULT and RANK[said.level] >= RANK[found.level]:
                continue
            found = Level(AutonomyLevel(said.level), said.source)
        return found


_index = PerVersion(LevelIndex)
index_forget = _index.forget


def level_for(
    *, agent, operation_key: str | None = None, template_key: str | None = None, version=None
) -> Level:
    """The level ``agent`` acts at for ``operation_key`` (a setting narrowed to other
    operations does not apply; without an operation, only settings narrowed to none do),
    within the workflow template ``template_key`` when a step asks. ``version``: the
    policy-store version the caller read (the gate's); without it, one query reads it. The
    agent's role and business unit come from the agent as loaded."""
    if version is None:
        version = policy_engine.store_version()
    return _index.get(version).level_for(agent, operation_key, template_key)


def _source(agent, agent_id, role_id, unit_id, template) -> str:
    if agent_id:
        return f"agent {agent.slug}"
    if role_id:
        return f"role {agent.role.slug}"
    if unit_id:
        return f"business unit {agent.business_unit.slug}"
    return f"workflow template {template}"
