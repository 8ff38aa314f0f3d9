"""Use cases of approvals: open a request for waiting work, decide it, expire and escalate.

The waiting work is an agent's action the gate sent to people, a rollout plan's promotion
to its next wave, or a registry change (an agent's registration, a riskier tier, a wider
grant); one set of rules decides them all, and ``_settle`` hands the outcome to the owner of
each (``autonomy.actions``, ``autonomy.rollouts.services``, ``agents.services``).

A decision locks the request row, so any number of simultaneous clicks produce exactly one
outcome; one person's second click is refused by a unique constraint, never counted twice.
"""

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from agents import services as agent_services
from agents.models import BusinessUnit, RegistryChange, RegistryChangeKind
from agents.portal_roles import PortalRole, group_name
from approvals import groups, selectors
from approvals.models import (
    ApprovalKind,
    ApprovalRequest,
    ApprovalStage,
    ApprovalStatus,
    Decision,
    ExpiryOutcome,
    StageStatus,
    Verdict,
)
from autonomy import actions, audit
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import ActionRequest, RolloutPromotion, StandingApproval
from autonomy.rollouts import services as rollout_services
from autonomy.standing import services as standing_services

log = logging.getLogger(__name__)
DECIDE = "approvals.decide_approvalrequest"


def _portal_group(role: str) -> Group:
    return Group.objects.get_or_create(name=group_name(role))[0]


def approval_open(*, action: ActionRequest) -> ApprovalRequest:
    """Open the request for an action the gate sent to people. Call inside its transaction.
    Its stages, approvers and escalation come from the most specific route that matches the
    action (``selectors.route_for``), else from the built-in default."""
    agent = action.agent
    route = selectors.route_for(action=action)
    planned = selectors.stages_planned(action=action, route=route)
    request = ApprovalRequest(
        action=action,
        agent=agent,
        business_unit=agent.business_unit,
        subject=f"{agent.name}: {action.operation.key}"[:300],
        risk_score=action.risk_score,
        route=route,
        route_label=route.label(list(route.stages.all())) if route else "",
        stages=len(planned),
    )
    _stage_enter(request=request, stage=planned[0], now=timezone.now(), new=True)
    if route:
        for stage in planned:
            stage.request = request
        ApprovalStage.objects.bulk_create(planned)
    audit.append(
        kind="approval_opened",
        actor="gate",
        agent_id=agent.pk,
        action_id=action.pk,
        payload={
            "approval_id": str(request.pk),
            "approvers": request.approver_group.name,
            "quorum": request.quorum,
            "expires_at": request.expires_at.isoformat(),
            **({"route": request.route_label, "stages": request.stages} if route else {}),
        },
    )
    _notify_on_commit(request)
    return request


def _stage_enter(*, request: ApprovalRequest, stage: ApprovalStage, now, new: bool = False):
    """Make ``stage`` the request's current one: its approvers alone may decide (the earlier
    stage's, and whoever it escalated to, no longer may), its quorum counts from zero and its
    clocks start now. The one writer of the current stage's fields; ``new``: the request is
    not saved yet (``approval_open``)."""
    if not new:
        remove_perm(DECIDE, request.approver_group, request)
        if request.escalated_at and request.escalation_group_id:
            remove_perm(DECIDE, request.escalation_group, request)
        if request.escalated_at and request.escalation_user_id:
            remove_perm(DECIDE, request.escalation_user, request)
    request.stage, request.stage_name = stage.number, stage.name if request.routed else ""
    request.approver_group = stage.approver_group
    request.quorum = stage.quorum
    request.approvals = 0
    request.expires_at = now + timedelta(seconds=stage.ttl_seconds)
    request.expiry_outcome = stage.expiry_outcome
    request.remind_at = now + timedelta(seconds=stage.remind_after_seconds)
    request.escalate_at = now + timedelta(seconds=stage.escalate_after_seconds)
    request.escalation_group = stage.escalation_group
    request.escalation_user = stage.escalation_user
    request.reminded_at = request.escalated_at = None
    if new:
        request.save(force_insert=True)
    else:
        request.save(update_fields=STAGE_FIELDS)
        ApprovalStage.objects.filter(request=request, number=stage.number).update(
            status=StageStatus.PENDING, started_at=now
        )
    if new and request.routed:
        stage.status, stage.started_at = StageStatus.PENDING, now
    assign_perm(DECIDE, request.approver_group, request)


STAGE_FIELDS = [
    "stage", "stage_name", "approver_group", "quorum", "approvals", "expires_at",
    "expiry_outcome", "remind_at", "escalate_at", "escalation_group", "escalation_user",
    "reminded_at", "escalated_at",
]  # fmt: skip


def _stage_passed(
    *,
    request: ApprovalRequest,
    actor: str,
    message: str,
    comment: str = "",
    code: str = "approval_granted",
    now=None,
    expired: bool = False,
) -> Callable[[], object] | None:
    """The current stage reached its quorum (or expired with outcome approve): the request
    moves to its next stage, whose approvers are told, or, after its last, is settled
    approved. Returns the waiting work's move when settled (``_settle``), else None.
    ``expired``: nobody decided the stage (its outcome passed it); at the last stage the
    request counts as expired undecided."""
    if request.stage >= request.stages:
        return _settle(request=request, status=ApprovalStatus.APPROVED, code=code,
                       actor=actor, message=message, comment=comment,
                       expired=expired)  # fmt: skip
    now = now or timezone.now()
    passed = request.stage
    ApprovalStage.objects.filter(request=request, number=passed).update(
        status=StageStatus.APPROVED, decided_at=now
    )
    following = ApprovalStage.objects.select_related(
        "approver_group", "escalation_group", "escalation_user"
    ).get(request=request, number=passed + 1)
    _stage_enter(request=request, stage=following, now=now)
    audit.append(
        kind="approval_stage_passed",
        actor=actor,
        agent_id=request.agent_id,
        action_id=request.action_id,
        payload={
            "approval_id": str(request.pk),
            "stage": passed,
            "next_stage": following.number,
            "next_name": following.name,
            "approvers": following.approver_group.name,
            "quorum": following.quorum,
        },
    )
    _notify_on_commit(request, reason="stage")
    return None


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
        remind_at=now + timedelta(seconds=settings.AUTONOMY_APPROVAL_ESCALATE_SECONDS // 2),
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


CHANGE_ROUTE = "Registry change: unit owner, then security"
CHANGE_ROUTE_ROLE = "Registry change: security (two risk officers)"


def approval_open_change(*, change: RegistryChange) -> ApprovalRequest:
    """Open the request a registry change waits on (``agents.signals.registry_change_
    requested``), in its transaction. Two stages through the stage machinery: the unit's
    owner (``BusinessUnit.owner``), then security (the risk officers), one approval each, the
    owner's stage escalating to security when nobody decides; a grant to a role, which no
    one unit owns, waits for security alone, two of them. Nobody deciding in time denies."""
    stages = _change_stages(change)
    request = ApprovalRequest(
        change=change,
        agent=change.agent,
        business_unit=change.business_unit,
        requested_by_id=change.requested_by_id,
        subject=change.summary[:300],
        risk_score=_change_risk(change),
        route_label=CHANGE_ROUTE if change.business_unit_id else CHANGE_ROUTE_ROLE,
        stages=len(stages),
    )
    _stage_enter(request=request, stage=stages[0], now=timezone.now(), new=True)
    for stage in stages:
        stage.request = request
    ApprovalStage.objects.bulk_create(stages)
    audit.append(
        kind="approval_opened",
        actor=change.requested_by.get_username() if change.requested_by_id else "system",
        agent_id=change.agent_id,
        payload={
            "approval_id": str(request.pk),
            "change_id": str(change.pk),
            "kind": change.kind,
            "approvers": request.approver_group.name,
            "quorum": request.quorum,
            "stages": request.stages,
            "expires_at": request.expires_at.isoformat(),
        },
    )
    _notify_on_commit(request)
    return request


def _change_risk(change: RegistryChange) -> int:
    """Where the request sorts in an inbox: by the risk tier it would put the agent at."""
    if change.kind == RegistryChangeKind.RAISE_TIER:
        return 25 * change.payload["to"]
    if change.kind == RegistryChangeKind.REGISTER:
        return 25 * change.payload.get("risk_tier", 2)
    return 50


def _change_stages(change: RegistryChange) -> list[ApprovalStage]:
    security = _portal_group(PortalRole.RISK_OFFICER)
    clocks = {
        "ttl_seconds": settings.AUTONOMY_APPROVAL_TTL_SECONDS,
        "remind_after_seconds": settings.AUTONOMY_APPROVAL_ESCALATE_SECONDS // 2,
        "escalate_after_seconds": settings.AUTONOMY_APPROVAL_ESCALATE_SECONDS,
        "expiry_outcome": ExpiryOutcome.DENY,  # nobody deciding never widens the registry
    }
    if change.business_unit_id is None:
        return [ApprovalStage(number=1, name="Security", approver_group=security, quorum=2,
                              **clocks)]  # fmt: skip
    return [
        ApprovalStage(number=1, name="Unit owner", quorum=1, escalation_group=security,
                      approver_group=_unit_owner_group(change.business_unit), **clocks),
        ApprovalStage(number=2, name="Security", approver_group=security, quorum=1, **clocks),
    ]  # fmt: skip


def _unit_owner_group(unit: BusinessUnit) -> Group:
    """The group whose one member is the unit's owner, so an owner's stage is decided through
    the same group grants as any other; its membership follows ``BusinessUnit.owner`` each
    time a request opens. A unit with no owner: its approver group, else the Approvers."""
    if unit.owner_id is None:
        return unit.approver_group or _portal_group(PortalRole.APPROVER)
    group = Group.objects.get_or_create(name=f"Owner of {unit.slug}"[:150])[0]
    group.user_set.set([unit.owner_id])
    return group


def _notify_on_commit(request: ApprovalRequest, reason: str = "new") -> None:
    from approvals import tasks

    request_id = str(request.pk)
    transaction.on_commit(lambda: tasks.approval_notify.delay(request_id, reason))


def approval_cancel(*, action_id=None, promotion_id=None, change_id=None) -> int:
    """The waiting work went away without people (an action cancelled, a promotion void
    because its plan moved, a registry change whose agent was retired): its pending request
    closes, cancelled, and its links with it. Runs in the transaction that closed the work.
    Returns how many closed (0 or 1)."""
    named = {"action_id": action_id, "promotion_id": promotion_id, "change_id": change_id}
    given = {k: v for k, v in named.items() if v is not None}
    if len(given) != 1:
        raise ValueError("Cancel the request of one action, promotion or registry change.")
    waiting = ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING, **given)
    now = timezone.now()
    ApprovalStage.objects.filter(
        request__in=waiting.exclude(route_label=""),
        status__in=[StageStatus.PENDING, StageStatus.WAITING],
    ).update(status=StageStatus.CANCELLED, decided_at=now)
    return waiting.update(status=ApprovalStatus.CANCELLED, decided_at=now)


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
    _refuse_agents(approver)
    try:
        with transaction.atomic():
            _lock_work_first(request_id)
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
            _decision_record(
                request=request, approver=approver, verdict=verdict, channel=channel,
                comment=comment, params=params, redirect_to=redirect_to,
            )  # fmt: skip
    except IntegrityError as exc:
        raise DomainError(
            ErrorCode.ALREADY_DECIDED,
            "You already decided on this request.",
            status_code=409,
        ) from exc
    return request


def _refuse_earlier_stage_decider(*, request: ApprovalRequest, approver) -> None:
    """Separation of duties across stages: whoever decided an earlier stage of this request
    never decides a later one (the unique decision per person and request enforces it in the
    database; this names the reason)."""
    earlier = request.decisions.filter(approver=approver, stage__lt=request.stage).first()
    if earlier is not None:
        raise DomainError(
            ErrorCode.DECIDED_EARLIER_STAGE,
            f"You decided stage {earlier.stage} of this request; a later stage needs someone else.",
            {"stage": request.stage, "decided_stage": earlier.stage},
            status_code=403,
        )


def _refuse_agents(approver) -> None:
    from agents.models import Agent

    if isinstance(approver, Agent) or hasattr(approver, "agent"):
        raise DomainError(ErrorCode.NOT_AN_APPROVER, "Agents never approve.", status_code=403)


def _decision_record(
    *,
    request: ApprovalRequest,
    approver,
    verdict: str,
    channel: str,
    comment: str = "",
    params: dict | None = None,
    redirect_to: Group | None = None,
    group: str = "",
) -> None:
    """The one decision rule: one person's decision on a request the caller has locked and
    checked they may decide. Writes the Decision and its audit record, counts it (quorum,
    separation of duties) and, when it settles the request, resumes or stops the work. A
    second decision by the same person raises ``IntegrityError`` (one_decision_per_approver).
    ``group``: the inbox group it was decided with, named in the audit record."""
    if request.status != ApprovalStatus.PENDING:
        raise DomainError(
            ErrorCode.APPROVAL_NOT_PENDING,
            f"This request is already {request.status}.",
            {"status": request.status},
            status_code=409,
        )
    if request.kind != ApprovalKind.ACTION and verdict not in PROMOTION_VERDICTS:
        raise DomainError(
            ErrorCode.VALIDATION_FAILED,
            f"A {request.get_kind_display().lower()} is approved, rejected or redirected, "
            "never changed.",
            {"verdict": verdict, "allowed": list(PROMOTION_VERDICTS)},
        )
    if request.stage > 1:
        _refuse_earlier_stage_decider(request=request, approver=approver)
    if verdict == Verdict.APPROVE_WITH_CHANGES:
        params = _narrowed_params(request=request, params=params)
    decision = Decision.objects.create(
        request=request,
        stage=request.stage,
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
            **({"group": group} if group else {}),
            "verdict": verdict,
            "channel": channel,
            "comment": comment[:5000],
            "params": decision.params,
            "status": request.status,
            "approvals": request.approvals,
            "quorum": request.quorum,
            **({"stage": decision.stage} if request.stages > 1 else {}),
        },
    )
    if then is not None:
        then()


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
        if approval.kind != ApprovalKind.ACTION:
            refused.append(
                f"“{approval.subject}”: a {approval.get_kind_display().lower()} is never "
                "decided in bulk; open it and decide it on its own."
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


GROUP_CHUNK = 100  # members decided per transaction: short locks, few commits


@dataclass
class GroupOutcome:
    """What deciding a group did, member by member."""

    decided: int = 0  # the person's decision is recorded on this many
    settled: int = 0  # ... and it approved or rejected this many
    waiting: int = 0  # ... and this many still wait for another approver (quorum, SoD)
    skipped: list[str] = field(default_factory=list)  # the members left as they were, and why


def approvals_decide_group(
    *,
    approver,
    key: str,
    verdict: str,
    channel: str,
    until,
    comment: str = "",
    exclude=(),
) -> GroupOutcome:
    """One verdict for a group of ``approver``'s inbox (``approvals.groups``). Its members
    are re-read from the inbox, never taken from the client: those that arrived after
    ``until`` (the newest the person was shown) and the ``exclude``d ones are left alone.
    Each member gets the one decision rule (``_decision_record``): its own Decision and
    audit record, quorum and separation of duties. Chunks of ``GROUP_CHUNK`` members each
    lock their rows, skipping rows another decision holds right now: a member decided
    concurrently is skipped and reported, never counted twice, and never waited on (a
    group holds its agents' usage rows, which a single decision also takes)."""
    _refuse_agents(approver)
    if verdict not in (Verdict.APPROVE, Verdict.REJECT):
        raise DomainError(
            ErrorCode.VALIDATION_FAILED,
            "A group is approved or rejected.",
            {"verdict": verdict, "allowed": [Verdict.APPROVE, Verdict.REJECT]},
        )
    group = groups.group_key_parse(key)
    if group is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such group in your inbox.", status_code=404)
    members = groups.group_members(user=approver, key=group)
    seen = members.filter(created_at__lte=until).exclude(pk__in=list(exclude))
    ids = list(seen.order_by("pk").values_list("pk", flat=True))
    if not ids:
        raise DomainError(ErrorCode.NOT_FOUND, "No such group in your inbox.", status_code=404)
    mine = set(
        members.filter(pk__in=ids, decisions__approver=approver).values_list("pk", flat=True)
    )
    outcome = GroupOutcome()
    if mine:
        outcome.skipped.append(f"{len(mine)} you had decided already; they wait for others.")
    ids = [pk for pk in ids if pk not in mine]
    gone = 0
    for start in range(0, len(ids), GROUP_CHUNK):
        chunk = ids[start : start + GROUP_CHUNK]
        with transaction.atomic():
            locked = list(
                members.filter(pk__in=chunk)
                .select_related("agent__owner")
                .select_for_update(of=("self",), skip_locked=True)
                .order_by("pk")
            )
            gone += len(chunk) - len(locked)
            for request in locked:
                _group_member_decide(
                    request=request, approver=approver, verdict=verdict, channel=channel,
                    comment=comment, group=str(group), outcome=outcome,
                )  # fmt: skip
    if gone:
        outcome.skipped.append(
            f"{gone} were being decided by someone else, or were no longer waiting; "
            "they are left as they are."
        )
    return outcome


def _group_member_decide(*, request, approver, verdict, channel, comment, group, outcome):
    """One member, in a savepoint: a refusal leaves it, and only it, as it was."""
    try:
        with transaction.atomic():
            _decision_record(
                request=request, approver=approver, verdict=verdict, channel=channel,
                comment=comment, group=group,
            )  # fmt: skip
    except IntegrityError:
        outcome.skipped.append(f"“{request.subject}”: you already decided on it.")
        return
    except DomainError as exc:
        outcome.skipped.append(f"“{request.subject}”: {exc.message}")
        return
    outcome.decided += 1
    if request.status == ApprovalStatus.PENDING:
        outcome.waiting += 1
    else:
        outcome.settled += 1


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
            request=request, stage=request.stage, approver=by, verdict=verdict,
            channel=channel, comment=comment,
        )  # fmt: skip
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
            stage=request.stage, verdict__in=[Verdict.APPROVE, Verdict.APPROVE_WITH_CHANGES]
        ).values_list("approver_id", flat=True)
    )
    request.approvals = len(approvals)
    # Separation of duties: the agent's owner and the requester may approve, never alone.
    independent = any(a not in request.interested_ids for a in approvals)
    if request.approvals >= request.quorum and independent:
        of_stage = f"stage {request.stage} of {request.stages}, " if request.stages > 1 else ""
        return _stage_passed(
            request=request, actor=who, comment=decision.comment,
            message=f"Approved ({of_stage}{request.approvals} of {request.quorum}).",
        )  # fmt: skip
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
    if request.routed:
        ApprovalStage.objects.filter(request=request, number=request.stage).update(
            status=status, decided_at=request.decided_at
        )
    approved = status == ApprovalStatus.APPROVED
    if request.kind == ApprovalKind.CHANGE:
        return functools.partial(
            agent_services.registry_change_settle,
            change_id=request.change_id,
            approved=approved,
            actor=actor,
            reason=f"{message} {comment}".strip(),
        )
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


def _lock_work_first(request_id) -> None:
    """Before a promotion's request is locked to be settled, its plan is: the kernel's
    order (``promotion_lock``), which a demotion follows too (plan, promotion, then this
    request, cancelled), so the two queue instead of deadlocking. Likewise a registry
    change's agent, which retiring it locks before cancelling this request. One query for an
    action's request."""
    promotion_id, agent_id = (
        ApprovalRequest.objects.filter(pk=request_id)
        .values_list("promotion_id", "change__agent_id")
        .first()
    ) or (None, None)
    if promotion_id is not None:
        rollout_services.promotion_lock(promotion_id=promotion_id)
    if agent_id is not None:
        agent_services.agent_lock(agent_id=agent_id)


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
            _lock_work_first(pk)
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
            message = "Nobody decided in time; the request " + (
                "was approved." if approve else "expired."
            )
            if request.stages > 1:
                message = f"Nobody decided stage {request.stage} of {request.stages} in time; " + (
                    "it passed." if approve else "the request expired."
                )
            audit.append(
                kind="approval_expired",
                actor="system",
                agent_id=request.agent_id,
                action_id=request.action_id,
                payload={
                    "approval_id": str(pk),
                    **_promotion_ref(request),
                    **({"stage": request.stage} if request.stages > 1 else {}),
                    "outcome": ExpiryOutcome.APPROVE if approve else ExpiryOutcome.DENY,
                },
            )
            if approve:
                then = _stage_passed(request=request, actor="system", message=message,
                                     code="approval_expired", now=now,
                                     expired=True)  # fmt: skip
            else:
                then = _settle(request=request, status=ApprovalStatus.EXPIRED,
                               code="approval_expired", actor="system",
                               message=message, expired=True)  # fmt: skip
            if then is not None:
                then()
            counts["expired"] += 1
    due = ApprovalRequest.objects.filter(
        status=ApprovalStatus.PENDING, escalate_at__lte=now, escalated_at__isnull=True
    ).exclude(escalation_group=None, escalation_user=None)
    for pk in due.values_list("pk", flat=True)[:500]:
        with transaction.atomic():
            request = (
                ApprovalRequest.objects.select_for_update(of=("self",))
                .select_related("escalation_group", "escalation_user")
                .filter(pk=pk, status=ApprovalStatus.PENDING, escalated_at__isnull=True)
                .first()
            )
            if request is None:
                continue
            target = request.escalation_user or request.escalation_group
            assign_perm(DECIDE, target, request)
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
                    **({"stage": request.stage} if request.stages > 1 else {}),
                    **({"rule": request.route_label} if request.routed else {}),
                    "to": target.get_username() if request.escalation_user_id else target.name,
                },
            )
            from approvals import tasks

            transaction.on_commit(lambda pk=str(pk): tasks.approval_notify.delay(pk, "escalated"))
            counts["escalated"] += 1
    stale = ApprovalRequest.objects.filter(
        status=ApprovalStatus.PENDING,
        reminded_at__isnull=True,
        escalated_at__isnull=True,
        remind_at__lte=now,
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


# --- standing approvals granted from a request ------------------------------------------------


def standing_approval_grant(*, by, source_request_id=None, **terms) -> StandingApproval:
    """Grant a standing approval (``autonomy.standing.services.standing_grant``, the one rule
    of who may: ``may_grant``), from the approval request ``source_request_id`` when one is
    named: whoever asked for that request may not grant from it. The pages and the API both
    come here, so the request is looked up one way."""
    requested_by_id = None
    if source_request_id is not None:
        source = (
            ApprovalRequest.objects.filter(pk=source_request_id).values("requested_by_id").first()
        )
        if source is None:
            raise DomainError(
                ErrorCode.VALIDATION_FAILED,
                "There is no such approval request.",
                {"fields": {"source": ["no such approval request"]}},
            )
        requested_by_id = source["requested_by_id"]
    return standing_services.standing_grant(
        by=by,
        source_request_id=source_request_id,
        source_requested_by_id=requested_by_id,
        **terms,
    )
