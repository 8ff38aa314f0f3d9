"""Approval history for the load tests and the bench: requests and decisions written
directly with their past timestamps (not through the services), so thousands cost
milliseconds and every figure can be counted by hand."""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from guardian.shortcuts import assign_perm

from approvals.models import ApprovalRequest, ApprovalStatus, Decision, Verdict
from approvals.selectors import DECIDE
from tests.autonomy.dashboard_fixtures import history


@dataclass
class Spec:
    """One request: arrived ``created`` minutes before now, closed ``decided`` minutes
    before now (negative: after now; None: still waiting), ``status``, in ``unit`` for
    ``group``, decided by ``by`` (the person whose decision closed it)."""

    created: float
    decided: float | None = None
    status: str = ApprovalStatus.PENDING
    expired: bool = False
    unit: object = None
    group: object = None
    by: object = None


def seed_requests(*, registry, specs: list[Spec], now: datetime) -> list[ApprovalRequest]:
    """The requests of ``specs``, each on an action of ``registry.agent``; pending ones are
    granted to their group (as ``approval_open`` does), decided ones get their decision."""
    actions = history(
        agents=[registry.agent], operation=registry.post, n=len(specs), now=now,
        span=timedelta(minutes=len(specs)),
    )  # fmt: skip
    rows = [
        ApprovalRequest(
            id=uuid.uuid4(),
            action=action,
            agent=registry.agent,
            business_unit=spec.unit or registry.agent.business_unit,
            subject=f"request {i}",
            approver_group=spec.group,
            status=spec.status,
            expired_undecided=spec.expired,
            expires_at=now + timedelta(hours=24),
        )
        for i, (action, spec) in enumerate(zip(actions, specs, strict=True))
    ]
    ApprovalRequest.objects.bulk_create(rows, batch_size=1000)
    for row, spec in zip(rows, specs, strict=True):
        row.created_at = now - timedelta(minutes=spec.created)
        row.decided_at = None if spec.decided is None else now - timedelta(minutes=spec.decided)
    ApprovalRequest.objects.bulk_update(rows, ["created_at", "decided_at"], batch_size=1000)
    waiting: dict = {}
    for row, spec in zip(rows, specs, strict=True):
        if spec.status == ApprovalStatus.PENDING:
            waiting.setdefault(spec.group, []).append(row.pk)
    for group, ids in waiting.items():
        assign_perm(DECIDE, group, ApprovalRequest.objects.filter(pk__in=ids))
    decisions = [
        Decision(
            request=row,
            approver=spec.by,
            verdict=Verdict.REJECT if spec.status == ApprovalStatus.REJECTED else Verdict.APPROVE,
            channel="inbox",
        )
        for row, spec in zip(rows, specs, strict=True)
        if spec.by is not None
    ]
    Decision.objects.bulk_create(decisions, batch_size=1000)
    for decision in decisions:
        decision.created_at = decision.request.decided_at
    Decision.objects.bulk_update(decisions, ["created_at"], batch_size=1000)
    return rows
