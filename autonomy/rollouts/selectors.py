"""Reads of rollout plans: whom a plan reaches, the level it gives an agent, and its figures
against the next wave's entry criteria."""

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count, OuterRef, Prefetch, Q, Subquery
from django.utils import timezone

from agents.models import Agent, DriftFlag, FlagStatus
from autonomy import selectors as kernel_selectors
from autonomy.models import (
    ActionRequest,
    ActionStatus,
    HumanDecision,
    PromotionStatus,
    RolloutEvent,
    RolloutMeasurement,
    RolloutPlan,
    RolloutPromotion,
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


@dataclass(frozen=True)
class PlanEntry:
    """An active plan as the level rule needs it: whom it covers, whom its waves up to the
    current one reach, and at which level."""

    pk: int
    slug: str
    name: str
    role_id: int | None
    template_key: str
    operations: tuple
    held_level: str
    wave: int
    wave_level: str | None
    everyone: bool
    agent_ids: frozenset
    unit_ids: frozenset
    guarded: bool  # its current wave has a guard

    def level_of(self, agent, *, template_key: str | None = None) -> PlanLevel | None:
        """What the plan says of ``agent`` (in ``template_key``'s steps), or None when it
        does not cover it."""
        if self.role_id is not None and self.role_id != agent.role_id:
            return None
        if self.template_key and self.template_key != template_key:
            return None
        reached = bool(self.wave_level) and (
            self.everyone or agent.pk in self.agent_ids or agent.business_unit_id in self.unit_ids
        )
        return PlanLevel(
            plan=self.slug,
            plan_name=self.name,
            wave=self.wave,
            reached=reached,
            level=self.wave_level if reached else self.held_level,
            operations=list(self.operations),
        )


def plan_table() -> tuple[PlanEntry, ...]:
    """Every active plan with what its waves up to the current one reach. Four queries,
    whatever the number of plans, waves and agents (``autonomy.levels`` reads it once per
    policy-store version)."""
    plans = list(
        RolloutPlan.objects.filter(active=True)
        .order_by("pk")
        .values_list(
            "pk", "slug", "name", "role_id", "template_key", "operations", "held_level",
            "current_wave",
        )
    )  # fmt: skip
    if not plans:
        return ()
    current = {pk: wave for pk, *_rest, wave in plans}
    waves = [
        (wave_pk, plan_pk, number, level, everyone, guarded)
        for wave_pk, plan_pk, number, level, everyone, guarded in RolloutWave.objects.filter(
            plan__in=current, number__gte=1
        )
        .annotate(guarded=Q(guard_failures__isnull=False) | Q(guard_drift_flag=True))
        .values_list("pk", "plan_id", "number", "level", "everyone", "guarded")
        if number <= current[plan_pk]
    ]
    plan_of = {wave_pk: plan_pk for wave_pk, plan_pk, *_ in waves}
    agents: dict[int, set] = {pk: set() for pk in current}
    units: dict[int, set] = {pk: set() for pk in current}
    for wave_pk, agent_id in RolloutWave.agents.through.objects.filter(
        rolloutwave_id__in=plan_of
    ).values_list("rolloutwave_id", "agent_id"):
        agents[plan_of[wave_pk]].add(agent_id)
    for wave_pk, unit_id in RolloutWave.business_units.through.objects.filter(
        rolloutwave_id__in=plan_of
    ).values_list("rolloutwave_id", "businessunit_id"):
        units[plan_of[wave_pk]].add(unit_id)
    everyone = {plan_pk for _, plan_pk, _, _, flag, _ in waves if flag}
    level_at = {(plan_pk, number): level for _, plan_pk, number, level, _, _ in waves}
    guarded = {(plan_pk, number) for _, plan_pk, number, _, _, flag in waves if flag}
    return tuple(
        PlanEntry(
            pk=pk,
            slug=slug,
            name=name,
            role_id=role_id,
            template_key=template_key or "",
            operations=tuple(operations or ()),
            held_level=held,
            wave=wave,
            wave_level=level_at.get((pk, wave)),
            everyone=pk in everyone,
            agent_ids=frozenset(agents[pk]),
            unit_ids=frozenset(units[pk]),
            guarded=(pk, wave) in guarded,
        )  # fmt: skip
        for pk, slug, name, role_id, template_key, operations, held, wave in plans
    )


def plan_levels(*, agent, template_key: str | None = None) -> list[PlanLevel]:
    """What each active plan covering ``agent`` says of it, read fresh (the agent's own view
    in the API; the gate reads the same through ``autonomy.levels``' cached index)."""
    found = (plan.level_of(agent, template_key=template_key) for plan in plan_table())
    return [said for said in found if said is not None]


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
    row = (
        plan_actions(plan=plan, agents=agents)
        .filter(created_at__gte=since, created_at__lt=now)
        .aggregate(
            actions=Count("pk"),
            denied=Count("pk", filter=Q(verdict=Verdict.DENY)),
            executed=Count(
                "pk", filter=Q(status__in=[ActionStatus.SUCCEEDED, ActionStatus.FAILED])
            ),
            failed=Count("pk", filter=Q(status=ActionStatus.FAILED)),
            answered=Count("pk", filter=~Q(human_decision="")),
            overridden=Count(
                "pk",
                filter=Q(human_decision__in=[HumanDecision.CHANGED, HumanDecision.REJECTED]),
            ),
        )
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
        actions = actions.filter(
            operation__in=kernel_selectors.operation_ids(keys=plan.operations).values()
        )
    return actions


def guarded_plans(*, agent, template_key: str = "") -> list[int]:
    """The active plans whose current wave reaches ``agent`` (in ``template_key``'s steps,
    for a template's plan) and has a guard: ``PlanEntry.level_of`` decides the reach, as it
    does for the gate. Read fresh (on a failure or a new drift flag only)."""
    found = []
    for plan in plan_table():
        said = plan.guarded and plan.level_of(agent, template_key=template_key or None)
        if said and said.reached:
            found.append(plan.pk)
    return found


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


# --- the plan's pages and API ---------------------------------------------------------------

REACH_NAMES = 5  # the agents a wave's line names; the rest are counted


def _pending_promotions() -> Prefetch:
    return Prefetch(
        "promotions",
        queryset=RolloutPromotion.objects.filter(status=PromotionStatus.PENDING).select_related(
            "proposed_by"
        ),
        to_attr="pending_promotions",
    )


def _waves() -> Prefetch:
    return Prefetch(
        "waves",
        queryset=RolloutWave.objects.order_by("number").prefetch_related(
            Prefetch("agents", queryset=Agent.objects.only("pk", "name", "slug").order_by("name")),
            "business_units",
        ),
    )


def plan_list():
    """Every plan with its role, its waves (agents and units), the level of its current wave
    (``current_level``), its waiting promotion (``pending_promotions``) and its latest
    measurement (``measured_at``, ``measured_met``), in a constant number of queries."""
    latest = RolloutMeasurement.objects.filter(plan=OuterRef("pk")).order_by("-at")
    return (
        RolloutPlan.objects.select_related("role__group", "owner", "approver_group")
        .annotate(
            current_level=Subquery(
                RolloutWave.objects.filter(
                    plan=OuterRef("pk"), number=OuterRef("current_wave")
                ).values("level")[:1]
            ),
            measured_at=Subquery(latest.values("at")[:1]),
            measured_met=Subquery(latest.values("met")[:1]),
        )
        .prefetch_related(_waves(), _pending_promotions())
        .order_by("name")
    )


def plan_by_slug(*, slug: str) -> RolloutPlan | None:
    """One plan as ``plan_list`` gives it, or None."""
    return plan_list().filter(slug=slug).first()


@dataclass(frozen=True)
class WaveReach:
    """Whom the waves up to ``wave`` reach together (``agents``), and a few of those this wave
    adds (``adds``, ``adds_count``)."""

    wave: RolloutWave
    agents: int
    adds: list
    adds_count: int
    everyone: bool


def wave_reach(*, plan: RolloutPlan) -> list[WaveReach]:
    """Each wave of ``plan`` (prefetched by ``plan_list``) with how many of the plan's agents
    it reaches, as ``population`` counts them. Two queries, however many waves and agents:
    the agents the waves name (themselves or by unit), and the group's size when a wave
    reaches everyone."""
    waves = list(plan.waves.all())
    group = Agent.objects.all()
    if plan.role_id:
        group = group.filter(role_id=plan.role_id)
    named = {a.pk for w in waves for a in w.agents.all()}
    units = {u.pk for w in waves for u in w.business_units.all()}
    rows = list(
        group.filter(Q(pk__in=named) | Q(business_unit_id__in=units))
        .order_by("name")
        .values_list("pk", "name", "business_unit_id")
    )
    group_size = group.count() if any(w.everyone for w in waves) else None
    reached: set = set()
    everyone = False
    found = []
    for wave in waves:
        own_agents = {a.pk for a in wave.agents.all()}
        own_units = {u.pk for u in wave.business_units.all()}
        adds = [
            name
            for pk, name, unit in rows
            if (pk in own_agents or unit in own_units) and pk not in reached
        ]
        reached |= {pk for pk, _, unit in rows if pk in own_agents or unit in own_units}
        everyone = everyone or wave.everyone
        found.append(
            WaveReach(
                wave=wave,
                agents=group_size if everyone else len(reached),
                adds=adds[:REACH_NAMES],
                adds_count=len(adds),
                everyone=wave.everyone,
            )
        )
    return found


def plan_events(*, plan: RolloutPlan, limit: int = 100) -> list[RolloutEvent]:
    """The plan's history, newest first."""
    return list(plan.events.order_by("-created_at", "-pk")[:limit])


def plan_measurements(*, plan: RolloutPlan, since, limit: int = 2000) -> list[tuple]:
    """``(at, wave, met, figures)`` of the plan's measurements since ``since``, oldest first:
    the series of its charts over time."""
    rows = list(
        plan.measurements.filter(at__gte=since)
        .order_by("-at")
        .values_list("at", "wave", "met", "figures")[:limit]
    )
    rows.reverse()
    return rows
