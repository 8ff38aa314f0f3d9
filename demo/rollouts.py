"""The demo's rollout: invoice processing in finance, in its second wave (supervised), with a
day of supervised history that meets the third wave's criteria, so ``make run`` opens with
the plan's page showing them live and, within a minute (the measuring beat), a promotion
waiting for one approval in the risk officers' inbox. Approve it and the finance invoice
processors post at the guarded level from their next action."""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from agents.models import Agent, AgentStatus
from autonomy.models import (
    ActionRequest,
    ActionStatus,
    AutonomyLevel,
    HumanDecision,
    RolloutEvent,
    RolloutEventKind,
    RolloutPlan,
    RolloutWave,
    Verdict,
)
from autonomy.selectors import operation_by_key

SLUG = "invoice-processing"
ROLE, UNIT, OPERATION = "invoice-processor", "finance", "erp.post-invoice"
FIRST, SECOND = 5, 10  # agents named in waves 1 and 2
HISTORY = 150  # supervised postings of the wave's agents over the last day


def _posting(agent, operation, at, n, *, verdict, status, human) -> ActionRequest:
    decided = {
        HumanDecision.APPROVED: "approval_granted",
        HumanDecision.CHANGED: "approval_granted",
        HumanDecision.REJECTED: "approval_rejected",
    }.get(human)
    reasons = [{"code": "autonomy_supervised", "message": "supervised, set on rollout plan "
                f"{SLUG}, wave 2", "details": {}}]  # fmt: skip
    if decided:
        reasons.append({"code": decided, "message": "demo: decided by a person", "details": {}})
    return ActionRequest(
        agent=agent, operation=operation, verdict=verdict, status=status, created_at=at,
        decided_at=at, started_at=at if status == ActionStatus.SUCCEEDED else None,
        finished_at=at + timedelta(minutes=4), risk_score=34 + n % 11, reasons=reasons,
        params={"invoice_id": f"INV-R{n:05d}", "amount": 400 + 37 * n % 3500, "currency": "EUR"},
        reason="demo: supervised rollout history", autonomy_level=AutonomyLevel.SUPERVISED,
        human_decision=human,
    )  # fmt: skip


def seed_rollout() -> int:
    """The plan, its waves and history; skipped once it exists (idempotent). Returns 1 when
    it made the plan.

    The plan is created at its second wave with the history of how it got there (events,
    and a day of postings written directly with their past timestamps, as ``demo.drift``
    does): a demo's past, not a move. From here the wave moves only through
    ``autonomy.rollouts.services``."""
    if RolloutPlan.objects.filter(slug=SLUG).exists():
        return 0
    agents = list(
        Agent.objects.filter(role__slug=ROLE, business_unit__slug=UNIT, status=AgentStatus.ACTIVE)
        .select_related("role", "business_unit")
        .order_by("slug")
    )
    operation = operation_by_key(key="erp.post-invoice")
    if len(agents) < FIRST + SECOND or operation is None:
        return 0  # a small demo (--agents 20) has too few invoice processors for waves
    User = get_user_model()
    owner = User.objects.filter(username="dana.ross").first()
    now = timezone.now()
    with transaction.atomic():
        plan = RolloutPlan.objects.create(
            slug=SLUG,
            name="Invoice processing",
            description=(
                "Invoice processors post to the ERP on their own, one wave at a time: five "
                "agents in shadow, then fifteen under supervision, then all of finance within "
                "risk thresholds, then the enterprise."
            ),
            role=agents[0].role,
            operations=[OPERATION],
            held_level=AutonomyLevel.SHADOW,
            current_wave=2,
            wave_since=now - timedelta(days=1),
            window_minutes=24 * 60,
            owner=owner,
        )
        unit = agents[0].business_unit
        one = RolloutWave.objects.create(
            plan=plan, number=1, name="Five finance agents", level=AutonomyLevel.SHADOW
        )
        one.agents.set(agents[:FIRST])
        two = RolloutWave.objects.create(
            plan=plan, number=2, name="Fifteen agents, supervised",
            level=AutonomyLevel.SUPERVISED, min_actions=40, max_denial_ratio=0.1,
            max_open_drift_flags=0, guard_failures=5, guard_window_minutes=10,
        )  # fmt: skip
        two.agents.set(agents[FIRST : FIRST + SECOND])
        three = RolloutWave.objects.create(
            plan=plan, number=3, name="All of finance", level=AutonomyLevel.GUARDED,
            min_actions=100, max_denial_ratio=0.05, max_failure_ratio=0.02,
            max_open_drift_flags=0, max_override_ratio=0.1, guard_failures=5,
            guard_window_minutes=10,
        )  # fmt: skip
        three.business_units.set([unit])
        RolloutWave.objects.create(
            plan=plan, number=4, name="The enterprise", level=AutonomyLevel.AUTONOMOUS,
            everyone=True, min_actions=1000, max_denial_ratio=0.02, max_failure_ratio=0.01,
            max_open_drift_flags=0, max_override_ratio=0.02, guard_failures=10,
        )  # fmt: skip
        reached = agents[: FIRST + SECOND]
        rows = []
        for n in range(HISTORY):
            at = now - timedelta(hours=22) + timedelta(minutes=8 * n)
            human = HumanDecision.APPROVED
            verdict, status = Verdict.NEEDS_APPROVAL, ActionStatus.SUCCEEDED
            if n in (17, 88):
                human = HumanDecision.CHANGED
            elif n == 51:
                human, status = HumanDecision.REJECTED, ActionStatus.DENIED
            elif n == 120:  # the gate refused this one (over the daily spend)
                human, verdict, status = "", Verdict.DENY, ActionStatus.DENIED
            rows.append(_posting(reached[n % len(reached)], operation, at, n, verdict=verdict,
                                 status=status, human=human))  # fmt: skip
        ActionRequest.objects.bulk_create(rows, batch_size=500)
        for days, kind, waves, actor, reason in (
            (4, RolloutEventKind.PROPOSED, (0, 1), "dana.ross", "Start with five agents."),
            (4, RolloutEventKind.PROMOTED, (0, 1), "admin", "Shadow first."),
            (2, RolloutEventKind.PROPOSED, (1, 2), "system", "The entry criteria hold."),
            (1, RolloutEventKind.PROMOTED, (1, 2), "admin", "Shadow postings matched ours."),
        ):
            event = RolloutEvent.objects.create(
                plan=plan, kind=kind, from_wave=waves[0], to_wave=waves[1], actor=actor,
                reason=reason,
            )  # fmt: skip
            RolloutEvent.objects.filter(pk=event.pk).update(
                created_at=now - timedelta(days=days, minutes=10 if kind == "proposed" else 0)
            )
    return 1
