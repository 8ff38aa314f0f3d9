"""Reads of rollout plans: whom a plan reaches, the level it gives an agent, and its figures
against the next wave's entry criteria."""

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count, Exists, OuterRef, Q, Subquery
from django.utils import timezone

from agents.models import Agent, DriftFlag, FlagStatus
from autonomy.models import (
    ActionRequest,
    ActionStatus,
    HumanDecision,
    Operation,
    RolloutPlan,
    RolloutWave,
    Verdict,
)


@dataclass(frozen=True)
class PlanLevel:
    """What one plan says of one agent: its level, and why."""

    plan: str  # slug
    plan_name: str
    wave: int
    reached: bool
    level: str
    operations: list

    @property
    def source(self) -> str:
        if self.reached:
            return f"rollout plan {self.plan}, wave {self.wave}"
        return f"rollout plan {self.plan}, not yet reached (held)"

    def as_dict(self) -> dict:
        return {
            "plan": self.plan,
            "name": self.plan_name,
            "wave": self.wave,
            "reached": self.reached,
            "level": self.level,
            "operations": list(self.operations),
        }


def _reached_by(agent_id, unit_id, *, plan_ref) -> Exists:
    """Whether a wave of the plan up to its current one reaches the agent."""
    return Exists(
        RolloutWave.objects.filter(plan=plan_ref, number__lte=OuterRef("current_wave")).filter(
            Q(everyone=True) | Q(agents=agent_id) | Q(business_units=unit_id)
        )
    )


def plan_levels(*, agent, template_key: str | None = None) -> list[PlanLevel]:
    """The active plans covering ``agent`` (by its role, or by ``template_key`` when it acts
    in a workflow step), each with the level it gives the agent. One query."""
    covers = Q(template_key="")
    if template_key:
        covers |= Q(template_key=template_key)
    rows = (
        RolloutPlan.objects.filter(active=True)
        .filter(Q(role_id=agent.role_id) | Q(role__isnull=True))
        .filter(covers)
        .annotate(
            reached=_reached_by(agent.pk, agent.business_unit_id, plan_ref=OuterRef("pk")),
            wave_level=Subquery(
                RolloutWave.objects.filter(
                    plan=OuterRef("pk"), number=OuterRef("current_wave")
                ).values("level")[:1]
            ),
        )
        .values_list(
            "slug", "name", "current_wave", "held_level", "operations", "reached", "wave_level"
        )
        .order_by("pk")
    )
    return [
        PlanLevel(
            plan=slug,
            plan_name=name,
            wave=wave,
            reached=bool(reached and wave_level),
            level=wave_level if reached and wave_level else held,
            operations=operations or [],
        )
        for slug, name, wave, held, operations, reached, wave_level in rows
    ]


def population(*, plan: RolloutPlan, wave: int | None = None):
    """The agents of the plan's group that its waves up to ``wave`` (its current one) reach."""
    wave = plan.current_wave if wave is None else wave
    agents = Agent.objects.all()
    if plan.role_id:
        agents = agents.filter(role_id=plan.role_id)
    waves = RolloutWave.objects.filter(plan=plan, number__lte=wave)
    if waves.filter(everyone=True).exists():
        return agents
    return agents.filter(
        Q(pk__in=waves.filter(agents__isnull=False).values("agents"))
        | Q(business_unit__in=waves.filter(business_units__isnull=False).values("business_units"))
    )


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def measure(*, plan: RolloutPlan, now=None) -> dict:
    """The record of the agents the current wave reaches, over the plan's window: actions
    taken, denial ratio, failure ratio (of those executed), open drift flags and the human
    override ratio (of those people answered: rejected or changed). Three queries."""
    now = now or timezone.now()
    since = now - timedelta(minutes=plan.window_minutes)
    agents = population(plan=plan)
    row = plan_actions(plan=plan, agents=agents).filter(created_at__gte=since).aggregate(
        actions=Count("pk"),
        denied=Count("pk", filter=Q(verdict=Verdict.DENY)),
        executed=Count("pk", filter=Q(status__in=[ActionStatus.SUCCEEDED, ActionStatus.FAILED])),
        failed=Count("pk", filter=Q(status=ActionStatus.FAILED)),
        answered=Count("pk", filter=~Q(human_decision="")),
        overridden=Count(
            "pk",
            filter=Q(human_decision__in=[HumanDecision.CHANGED, HumanDecision.REJECTED]),
        ),
    )
    flags = DriftFlag.objects.filter(agent__in=agents.values("pk"), status=FlagStatus.OPEN)
    return {
        "wave": plan.current_wave,
        "window_minutes": plan.window_minutes,
        "since": since.isoformat(),
        "at": now.isoformat(),
        "agents": agents.count(),
        "actions": row["actions"],
        "denied": row["denied"],
        "denial_ratio": _ratio(row["denied"], row["actions"]),
        "executed": row["executed"],
        "failed": row["failed"],
        "failure_ratio": _ratio(row["failed"], row["executed"]),
        "open_drift_flags": flags.count(),
        "answered": row["answered"],
        "overridden": row["overridden"],
        "override_ratio": _ratio(row["overridden"], row["answered"]),
    }


def plan_actions(*, plan: RolloutPlan, agents):
    """The actions of ``agents`` that the plan covers (its template, its operations)."""
    actions = ActionRequest.objects.filter(agent__in=agents.values("pk"))
    if plan.template_key:
        actions = actions.filter(template_key=plan.template_key)
    if plan.operations:
        actions = actions.filter(operation__in=_operation_ids(plan.operations))
    return actions


def guarded_plans(*, agent, template_key: str = ""):
    """The active plans whose current wave reaches ``agent`` (in ``template_key``'s steps,
    for a template's plan) and has a guard, with that wave. One query."""
    covers = (
        Q(template_key="") | Q(template_key=template_key) if template_key else Q(template_key="")
    )
    plans = (
        RolloutPlan.objects.filter(active=True, current_wave__gte=1)
        .filter(Q(role_id=agent.role_id) | Q(role__isnull=True))
        .filter(covers)
        .filter(_reached_by(agent.pk, agent.business_unit_id, plan_ref=OuterRef("pk")))
        .filter(
            Exists(
                RolloutWave.objects.filter(
                    plan=OuterRef("pk"), number=OuterRef("current_wave")
                ).filter(Q(guard_failures__isnull=False) | Q(guard_drift_flag=True))
            )
        )
    )
    return list(plans.values_list("pk", flat=True))


def _operation_ids(keys) -> list[int]:
    wanted = {tuple(k.split(".", 1)) for k in keys if "." in k}
    return [
        pk
        for pk, connector, slug in Operation.objects.values_list("pk", "connector__slug", "slug")
        if (connector, slug) in wanted
    ]


@dataclass(frozen=True)
class Criterion:
    name: str
    label: str
    value: float | int | None
    threshold: float | int
    at_least: bool  # the value must be at least the threshold (else at most)

    @property
    def met(self) -> bool:
        if self.value is None:
            return False  # no sample yet: not shown to hold
        return self.value >= self.threshold if self.at_least else self.value <= self.threshold

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "label": self.label,
            "value": self.value,
            "threshold": self.threshold,
            "at_least": self.at_least,
            "met": self.met,
        }


def criteria(*, wave: RolloutWave, figures: dict) -> list[Criterion]:
    """The entry criteria ``wave`` sets, each against the measured ``figures``."""
    found = [Criterion("actions", "actions taken", figures["actions"], wave.min_actions, True)]
    for name, label, threshold in (
        ("denial_ratio", "denial ratio", wave.max_denial_ratio),
        ("failure_ratio", "failure ratio", wave.max_failure_ratio),
        ("open_drift_flags", "open drift flags", wave.max_open_drift_flags),
        ("override_ratio", "human override ratio", wave.max_override_ratio),
    ):
        if threshold is not None:
            found.append(Criterion(name, label, figures[name], threshold, False))
    return found


def next_wave(plan: RolloutPlan) -> RolloutWave | None:
    return plan.waves.filter(number=plan.current_wave + 1).first()


def plan_health(*, plan: RolloutPlan, now=None) -> dict:
    """The figures of the current wave and, when there is a next wave, its criteria against
    them and whether they all hold."""
    figures = measure(plan=plan, now=now)
    upcoming = next_wave(plan)
    if upcoming is None:
        return {"figures": figures, "next_wave": None, "criteria": [], "met": False}
    checked = criteria(wave=upcoming, figures=figures)
    return {
        "figures": figures,
        "next_wave": upcoming.number,
        "criteria": [c.as_dict() for c in checked],
        "met": all(c.met for c in checked),
    }
