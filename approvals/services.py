"""Use cases of approvals: open a request for waiting work, decide it, expire and escalate.

The waiting work is an agent's action the gate sent to people, or a rollout plan's promotion
to its next wave; one set of rules decides both, and ``_settle`` hands the outcome to the
kernel's owner of each (``autonomy.actions``, ``autonomy.rollouts.services``).

A decision locks the request row, so any number of simultaneous clicks produce exactly one
outcome; one person's second click is refused by a unique constraint, never counted twice.
"""

import functools
import logging
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from agents.portal_roles import PortalRole, group_name
from approvals import selectors
from approvals.models import (
    ApprovalKind,
    ApprovalRequest,
    ApprovalStatus,
    Decision,
    ExpiryOutcome,
    Verdict,
)
from autonomy import actions, audit
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import ActionRequest, RolloutPromotion
from autonomy.rollouts import services as rollout_services

log = logging.getLogger(__name__)
DECIDE = "approvals.decide_approvalrequest"


def _portal_group(role: str) -> Group:
    return Group.objects.get_or_create(name=group_name(role))[0]


def approval_open(*, action: ActionRequest) -> ApprovalRequest:
    """Open the request for an action the gate sent to people. Call inside its transaction."""
    agent = action.agent
    unit = agent.business_unit
    now = timezone.now()
    approvers = unit.approver_group or _portal_group(PortalRole.APPROVER)
    request = ApprovalRequest.objects.create(
        action=action,
        agent=agent,
        business_unit=unit,
        subject=f"{agent.name}: {action.operation.key}"[:300],
        risk_score=action.risk_score,
        approver_group=approvers,
        escalation_group=_portal_group(PortalRole.RISK_OFFICER),
        quorum=2 if action.risk_score >= unit.dual_control_risk else 1,
        expires_at=now + timedelta(seconds=settings.AUTONOMY_APPROVAL_TTL_SECONDS),
        escalate_at=now + timedelta(seconds=settings.AUTONOMY_APPROVAL_ESCALATE_SECONDS),
    )
    assign_perm(DECIDE, approvers, request)
    audit.append(
        kind="approval_opened",
        actor="gate",
        agent_id=agent.pk,
        action_id=action.pk,
        payload={
            "approval_id": str(request.pk),
            "approvers": approvers.name,
            "quorum": request.quorum,
            "expires_at": request.expires_at.isoformat(),
        },
    )
    _notify_on_commit(request)
    return request


# A promotion is carried out as proposed, or not at all: nothing in it to narrow.
PROMOTION_VERDICTS = (Verdict.APPROVE, Verdict.REJECT, Verdict.REDIRECT)


def approval_open_promotion(*, promotion: RolloutPromotion) -> ApprovalRequest:
    """Open the request that carries out a rollout plan's promotion when granted. Call inside
    the transaction that proposed it. It waits for the plan's approvers (the risk officers
    when it names none); the proposer may approve, never alone."""
    plan = promotion.plan
    now = timezone.now()
    approvers = plan.approver_group or _portal_group(PortalRole.RISK_OFFICER)
    wave = plan.waves.filter(number=promotion.to_wave).first()
    level = f" ({wave.level})" if wave else ""
    request = ApprovalRequest.objects.create(
        promotion=promotion,
        requested_by_id=promotion.proposed_by_id,
        subject=f"Promote {plan.name} to wave {promotion.to_wave}{level}"[:300],
        approver_group=approvers,
        escalation_group=_portal_group(PortalRole.RISK_OFFICER),
        quorum=1,
        expires_at=now + timedelta(seconds=settings.AUTONOMY_APPROVAL_TTL_SECONDS),
        expiry_outcome=ExpiryOutcome.DENY,  # nobody deciding never widens a rollout
        escalate_at=now + timedelta(seconds=settings.AUTONOMY_APPROVAL_ESCALATE_SECONDS),
    )
    assign_perm(DECIDE, approvers, request)
    audit.append(
        kind="approval_opened",
        actor=promotion.proposed_by.get_username() if promotion.proposed_by_id else "system",
        payload={
            "approval_id": str(request.pk),
            "promotion_id": str(promotion.pk),
            "plan": plan.slug,
            "from_wave": promotion.from_wave,
            "to_wave": promotion.to_wave,
            "approvers": approvers.name,
            "quorum": request.quorum,
            "expires_at": request.expires_at.isoformat(),
        },
    )
    _notify_on_commit(request)
    return request


def _notify_on_commit(request: ApprovalRequest) -> None:
    from approvals import tasks

    request_id = str(request.pk)
    transaction.on_commit(lambda: tasks.approval_notify.delay(request_id))


def approval_cancel(*, action_id=None, promotion_id=None) -> int:
    """The waiting work went away without people (an action cancelled, a promotion void
    because its plan moved): its pending request closes, cancelled, and its links with it.
    Runs in the transaction that closed the work. Returns how many closed (0 or 1)."""
    if (action_id is None) == (promotion_id is None):
        raise ValueError("Cancel the request of one action or one promotion.")
    waiting = ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING)
    if action_id is not None:
        waiting = waiting.filter(action_id=action_id)
    else:
        waiting = waiting.filter(promotion_id=promotion_id)
    return waiting.update(status=ApprovalStatus.CANCELLED, decided_at=timezone.now())


def may_decide(*, user, request: ApprovalRequest) -> bool:
    return bool(user and user.is_active) and user.has_perm(DECIDE, request)


def approval_decide(
    *,
    request_id,
    approver,
    verdict: str,
    channel: str,
    comment: str = "",
    params: dict | None = None,
    redirect_to: Group | None = None,
) -> ApprovalRequest:
    """Record one person's decision and, when it settles the request, resume or stop the work."""
    from agents.models import Agent

    if isinstance(approver, Agent) or hasattr(approver, "agent"):
        raise DomainError(ErrorCode.NOT_AN_APPROVER, "Agents never approve.", status_code=403)
    try:
        with transaction.atomic():
            _lock_plan_first(request_id)
            request = (
                ApprovalRequest.objects.select_for_update(of=("self",))
                .select_related("action__operation__connector", "agent__owner", "promotion")
                .filter(pk=request_id)
                .first()
            )
            if request is None:
                raise DomainError(ErrorCode.NOT_FOUND, "No such approval request.", status_code=404)
            if not may_decide(user=approver, request=request):
                raise DomainError(
                    ErrorCode.NOT_AN_APPROVER,
                    "You are not among the approvers of this request.",
                    status_code=403,
                )
            if request.status != ApprovalStatus.PENDING:
                raise DomainError(
                    ErrorCode.APPROVAL_NOT_PENDING,
                    f"This request is already {request.status}.",
                    {"status": request.status},
                    status_code=409,
                )
            if request.kind == ApprovalKind.PROMOTION and verdict not in PROMOTION_VERDICTS:
                raise DomainError(
                    ErrorCode.VALIDATION_FAILED,
                    "A promotion is approved, rejected or redirected, never changed.",
                    {"verdict": verdict, "allowed": list(PROMOTION_VERDICTS)},
                )
            if verdict == Verdict.APPROVE_WITH_CHANGES:
                params = _narrowed_params(request=request, params=params)
            decision = Decision.objects.create(
                request=request,
                approver=approver,
                verdict=verdict,
                channel=channel,
                comment=comment[:5000],
                params=params if verdict == Verdict.APPROVE_WITH_CHANGES else None,
                redirected_to=redirect_to if verdict == Verdict.REDIRECT else None,
            )
            then = _apply(request=request, decision=decision)
            audit.append(
                kind="approval_decision",
                actor=approver.get_username(),
                agent_id=request.agent_id,
                action_id=request.action_id,
                payload={
                    "approval_id": str(request.pk),
                    **_promotion_ref(request),
                    "verdict": verdict,
                    "channel": channel,
                    "comment": comment[:5000],
                    "params": decision.params,
                    "status": request.status,
                    "approvals": request.approvals,
                    "quorum": request.quorum,
                },
            )
            if then is not None:
                then()
    except IntegrityError as exc:
        raise DomainError(
            ErrorCode.ALREADY_DECIDED,
            "You already decided on this request.",
            status_code=409,
        ) from exc
    return request


BULK_MAX_RISK = 40  # a request at or above this risk is decided on its own page, never in bulk


def approvals_decide_bulk(
    *, approver, ids, verdict: str, comment: str = "", channel: str
) -> tuple[int, list[str]]:
    """One verdict and comment for several low-risk requests of ``approver``'s inbox, each
    decided on its own (``approval_decide``: its own transaction, quorum and audit record).
    Returns how many were decided and, for each refused one, why."""
    mine = {r.pk: r for r in selectors.inbox_for_user(user=approver).filter(pk__in=ids)}
    done, refused = 0, []
    for pk in ids:
        approval = mine.get(pk)
        if approval is None:
            refused.append(f"{pk}: not pending in your inbox.")
            continue
        if approval.kind == ApprovalKind.PROMOTION:
            refused.append(
                f"“{approval.subject}”: a rollout promotion is never decided in bulk; open it "
                "and decide it on its own."
            )
            continue
        if approval.risk_score >= BULK_MAX_RISK:
            refused.append(
                f"“{approval.subject}”: risk {approval.risk_score} is too high for a bulk "
                "decision; open it and decide it on its own."
            )
            continue
        try:
            approval_decide(
                request_id=pk, approver=approver, verdict=verdict, channel=channel,
                comment=comment,
            )  # fmt: skip
        except DomainError as exc:
            refused.append(f"“{approval.subject}”: {exc.message}")
            continue
        done += 1
    return done, refused


def approval_override(
    *, action: ActionRequest, by, verdict: str, reason: str, channel: str = "inbox"
) -> ApprovalRequest:
    """A person with authority settles a waiting action at once, whatever the quorum: the
    request closes, the action executes (approve) or is denied (reject). The caller checks
    the authority (``interventions.services``) and owns the transaction. Actions only: a
    promotion is decided by its approvers, never overridden."""
    request = (
        ApprovalRequest.objects.select_for_update(of=("self",))
        .select_related("action__operation__connector", "agent__owner")
        .filter(action=action)
        .first()
    )
    if request is None:
        raise DomainError(
            ErrorCode.NOT_FOUND, "This action waits for no approval.", status_code=404
        )
    if request.status != ApprovalStatus.PENDING:
        raise DomainError(
            ErrorCode.APPROVAL_NOT_PENDING,
            f"This request is already {request.status}.",
            {"status": request.status},
            status_code=409,
        )
    if verdict not in (Verdict.APPROVE, Verdict.REJECT):
        raise DomainError(ErrorCode.VALIDATION_FAILED, "Override with approve or reject.")
    if verdict == Verdict.APPROVE and by.pk in request.interested_ids:
        # Separation of duties holds for overrides too: an owner never approves alone.
        raise DomainError(
            ErrorCode.NOT_AN_APPROVER,
            "The agent's owner cannot approve its action by override.",
            status_code=403,
        )
    comment = f"Override: {reason}"[:5000]
    if not request.decisions.filter(approver=by).exists():
        Decision.objects.create(
            request=request, approver=by, verdict=verdict, channel=channel, comment=comment
        )
    who = by.get_username()
    if verdict == Verdict.APPROVE:
        status, code, said = ApprovalStatus.APPROVED, "approval_overridden", "Allowed"
    else:
        status, code, said = ApprovalStatus.REJECTED, "approval_rejected", "Denied"
    then = _settle(request=request, status=status, code=code, actor=who,
                   message=f"{said} by {who}'s override: {reason}"[:500])  # fmt: skip
    audit.append(
        kind="approval_decision",
        actor=who,
        agent_id=request.agent_id,
        action_id=request.action_id,
        payload={
            "approval_id": str(request.pk),
            "verdict": verdict,
            "channel": channel,
            "comment": comment,
            "status": request.status,
            "override": True,
        },
    )
    then()
    return request


def _narrowed_params(*, request: ApprovalRequest, params) -> dict:
    """Changed parameters must fit the operation's schema and pass the gate again."""
    action = request.action
    params = actions.validate_params(operation=action.operation, params=params)
    decision = actions.action_simulate(
        agent=request.agent, operation_key=action.operation.key, params=params
    )[1]
    if decision.verdict == "deny":
        raise DomainError(
            ErrorCode.CHANGES_DENIED,
            "The gate refuses the changed request.",
            {"reasons": decision.reasons},
            status_code=409,
        )
    return params


def _apply(*, request: ApprovalRequest, decision: Decision) -> Callable[[], object] | None:
    """Count one decision on the request. Returns the waiting work's move when the request
    is settled by it (see ``_settle``), else None."""
    who = decision.approver.get_username()
    if decision.verdict == Verdict.REJECT:
        return _settle(request=request, status=ApprovalStatus.REJECTED, code="approval_rejected",
                       actor=who, message=f"Rejected by {who}.",
                       comment=decision.comment)  # fmt: skip
    if decision.verdict == Verdict.REDIRECT:
        target = decision.redirected_to
        if target is None:
            raise DomainError(ErrorCode.VALIDATION_FAILED, "Redirect needs a target group.")
        remove_perm(DECIDE, request.approver_group, request)
        assign_perm(DECIDE, target, request)
        request.approver_group = target
        request.save(update_fields=["approver_group"])
        return None
    if decision.verdict == Verdict.APPROVE_WITH_CHANGES:
        actions.action_params_narrow(action_id=request.action_id, params=decision.params)
    approvals = list(
        request.decisions.filter(
            verdict__in=[Verdict.APPROVE, Verdict.APPROVE_WITH_CHANGES]
        ).values_list("approver_id", flat=True)
    )
    request.approvals = len(approvals)
    # Separation of duties: the agent's owner and the requester may approve, never alone.
    independent = any(a not in request.interested_ids for a in approvals)
    if request.approvals >= request.quorum and independent:
        return _settle(request=request, status=ApprovalStatus.APPROVED, code="approval_granted",
                       actor=who, message=f"Approved ({request.approvals} of {request.quorum}).",
                       comment=decision.comment)  # fmt: skip
    request.save(update_fields=["approvals"])
    return None


def _settle(
    *,
    request: ApprovalRequest,
    status: str,
    code: str,
    actor: str,
    message: str,
    comment: str = "",
    expired: bool = False,
) -> Callable[[], object]:
    """Close the request. Returns the waiting work's move through its owner's lifecycle, for
    the caller to make once it has written its own audit record, so the trail reads: the
    people's decision, then what became of the work. An action is released (the gate decides
    it again) or denied; a promotion is carried out (the plan moves up) or closed rejected."""
    request.status = status
    request.decided_at = timezone.now()
    request.expired_undecided = expired
    request.save(update_fields=["status", "decided_at", "approvals", "expired_undecided"])
    approved = status == ApprovalStatus.APPROVED
    if request.kind == ApprovalKind.PROMOTION:
        return functools.partial(
            rollout_services.promotion_settle,
            promotion_id=request.promotion_id,
            approved=approved,
            actor=actor,
            reason=f"{message} {comment}".strip(),  # the plan's history says why
        )
    move = actions.action_release if approved else actions.action_reject
    return functools.partial(move, action_id=request.action_id, code=code, message=message)


def _lock_plan_first(request_id) -> None:
    """Before a promotion's request is locked to be settled, its plan is: the kernel's
    order (``promotion_lock``), which a demotion follows too (plan, promotion, then this
    request, cancelled), so the two queue instead of deadlocking. One query for an action's
    request."""
    promotion_id = (
        ApprovalRequest.objects.filter(pk=request_id).values_list("promotion_id", flat=True).first()
    )
    if promotion_id is not None:
        rollout_services.promotion_lock(promotion_id=promotion_id)


def _promotion_ref(request: ApprovalRequest) -> dict:
    """What an audit record of a promotion's request names besides the request."""
    return {"promotion_id": str(request.promotion_id)} if request.promotion_id else {}


def approvals_sweep(*, now=None) -> dict[str, int]:
    """Expire, escalate and remind, by the clock. Runs on Celery beat; safe to run twice."""
    now = now or timezone.now()
    counts = {"expired": 0, "escalated": 0, "reminded": 0}
    expired = ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING, expires_at__lte=now)
    for pk in expired.values_list("pk", flat=True)[:500]:
        with transaction.atomic():
            _lock_plan_first(pk)
            request = (
                ApprovalRequest.objects.select_for_update()
                .filter(pk=pk, status=ApprovalStatus.PENDING)
                .first()
            )
            if request is None:
                continue
            # A promotion that nobody decided is never carried out, whatever the outcome says.
            approve = (
                request.expiry_outcome == ExpiryOutcome.APPROVE
                and request.kind == ApprovalKind.ACTION
            )
            then = _settle(
                request=request,
                status=ApprovalStatus.APPROVED if approve else ApprovalStatus.EXPIRED,
                code="approval_expired",
                actor="system",
                message="Nobody decided in time; the request "
                + ("was approved." if approve else "expired."),
                expired=True,
            )
            audit.append(
                kind="approval_expired",
                actor="system",
                agent_id=request.agent_id,
                action_id=request.action_id,
                payload={
                    "approval_id": str(pk),
                    **_promotion_ref(request),
                    "outcome": ExpiryOutcome.APPROVE if approve else ExpiryOutcome.DENY,
                },
            )
            then()
            counts["expired"] += 1
    due = ApprovalRequest.objects.filter(
        status=ApprovalStatus.PENDING, escalate_at__lte=now, escalated_at__isnull=True
    ).exclude(escalation_group=None)
    for pk in due.values_list("pk", flat=True)[:500]:
        with transaction.atomic():
            request = (
                ApprovalRequest.objects.select_for_update()
                .filter(pk=pk, status=ApprovalStatus.PENDING, escalated_at__isnull=True)
                .first()
            )
            if request is None:
                continue
            assign_perm(DECIDE, request.escalation_group, request)
            request.escalated_at = now
            request.save(update_fields=["escalated_at"])
            audit.append(
                kind="approval_escalated",
                actor="system",
                agent_id=request.agent_id,
                action_id=request.action_id,
                payload={
                    "approval_id": str(pk),
                    **_promotion_ref(request),
                    "to": request.escalation_group.name,
                },
            )
            from approvals import tasks

            transaction.on_commit(lambda pk=str(pk): tasks.approval_notify.delay(pk, "escalated"))
            counts["escalated"] += 1
    remind_after = timedelta(seconds=settings.AUTONOMY_APPROVAL_ESCALATE_SECONDS / 2)
    stale = ApprovalRequest.objects.filter(
        status=ApprovalStatus.PENDING,
        reminded_at__isnull=True,
        escalated_at__isnull=True,
        created_at__lte=now - remind_after,
    )
    for pk in stale.values_list("pk", flat=True)[:500]:
        updated = ApprovalRequest.objects.filter(pk=pk, reminded_at__isnull=True).update(
            reminded_at=now
        )
        if updated:
            from approvals import tasks

            transaction.on_commit(lambda pk=str(pk): tasks.approval_notify.delay(pk, "reminder"))
            counts["reminded"] += 1
    return counts
