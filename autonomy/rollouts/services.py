"""The one writer of a rollout plan's wave.

A plan moves up only through ``promotion_settle``, called by the approval its promotion
opened (``promotion_propose`` sends ``rollout_promotion_proposed``; ``approvals`` reacts).
It moves down by ``plan_demote``: a person with the authority, or a tripped guard
(``guard_check``), inside the transaction that recorded the failure or the drift flag, so
the next action is decided at the lower wave's level. Every move locks the plan row, is
written to the plan's history (``RolloutEvent``) and to the audit log, and tells the people
responsible.
"""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from autonomy import audit, signals
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import (
    ActionStatus,
    PromotionStatus,
    RolloutEvent,
    RolloutEventKind,
    RolloutMeasurement,
    RolloutPlan,
    RolloutPromotion,
)
from autonomy.rollouts import selectors

VIEW = "autonomy.view_rolloutplan"
STEER = "autonomy.promote_rolloutplan"


def may_view(*, user) -> bool:
    """Whether ``user`` may read rollout plans (the portal and the API add: people only)."""
    return bool(user and user.is_active) and user.has_perm(VIEW)


def may_steer(*, user) -> bool:
    """Whether ``user`` may propose promotions and demote waves (of any plan)."""
    return bool(user and user.is_active) and user.has_perm(STEER)


def _locked(plan_id) -> RolloutPlan:
    plan = RolloutPlan.objects.select_for_update().filter(pk=plan_id).first()
    if plan is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such rollout plan.", status_code=404)
    return plan


def _check_authority(by) -> None:
    if by is not None and not may_steer(user=by):
        raise DomainError(
            ErrorCode.PERMISSION_DENIED,
            "Only people allowed to steer rollouts may do this.",
            status_code=403,
        )


def _record(plan, *, kind, from_wave, to_wave, actor, reason="", figures=None, promotion=None):
    event = RolloutEvent.objects.create(
        plan=plan,
        kind=kind,
        from_wave=from_wave,
        to_wave=to_wave,
        actor=actor,
        reason=reason[:5000],
        figures=figures or {},
        promotion=promotion,
    )
    audit.append(
        kind=f"rollout_{kind}",
        actor=actor,
        payload={
            "plan": plan.slug,
            "from_wave": from_wave,
            "to_wave": to_wave,
            "reason": reason[:5000],
            "figures": figures or {},
            "promotion_id": str(promotion.pk) if promotion else None,
        },
    )
    return event


def _move(plan: RolloutPlan, to_wave: int, *, at=None) -> None:
    plan.current_wave = to_wave
    plan.wave_since = at or timezone.now()
    plan.save(update_fields=["current_wave", "wave_since"])


def _notify(plan: RolloutPlan, event: RolloutEvent) -> None:
    from autonomy import tasks

    transaction.on_commit(lambda: tasks.rollout_notify.delay(event.pk))


def promotion_propose(*, plan_id, by=None, now=None) -> RolloutPromotion:
    """Propose moving the plan up one wave, with its figures, when the next wave's entry
    criteria hold; the approval it opens carries the figures. ``by``: the person asking
    (None: the measuring beat). One already waiting is returned as it is."""
    _check_authority(by)
    with transaction.atomic():
        plan = _locked(plan_id)
        if not plan.active:
            raise DomainError(
                ErrorCode.ROLLOUT_INACTIVE, "The plan is not active.", status_code=409
            )
        waiting = plan.promotions.filter(status=PromotionStatus.PENDING).first()
        if waiting is not None:
            return waiting
        health = selectors.plan_health(plan=plan, now=now)
        if health["next_wave"] is None:
            raise DomainError(
                ErrorCode.ROLLOUT_NO_NEXT_WAVE,
                f"Wave {plan.current_wave} is the plan's last.",
                status_code=409,
            )
        if not health["met"]:
            raise DomainError(
                ErrorCode.ROLLOUT_CRITERIA_NOT_MET,
                f"Wave {health['next_wave']}'s entry criteria do not hold yet.",
                {"criteria": health["criteria"]},
                status_code=409,
            )
        promotion = RolloutPromotion.objects.create(
            plan=plan,
            from_wave=plan.current_wave,
            to_wave=health["next_wave"],
            figures=health,
            proposed_by=by,
        )
        actor = by.get_username() if by else "system"
        _record(
            plan,
            kind=RolloutEventKind.PROPOSED,
            from_wave=promotion.from_wave,
            to_wave=promotion.to_wave,
            actor=actor,
            reason="The entry criteria hold.",
            figures=health,
            promotion=promotion,
        )
        signals.rollout_promotion_proposed.send(sender=RolloutPromotion, promotion=promotion)
    return promotion


def promotion_lock(*, promotion_id) -> RolloutPlan | None:
    """Lock the plan a promotion would move, in the caller's transaction, before any other
    row of it. Every writer of a plan takes the plan's row first (``plan_demote``,
    ``guard_check``, ``promotion_propose``, ``promotion_settle``); whoever settles a
    promotion locks it before its own rows too (``approvals``: before its request), so an
    approval and a demotion at once queue instead of deadlocking. None: no such promotion."""
    plan_id = (
        RolloutPromotion.objects.filter(pk=promotion_id).values_list("plan_id", flat=True).first()
    )
    return None if plan_id is None else _locked(plan_id)


def promotion_settle(*, promotion_id, approved: bool, actor: str, reason: str = "") -> str:
    """People decided the promotion's approval: carry it out (the plan moves to its wave) or
    close it rejected. A promotion whose plan moved while it waited is void. Run it in the
    approval's transaction. Returns the promotion's status."""
    with transaction.atomic(savepoint=False):
        plan = promotion_lock(promotion_id=promotion_id)
        promotion = RolloutPromotion.objects.select_for_update().filter(pk=promotion_id).first()
        if plan is None or promotion is None or promotion.status != PromotionStatus.PENDING:
            return getattr(promotion, "status", "gone")
        now = timezone.now()
        promotion.decided_at = now
        if approved and (plan.current_wave != promotion.from_wave or not plan.active):
            promotion.status = PromotionStatus.VOID
            kind, to_wave = RolloutEventKind.VOIDED, plan.current_wave
            reason = (
                f"Approved by {actor}, but the plan is at wave {plan.current_wave} now, not "
                f"{promotion.from_wave}: propose again."
            )
        elif approved:
            promotion.status = PromotionStatus.APPROVED
            kind, to_wave = RolloutEventKind.PROMOTED, promotion.to_wave
            _move(plan, to_wave, at=now)
        else:
            promotion.status = PromotionStatus.REJECTED
            kind, to_wave = RolloutEventKind.REJECTED, plan.current_wave
        promotion.save(update_fields=["status", "decided_at"])
        event = _record(
            plan,
            kind=kind,
            from_wave=promotion.from_wave,
            to_wave=to_wave,
            actor=actor,
            reason=reason,
            figures=promotion.figures,
            promotion=promotion,
        )
        _notify(plan, event)
    return promotion.status


def plan_demote(
    *, plan_id, by=None, reason: str, from_wave: int | None = None, guard=None, now=None
):
    """Move the plan down one wave (from wave 1: to none, every agent held). ``by``: the
    person doing it, who needs the authority; None with ``guard``: the guard that tripped.
    ``from_wave``: the wave the person saw; when the plan is no longer at it (a second click,
    a guard first), nothing moves and the answer says so. A waiting promotion is void.
    Returns the plan."""
    _check_authority(by)
    if not reason.strip():
        raise DomainError(ErrorCode.VALIDATION_FAILED, "Say why the wave is demoted.")
    with transaction.atomic():
        plan = _locked(plan_id)
        if plan.current_wave == 0:
            raise DomainError(
                ErrorCode.ROLLOUT_NOT_STARTED,
                "No wave is current: there is nothing to demote.",
                status_code=409,
            )
        if from_wave is not None and from_wave != plan.current_wave:
            raise DomainError(
                ErrorCode.ROLLOUT_WAVE_MOVED,
                f"The plan is at wave {plan.current_wave} now, not {from_wave}: nothing moved.",
                {"current_wave": plan.current_wave},
                status_code=409,
            )
        _demote(plan, actor=by.get_username() if by else "guard", reason=reason, guard=guard,
                now=now)  # fmt: skip
    return plan


def _demote(plan: RolloutPlan, *, actor: str, reason: str, guard: dict | None, now=None):
    from_wave = plan.current_wave
    _move(plan, from_wave - 1, at=now)
    for promotion in plan.promotions.select_for_update().filter(status=PromotionStatus.PENDING):
        promotion.status = PromotionStatus.VOID
        promotion.decided_at = timezone.now()
        promotion.save(update_fields=["status", "decided_at"])
        signals.rollout_promotion_closed.send(sender=RolloutPromotion, promotion=promotion)
    event = _record(
        plan,
        kind=RolloutEventKind.GUARD_TRIPPED if guard else RolloutEventKind.DEMOTED,
        from_wave=from_wave,
        to_wave=from_wave - 1,
        actor=actor,
        reason=reason,
        figures=guard or {},
    )
    _notify(plan, event)


def guard_check(*, agent, template_key: str = "", drift_flag=None, now=None) -> list[str]:
    """An action of ``agent`` failed, or it got a new ``drift_flag``: demote each plan whose
    current wave reaches it and whose guard this trips, in the caller's transaction.
    Returns the slugs of the plans demoted."""
    demoted = []
    for plan_id in selectors.guarded_plans(agent=agent, template_key=template_key):
        with transaction.atomic(savepoint=False):
            plan = _locked(plan_id)  # one trip per wave: a second failure sees it moved
            wave = plan.waves.filter(number=plan.current_wave).first()
            if wave is None or plan.current_wave == 0:
                continue
            trip = _tripped(plan, wave, agent=agent, drift_flag=drift_flag, now=now)
            if trip is not None:
                _demote(plan, actor="guard", reason=trip.pop("reason"), guard=trip, now=now)
                demoted.append(plan.slug)
    return demoted


def _tripped(plan, wave, *, agent, drift_flag, now) -> dict | None:
    now = now or timezone.now()
    if drift_flag is not None:
        if not wave.guard_drift_flag:
            return None
        return {
            "guard": "drift_flag",
            "agent": agent.slug,
            "flag": str(drift_flag),
            "reason": f"Drift flag on {agent.slug} ({drift_flag}) while wave {wave.number} "
            "was current.",
        }
    if wave.guard_failures is None:
        return None
    since = now - timedelta(minutes=wave.guard_window_minutes)
    if plan.wave_since and plan.wave_since > since:
        since = plan.wave_since  # failures before this wave began are not its own
    failures = (
        selectors.plan_actions(plan=plan, agents=selectors.population(plan=plan))
        .filter(status=ActionStatus.FAILED, finished_at__gte=since)
        .count()
    )
    if failures < wave.guard_failures:
        return None
    return {
        "guard": "failures",
        "failures": failures,
        "limit": wave.guard_failures,
        "window_minutes": wave.guard_window_minutes,
        "reason": f"{failures} failed actions within {wave.guard_window_minutes} min "
        f"(the guard allows {wave.guard_failures - 1}) while wave {wave.number} was current.",
    }


def plans_measure(*, now=None) -> dict[str, int]:
    """Measure every active plan (the charts over time on its page) and propose the
    promotions whose criteria hold, for plans that ask for that. Runs on Celery beat."""
    now = now or timezone.now()
    counts = {"measured": 0, "proposed": 0}
    for plan in RolloutPlan.objects.filter(active=True):
        health = selectors.plan_health(plan=plan, now=now)
        RolloutMeasurement.objects.create(
            plan=plan, wave=plan.current_wave, at=now, figures=health, met=health["met"]
        )
        counts["measured"] += 1
        if health["met"] and plan.auto_propose:
            if not plan.promotions.filter(status=PromotionStatus.PENDING).exists():
                try:
                    promotion_propose(plan_id=plan.pk, now=now)
                except DomainError:
                    continue  # it moved meanwhile; the next beat measures again
                counts["proposed"] += 1
    keep = now - timedelta(days=settings.AUTONOMY_ROLLOUT_KEEP_DAYS)
    RolloutMeasurement.objects.filter(at__lt=keep).delete()
    return counts
