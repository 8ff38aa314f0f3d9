"""Access reviews, the writes: open a unit's review (detecting what to ask about in a constant
number of queries), answer items keep or revoke in bulk, schedule each quarter's reviews and
escalate those past due.

Revoking goes through the service that owns the thing revoked, so it takes effect on the
agent's next request like any other change: a dormant or orphaned agent is *retired*
(``agents.services.agent_retire``: its credentials and IdP tokens die with it; pausing would
leave an unowned or unused identity alive), an unused grant is taken away with
``autonomy.grants.revoke_grant`` from whoever holds it (a role's grant is the role's: revoking
it takes the operation from every agent of that role, which the review page says before anyone
chooses), a credential is revoked with ``agents.services.credential_revoke``. Every answer is
one audit record ``access_review_answer``.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from agents import services as agent_services
from agents.models import Agent, AgentStatus, BusinessUnit, Credential
from agents.portal_roles import PortalRole, group_name
from autonomy import audit, grants
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import ActionRequest, Operation
from reviews.models import AccessReview, Decision, ItemKind, ReviewItem, ReviewStatus

COMMENT_MAX = 2000


def reviewers_for(unit: BusinessUnit) -> Group | None:
    """Who answers a unit's review: its approver group when it has one, else the portal's
    risk officers. The one place to change when units get owners of their own."""
    if unit.approver_group_id:
        return unit.approver_group
    return Group.objects.filter(name=group_name(PortalRole.RISK_OFFICER)).first()


def escalation_group() -> Group | None:
    """Who hears of a review past due: the portal's risk officers."""
    return Group.objects.filter(name=group_name(PortalRole.RISK_OFFICER)).first()


def period_of(moment: datetime) -> str:
    """The quarter a moment falls in, as a review's period: ``"2026-Q4"``."""
    return f"{moment.year}-Q{(moment.month - 1) // 3 + 1}"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _days(since: datetime | None, now: datetime) -> int | None:
    return (now - since).days if since else None


def detect(*, review: AccessReview, now: datetime) -> list[ReviewItem]:
    """What the review asks about, unsaved. Five reads, whatever the number of agents,
    grants or credentials of the unit."""
    dormant_since = now - timedelta(days=review.dormant_days)
    unused_since = now - timedelta(days=review.unused_days)
    live = Agent.objects.filter(business_unit_id=review.business_unit_id).exclude(
        status=AgentStatus.RETIRED
    )
    last_action = (
        ActionRequest.objects.filter(agent=OuterRef("pk"))
        .order_by("-created_at")
        .values("created_at")[:1]
    )
    agents = {
        a.pk: a
        for a in live.select_related("owner", "role").annotate(last_action_at=Subquery(last_action))
    }
    items = []
    for agent in agents.values():
        if (
            agent.status == AgentStatus.ACTIVE
            and agent.created_at < dormant_since
            and (agent.last_action_at is None or agent.last_action_at < dormant_since)
        ):
            items.append(
                ReviewItem(
                    review=review,
                    kind=ItemKind.DORMANT,
                    agent=agent,
                    evidence={
                        "last_action_at": _iso(agent.last_action_at),
                        "days_idle": _days(agent.last_action_at or agent.created_at, now),
                        "created_at": _iso(agent.created_at),
                    },
                )
            )
        if not agent.owner.is_active:
            items.append(
                ReviewItem(
                    review=review,
                    kind=ItemKind.ORPHANED,
                    agent=agent,
                    evidence={"owner": agent.owner.get_username(), "owner_active": False},
                )
            )
    items.extend(_unused_grants(review=review, agents=agents, live=live, since=unused_since))
    credentials = Credential.objects.filter(agent__in=live, revoked_at=None).filter(
        Q(expires_at__gt=now, expires_at__lte=now + timedelta(days=review.expiring_days))
        | Q(last_used_at=None, created_at__lt=unused_since)
    )
    for credential in credentials:
        expiring = credential.expires_at is not None and credential.expires_at > now
        expiring = expiring and credential.expires_at <= now + timedelta(days=review.expiring_days)
        items.append(
            ReviewItem(
                review=review,
                kind=ItemKind.CREDENTIAL_EXPIRING if expiring else ItemKind.CREDENTIAL_UNUSED,
                agent=agents[credential.agent_id],
                credential=credential,
                evidence={
                    "name": credential.name,
                    "prefix": credential.prefix,
                    "created_at": _iso(credential.created_at),
                    "expires_at": _iso(credential.expires_at),
                    "last_used_at": _iso(credential.last_used_at),
                    "days_left": _days(now, credential.expires_at) if expiring else None,
                },
            )
        )
    return items


def _unused_grants(*, review, agents: dict, live, since: datetime) -> list[ReviewItem]:
    """One item per grant (the agent's or its role's, on an operation or a whole connector)
    through which the agent called nothing since ``since``. Agents younger than the window
    are left out: they had no time to use what they were given."""
    used = set(
        ActionRequest.objects.filter(agent__in=live, created_at__gte=since)
        .order_by()
        .values_list("agent_id", "operation_id")
        .distinct()
    )
    rows = grants.grants_of_agents(agents=live.filter(created_at__lt=since))
    operations = Operation.objects.select_related("connector").in_bulk({op for _, op, _ in rows})
    found: dict[tuple, dict] = {}
    for agent_id, operation_id, path in rows:
        operation = operations[operation_id]
        holder, on = path.split("_")
        target = operation.pk if on == "operation" else operation.connector_id
        grant = found.setdefault(
            (agent_id, holder, on, target),
            {"operation": operation, "used": False, "operations": 0},
        )
        grant["operations"] += 1
        grant["used"] = grant["used"] or (agent_id, operation_id) in used
    items = []
    for (agent_id, holder, on, _), grant in sorted(found.items(), key=str):
        if grant["used"]:
            continue
        agent, operation = agents[agent_id], grant["operation"]
        items.append(
            ReviewItem(
                review=review,
                kind=ItemKind.OVER_PRIVILEGED,
                agent=agent,
                operation=operation if on == "operation" else None,
                connector=operation.connector if on == "connector" else None,
                evidence={
                    "holder": holder,
                    "role": agent.role.slug,
                    "on": on,
                    "target": operation.key
                    if on == "operation"
                    else f"{operation.connector.slug}.*",
                    "operations": grant["operations"],
                    "unused_days": review.unused_days,
                },
            )
        )
    return items


def review_open(
    *, unit: BusinessUnit, period: str, by=None, now: datetime | None = None
) -> AccessReview:
    """Open the unit's review of ``period`` with what it finds now. One per unit and period."""
    now = now or timezone.now()
    try:
        with transaction.atomic():
            review = AccessReview.objects.create(
                business_unit=unit,
                period=period,
                opened_at=now,
                opened_by=by,
                due_at=now + timedelta(days=settings.AUTONOMY_REVIEW_DUE_DAYS),
                reviewer_group=reviewers_for(unit),
                dormant_days=settings.AUTONOMY_REVIEW_DORMANT_DAYS,
                unused_days=settings.AUTONOMY_REVIEW_UNUSED_DAYS,
                expiring_days=settings.AUTONOMY_REVIEW_EXPIRING_DAYS,
            )
            items = ReviewItem.objects.bulk_create(detect(review=review, now=now))
            if not items:
                review.status = ReviewStatus.COMPLETED
                review.completed_at = now
                review.save(update_fields=["status", "completed_at"])
            audit.append(
                kind="access_review_opened",
                actor=by.get_username() if by else "system",
                payload={
                    "review_id": review.pk,
                    "unit": unit.slug,
                    "period": period,
                    "items": _counts(items),
                    "due_at": review.due_at,
                },
            )
    except IntegrityError:
        raise DomainError(
            ErrorCode.CONFLICT,
            f"{unit} already has a review of {period}.",
            {"unit": unit.slug, "period": period},
            status_code=409,
        ) from None
    return review


def _counts(items) -> dict:
    counts: dict[str, int] = {}
    for item in items:
        counts[item.kind] = counts.get(item.kind, 0) + 1
    return counts


def reviews_schedule(*, now: datetime | None = None) -> int:
    """Open the current quarter's review of every unit that has none (Celery beat). Returns
    how many were opened."""
    now = now or timezone.now()
    period = period_of(now)
    opened = 0
    for unit in BusinessUnit.objects.exclude(access_reviews__period=period).select_related(
        "approver_group"
    ):
        try:
            review_open(unit=unit, period=period, now=now)
        except DomainError:  # opened by someone else meanwhile
            continue
        opened += 1
    return opened


def _revoke(*, item: ReviewItem, by, reason: str) -> dict:
    """Take away what the item is about through its owning service; returns what was done."""
    agent = item.agent
    if item.kind in (ItemKind.DORMANT, ItemKind.ORPHANED):
        agent.refresh_from_db(fields=["status"])
        if agent.status == AgentStatus.RETIRED:
            return {"effect": "agent already retired"}
        agent_services.agent_retire(agent=agent, by=by, reason=reason)
        return {"effect": "agent retired"}
    if item.kind == ItemKind.OVER_PRIVILEGED:
        target = item.operation or item.connector
        holder = item.evidence.get("holder")
        grants.revoke_grant(target=target, to=agent if holder == "agent" else agent.role, by=by)
        whom = "the agent" if holder == "agent" else f"role {agent.role.slug}"
        return {"effect": f"grant on {item.evidence.get('target')} revoked from {whom}"}
    agent_services.credential_revoke(credential=item.credential, by=by, reason=reason)
    return {"effect": "credential revoked"}


def review_answer(
    *, review: AccessReview, item_ids, decision: str, by, comment: str = ""
) -> list[ReviewItem]:
    """Keep or revoke the items ``item_ids`` of ``review`` at once, in one transaction: all
    of them are answered or none. Items of another review, or already answered, are refused.
    Each answer is one ``access_review_answer`` audit record; the review completes when no
    item waits."""
    if decision not in (Decision.KEEP, Decision.REVOKE):
        raise DomainError(
            ErrorCode.VALIDATION_FAILED, "Answer keep or revoke.", {"decision": decision}
        )
    try:
        wanted = {int(i) for i in item_ids}
    except (TypeError, ValueError):
        raise DomainError(
            ErrorCode.VALIDATION_FAILED, "Item ids are numbers.", {"items": "invalid"}
        ) from None
    if not wanted:
        raise DomainError(ErrorCode.VALIDATION_FAILED, "Choose at least one item.", {})
    comment = (comment or "").strip()[:COMMENT_MAX]
    now = timezone.now()
    with transaction.atomic():
        review = AccessReview.objects.select_for_update().get(pk=review.pk)
        if review.status == ReviewStatus.COMPLETED:
            raise DomainError(
                ErrorCode.CONFLICT, "This review is completed.", {"review": review.pk}, 409
            )
        items = list(
            ReviewItem.objects.select_for_update(of=("self",))
            .filter(review=review, pk__in=wanted)
            .select_related("agent__role", "operation__connector", "connector", "credential")
        )
        missing = sorted(wanted - {item.pk for item in items})
        if missing:
            raise DomainError(
                ErrorCode.VALIDATION_FAILED,
                "Some items are not part of this review.",
                {"items": missing},
            )
        answered = sorted(item.pk for item in items if item.decision != Decision.PENDING)
        if answered:
            raise DomainError(
                ErrorCode.CONFLICT, "Some items are already answered.", {"items": answered}, 409
            )
        actor = by.get_username()
        for item in items:
            effect = {}
            if decision == Decision.REVOKE:
                reason = f"access review {review.period}: {item.get_kind_display().lower()}"
                effect = _revoke(item=item, by=by, reason=reason)
            item.decision, item.decided_by, item.decided_at = decision, by, now
            item.comment = comment
            audit.append(
                kind="access_review_answer",
                actor=actor,
                agent_id=item.agent_id,
                payload={
                    "review_id": review.pk,
                    "unit": review.business_unit_id,
                    "period": review.period,
                    "item_id": item.pk,
                    "kind": item.kind,
                    "decision": decision,
                    "by": actor,
                    "comment": comment,
                    "subject": item.evidence.get("target") or item.evidence.get("prefix") or "",
                    **effect,
                },
            )
        ReviewItem.objects.bulk_update(items, ["decision", "decided_by", "decided_at", "comment"])
        if not review.items.filter(decision=Decision.PENDING).exists():
            review.status, review.completed_at = ReviewStatus.COMPLETED, now
            review.save(update_fields=["status", "completed_at"])
            audit.append(
                kind="access_review_completed",
                actor=actor,
                payload={"review_id": review.pk, "period": review.period},
            )
    return items


def reviews_escalate(*, now: datetime | None = None) -> int:
    """Escalate every open review past its due time with answers still missing: mark it,
    write an audit record and e-mail the escalation group after commit (Celery beat).
    Returns how many were escalated."""
    from reviews import tasks

    now = now or timezone.now()
    escalated = 0
    due = AccessReview.objects.filter(
        status=ReviewStatus.OPEN, due_at__lt=now, items__decision=Decision.PENDING
    ).distinct()
    for review_id in due.values_list("pk", flat=True):
        with transaction.atomic():
            review = (
                AccessReview.objects.select_for_update()
                .filter(pk=review_id, status=ReviewStatus.OPEN)
                .first()
            )
            if review is None:
                continue
            review.status, review.escalated_at = ReviewStatus.ESCALATED, now
            review.save(update_fields=["status", "escalated_at"])
            pending = review.items.filter(decision=Decision.PENDING).count()
            audit.append(
                kind="access_review_escalated",
                actor="system",
                payload={
                    "review_id": review.pk,
                    "period": review.period,
                    "pending": pending,
                    "due_at": review.due_at,
                },
            )
            transaction.on_commit(lambda pk=review.pk: tasks.review_escalated_notify.delay(pk))
        escalated += 1
    return escalated
