"""Reads of standing approvals: the gate's index, read once per policy-store version, and the
lists and counts the pages show.

``index(version)`` holds every standing approval that is neither revoked nor expired when
the version was read, in dicts keyed by (operation, agent), (operation, role, unit),
(operation, role) and (operation, unit), so ``matching`` costs a handful of dict lookups
whatever their number. Every save or delete of a standing approval moves the version in its
own transaction (``autonomy.standing.receivers``): a grant or a revocation holds from the
next decision. Expiry and start are checked against the decision's time, not the build's.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from django.db.models import QuerySet
from django.utils import timezone

from autonomy.models import StandingApproval, StandingApprovalUse
from autonomy.policy import engine as policy_engine
from autonomy.policy.versioned import PerVersion

# Most specific first: an agent's own, then its role within its unit, its role, its unit.
AGENT, ROLE_UNIT, ROLE, UNIT = range(4)


@dataclass(frozen=True)
class Standing:
    """One standing approval as the gate reads it."""

    pk: int
    summary: str
    granted_by: str
    starts_at: datetime
    expires_at: datetime
    max_risk: int
    max_amount: Decimal | None
    daily_limit: int | None
    specificity: int

    def allows(self, *, risk: int, amount: Decimal | None, at: datetime) -> bool:
        if not (self.starts_at <= at < self.expires_at) or risk > self.max_risk:
            return False
        return self.max_amount is None or (amount or 0) <= self.max_amount

    def as_details(self) -> dict:
        return {
            "id": self.pk,
            "summary": self.summary,
            "granted_by": self.granted_by,
            "expires_at": self.expires_at.isoformat(),
            "daily_limit": self.daily_limit,
        }


def _live(at: datetime) -> QuerySet[StandingApproval]:
    return StandingApproval.objects.filter(revoked_at__isnull=True, expires_at__gt=at)


class StandingIndex:
    """The live standing approvals of one policy-store version, built in one query."""

    def __init__(self, version: int):
        self.version = version
        self.by_agent: dict[tuple, list[Standing]] = {}
        self.by_role_unit: dict[tuple, list[Standing]] = {}
        self.by_role: dict[tuple, list[Standing]] = {}
        self.by_unit: dict[tuple, list[Standing]] = {}
        rows = _live(timezone.now()).select_related(
            "operation__connector", "role", "business_unit", "agent", "granted_by"
        )
        for row in rows.order_by("expires_at", "pk"):
            if row.agent_id:
                key, table, specificity = (row.operation_id, row.agent_id), self.by_agent, AGENT
            elif row.role_id and row.business_unit_id:
                key = (row.operation_id, row.role_id, row.business_unit_id)
                table, specificity = self.by_role_unit, ROLE_UNIT
            elif row.role_id:
                key, table, specificity = (row.operation_id, row.role_id), self.by_role, ROLE
            else:
                key = (row.operation_id, row.business_unit_id)
                table, specificity = self.by_unit, UNIT
            table.setdefault(key, []).append(
                Standing(
                    pk=row.pk, summary=row.summary, granted_by=row.granted_by.get_username(),
                    starts_at=row.starts_at, expires_at=row.expires_at, max_risk=row.max_risk,
                    max_amount=row.max_amount, daily_limit=row.daily_limit,
                    specificity=specificity,
                )
            )  # fmt: skip

    def matching(
        self, *, agent, operation_id: int, risk: int, amount: Decimal | None, at: datetime
    ) -> list[Standing]:
        """The standing approvals that allow this action now, most specific first, then the
        earliest to expire (each table is kept in that order)."""
        found = []
        for table, key in (
            (self.by_agent, (operation_id, agent.pk)),
            (self.by_role_unit, (operation_id, agent.role_id, agent.business_unit_id)),
            (self.by_role, (operation_id, agent.role_id)),
            (self.by_unit, (operation_id, agent.business_unit_id)),
        ):
            for standing in table.get(key, ()):
                if standing.allows(risk=risk, amount=amount, at=at):
                    found.append(standing)
        return found


_index = PerVersion(StandingIndex)
index_forget = _index.forget


def matching(
    *,
    agent,
    operation,
    risk: int,
    amount: Decimal | None,
    at: datetime,
    version: int | None = None,
) -> list[Standing]:
    """The standing approvals that would allow ``agent``'s action on ``operation`` at ``risk``
    and ``amount`` at ``at``, most specific first: agent, role in unit, role, unit; then the
    earliest expiry. ``version``: the policy-store version the caller read (the gate's);
    without it, one query reads it."""
    if version is None:
        version = policy_engine.store_version()
    return _index.get(version).matching(
        agent=agent, operation_id=operation.pk, risk=risk, amount=amount, at=at
    )


def day_of(at: datetime) -> date:
    """The day (UTC) a use counts on."""
    return at.astimezone(UTC).date()


def listing(*, state: str = "", at: datetime | None = None) -> QuerySet[StandingApproval]:
    """Standing approvals for the pages and the API, newest first; ``state``: active (now in
    force or scheduled), expired, revoked, or "" for all."""
    at = at or timezone.now()
    rows = StandingApproval.objects.select_related(
        "operation__connector", "role", "business_unit", "agent", "granted_by", "revoked_by"
    ).order_by("-created_at", "-pk")
    if state == "active":
        rows = _live(at)
        rows = rows.select_related(
            "operation__connector", "role", "business_unit", "agent", "granted_by"
        ).order_by("expires_at", "pk")
    elif state == "expired":
        rows = rows.filter(revoked_at__isnull=True, expires_at__lte=at)
    elif state == "revoked":
        rows = rows.filter(revoked_at__isnull=False)
    return rows


def uses_today(*, ids, at: datetime | None = None) -> dict[int, int]:
    """Actions each of ``ids`` allowed today (UTC), in one query."""
    day = day_of(at or timezone.now())
    return dict(
        StandingApprovalUse.objects.filter(standing_id__in=list(ids), day=day).values_list(
            "standing_id", "count"
        )
    )


def uses_by_day(*, standing_id: int, days: int = 30) -> list[StandingApprovalUse]:
    """The last ``days`` days with uses, newest first."""
    return list(StandingApprovalUse.objects.filter(standing_id=standing_id).order_by("-day")[:days])


def standing_detail(*, standing_id) -> StandingApproval | None:
    return (
        StandingApproval.objects.select_related(
            "operation__connector", "role", "business_unit", "agent__owner", "granted_by",
            "revoked_by",
        )
        .filter(pk=standing_id)
        .first()
    )  # fmt: skip
