"""Writes of standing approvals: who may grant (``may_grant``, the one rule the pages, the
API and the admin call), granting, revoking, and consuming the daily bound.

Granting is a change of what the gate allows, so it takes what a policy change takes: the
``autonomy.change_policy`` permission (and the model's add permission), and separation of
duties: the owner of an agent it covers may not grant it, nor may the person who asked for
the approval request it comes from. Each save moves the policy-store version
(``autonomy.standing.receivers``), so a grant or a revocation holds from the next decision.
"""

from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from autonomy import audit
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import Operation, StandingApproval, StandingApprovalUse
from autonomy.policy import services as policy_services
from autonomy.standing.selectors import Standing, day_of

MAX_DAYS = 90
GRANT_PERMISSION = "autonomy.add_standingapproval"


def may_grant(*, user, agent=None, source_requested_by_id=None) -> str:
    """Why ``user`` may not grant a standing approval (covering ``agent``, from a request
    ``source_requested_by_id`` asked for), or "" when they may."""
    if not getattr(user, "is_authenticated", False) or hasattr(user, "agent"):
        return "Only a person may grant a standing approval."
    if not (policy_services.may_change_policy(user=user) and user.has_perm(GRANT_PERMISSION)):
        return "Granting a standing approval takes the permission to change policies."
    if agent is not None and agent.owner_id == user.pk:
        return f"You own {agent.slug}: someone else must grant it standing approval."
    if source_requested_by_id is not None and source_requested_by_id == user.pk:
        return "You asked for the request it comes from: someone else must grant it."
    return ""


def may_revoke(*, user) -> bool:
    """Revoking only narrows what agents may do: anyone who may change standing approvals."""
    return (
        getattr(user, "is_authenticated", False)
        and not hasattr(user, "agent")
        and user.has_perm("autonomy.change_standingapproval")
    )


def _invalid(field: str, message: str) -> DomainError:
    return DomainError(ErrorCode.VALIDATION_FAILED, message, {"fields": {field: [message]}})


def _check_bounds(*, operation, agent, role, business_unit, max_risk, max_amount, daily_limit,
                  starts_at, expires_at) -> None:  # fmt: skip
    if operation is None:
        raise _invalid("operation", "Name the operation it allows.")
    if agent is not None and (role is not None or business_unit is not None):
        raise _invalid("agent", "Grant it to one agent, or to a role and/or a business unit.")
    if agent is None and role is None and business_unit is None:
        raise _invalid("role", "Name an agent, a role or a business unit it covers.")
    units = [u for u in (business_unit, agent.business_unit if agent else None) if u]
    ceiling = min([u.deny_threshold for u in units], default=100)
    if max_risk is None or not 0 <= max_risk < ceiling:
        raise _invalid("max_risk", f"A risk from 0 to below {ceiling} (the deny threshold).")
    if max_amount is not None and max_amount < 0:
        raise _invalid("max_amount", "An amount of 0 or more.")
    if daily_limit is not None and daily_limit < 1:
        raise _invalid("daily_limit", "At least 1 a day, or no daily bound.")
    if expires_at <= starts_at:
        raise _invalid("expires_at", "It must expire after it starts.")
    if expires_at - starts_at > timedelta(days=MAX_DAYS):
        raise _invalid("expires_at", f"At most {MAX_DAYS} days.")


def standing_grant(
    *,
    by,
    operation: Operation,
    max_risk: int,
    reason: str,
    agent=None,
    role=None,
    business_unit=None,
    max_amount: Decimal | None = None,
    daily_limit: int | None = None,
    starts_at: datetime | None = None,
    expires_at: datetime | None = None,
    days: int | None = None,
    source_request_id: UUID | None = None,
    source_requested_by_id=None,
) -> StandingApproval:
    """Grant a standing approval; ``days`` from ``starts_at`` (now) when no ``expires_at``.
    ``source_requested_by_id``: who asked for the approval request ``source_request_id``
    (the caller above the kernel reads it), for separation of duties."""
    refused = may_grant(user=by, agent=agent, source_requested_by_id=source_requested_by_id)
    if refused:
        raise DomainError(ErrorCode.PERMISSION_DENIED, refused, status_code=403)
    if not (reason or "").strip():
        raise _invalid("reason", "Say why it is granted.")
    starts_at = starts_at or timezone.now()
    if expires_at is None:
        if not days or days < 1:
            raise _invalid("days", "For how many days (1 to 90).")
        expires_at = starts_at + timedelta(days=days)
    _check_bounds(
        operation=operation, agent=agent, role=role, business_unit=business_unit,
        max_risk=max_risk, max_amount=max_amount, daily_limit=daily_limit,
        starts_at=starts_at, expires_at=expires_at,
    )  # fmt: skip
    with transaction.atomic():
        standing = StandingApproval.objects.create(
            operation=operation, agent=agent, role=role, business_unit=business_unit,
            max_risk=max_risk, max_amount=max_amount, daily_limit=daily_limit,
            starts_at=starts_at, expires_at=expires_at, granted_by=by, reason=reason.strip(),
            source_request_id=source_request_id,
        )  # fmt: skip
        audit.append(
            kind="standing_granted",
            actor=by.get_username(),
            agent_id=agent.pk if agent else None,
            payload={
                "id": standing.pk, "summary": standing.summary, "reason": standing.reason,
                "starts_at": starts_at, "expires_at": expires_at,
                "source_request_id": source_request_id,
            },
        )  # fmt: skip
    return standing


def standing_revoke(*, standing_id: int, by, reason: str) -> StandingApproval:
    """Revoke at once: the store version moves in this transaction, so the next decision in
    every process no longer sees it."""
    if not may_revoke(user=by):
        raise DomainError(
            ErrorCode.PERMISSION_DENIED,
            "Revoking a standing approval takes the permission to change them.",
            status_code=403,
        )
    if not (reason or "").strip():
        raise _invalid("reason", "Say why it is revoked.")
    with transaction.atomic():
        standing = (
            StandingApproval.objects.select_for_update(of=("self",))
            .select_related("operation__connector", "role", "business_unit", "agent")
            .filter(pk=standing_id)
            .first()
        )
        if standing is None:
            raise DomainError(ErrorCode.NOT_FOUND, "No such standing approval.", status_code=404)
        if standing.revoked_at is not None:
            raise DomainError(
                ErrorCode.ILLEGAL_TRANSITION,
                "It is revoked already.",
                {"current": "revoked", "target": "revoked"},
                status_code=409,
            )
        standing.revoked_at, standing.revoked_by = timezone.now(), by
        standing.revoke_reason = reason.strip()
        standing.save(update_fields=["revoked_at", "revoked_by", "revoke_reason"])
        audit.append(
            kind="standing_revoked",
            actor=by.get_username(),
            agent_id=standing.agent_id,
            payload={"id": standing.pk, "summary": standing.summary, "reason": reason},
        )
    return standing


def _has_room(standing: Standing, used: int) -> bool:
    return standing.daily_limit is None or used < standing.daily_limit


def standing_with_room(*, candidates: list[Standing], at: datetime) -> Standing | None:
    """The first of ``candidates`` with room left today, read and not counted (simulate's
    answer; a request counts through ``standing_consume``). One query."""
    used = dict(
        StandingApprovalUse.objects.filter(
            standing_id__in=[s.pk for s in candidates], day=day_of(at)
        ).values_list("standing_id", "count")
    )
    return next((s for s in candidates if _has_room(s, used.get(s.pk, 0))), None)


def standing_consume(*, candidates: list[Standing], at: datetime) -> Standing | None:
    """Count one use on the first of ``candidates`` (most specific first) with room left
    today, and return it; None when each has used its daily bound. The daily bound's one
    owner: run in the transaction that records the action, so a rolled-back action gives
    its use back. A conditional UPDATE, so concurrent requests of any agents never pass the
    bound: each waits for the row lock of the one before and re-checks the count."""
    day = day_of(at)
    for standing in candidates:
        StandingApprovalUse.objects.bulk_create(
            [StandingApprovalUse(standing_id=standing.pk, day=day, count=0)],
            ignore_conflicts=True,
        )
        rows = StandingApprovalUse.objects.filter(standing_id=standing.pk, day=day)
        if standing.daily_limit is not None:
            rows = rows.filter(count__lt=standing.daily_limit)
        if rows.update(count=F("count") + 1):
            return standing
    return None
