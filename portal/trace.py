"""The story of one action, for its trace page: request, decision, approval, execution,
timings, its workflow step and its audit records — read in a constant number of queries."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import F

from approvals.models import Decision
from autonomy import audit
from autonomy.content import results
from autonomy.errors import ErrorCode
from autonomy.models import ActionRequest, AuditRecord, ConnectorCall
from autonomy.risk import FACTOR_LABELS
from workflows.models import StepRun

STANDING = str(ErrorCode.STANDING_APPROVAL)
LIMIT_CODES = {"rate_limited", "budget_exceeded", "risk_too_high", "risk_needs_approval"}


@dataclass
class ActionTrace:
    action: ActionRequest
    grant: dict | None
    policies: dict
    risk_factors: list[dict]
    limits: list[dict]
    approval: Any | None  # approvals.ApprovalRequest
    decisions: list = field(default_factory=list)  # approvals.Decision, oldest first
    step_runs: list = field(default_factory=list)  # workflows.StepRun with run and step
    records: list[AuditRecord] = field(default_factory=list)
    receipt: ConnectorCall | None = None
    result_records: int | None = None  # records in the outcome, where its operation says
    timings: list[tuple[str, timedelta]] = field(default_factory=list)
    # The standing approval that allowed it ({id, summary, granted_by, expires_at,
    # daily_limit}) and the reasons it settled, when one did.
    standing: dict | None = None
    standing_waived: list[dict] = field(default_factory=list)


def _factors(action: ActionRequest) -> list[dict]:
    total = max(action.risk_score, 1)
    rows = []
    for factor in action.risk_factors or []:
        if not isinstance(factor, dict):
            continue
        value = factor.get("value")
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        points = factor.get("points") or 0
        rows.append(
            {
                "factor": factor.get("factor", ""),
                "label": FACTOR_LABELS.get(factor.get("factor"), factor.get("factor")),
                "value": value,
                "points": points,
                "share": min(100, round(100 * points / total)),
            }
        )
    return sorted(rows, key=lambda f: -f["points"])


def _timings(action: ActionRequest, approval) -> list[tuple[str, timedelta]]:
    def span(label: str, start: datetime | None, end: datetime | None):
        return [(label, end - start)] if start and end and end >= start else []

    waited_until = getattr(approval, "decided_at", None)
    return (
        span("decided in", action.created_at, action.decided_at)
        + span("waited for approval", action.decided_at if approval else None, waited_until)
        + span("queued", waited_until or action.decided_at, action.started_at)
        + span("ran for", action.started_at, action.finished_at)
        + span("end to end", action.created_at, action.finished_at)
    )


def action_trace(*, action_id) -> ActionTrace | None:
    """Everything known about one action, or None. Five or six queries, whatever its history."""

    action = (
        ActionRequest.objects.select_related(
            "agent__business_unit",
            "agent__owner",
            "credential",
            "operation__connector",
            "approval__approver_group",
        )
        .filter(pk=action_id)
        .first()
    )
    if action is None:
        return None
    approval = action.approval if _has_approval(action) else None
    decisions = []
    if approval is not None:
        decisions = list(
            Decision.objects.filter(request=approval)
            .select_related("approver", "redirected_to")
            .order_by("created_at")
        )
    step_runs = list(StepRun.objects.filter(action=action).select_related("run__template", "step"))
    # Sealed first (not waiting for a sealer at work), then in trail order; a record still
    # unsealed follows the sealed ones in the order it was appended.
    audit.seal(wait=False)
    records = list(
        AuditRecord.objects.filter(action_id=action.pk).order_by(
            F("seq").asc(nulls_last=True), "id"
        )
    )
    receipt = ConnectorCall.objects.filter(idempotency_key=str(action.pk)).first()
    decided = next((r for r in records if r.kind == "action_decision"), None)
    grant = ((decided.payload or {}).get("decision") or {}).get("grant") if decided else None
    policies = action.policy_ids or {}
    limits = [r for r in action.reasons or [] if r.get("code") in LIMIT_CODES]
    standing = next(
        (r.get("details") or {} for r in action.reasons or [] if r.get("code") == STANDING),
        {},
    )
    return ActionTrace(
        action=action,
        grant=grant,
        policies={
            "permits": policies.get("permits") or [],
            "forbids": policies.get("forbids") or [],
            "approval_required": bool(policies.get("approval_required")),
            "errors": policies.get("errors") or [],
        },
        risk_factors=_factors(action),
        limits=limits,
        approval=approval,
        decisions=decisions,
        step_runs=step_runs,
        records=records,
        receipt=receipt,
        result_records=(
            results.records_in(operation=action.operation, outcome=action.outcome)
            if action.outcome is not None
            else None
        ),
        timings=_timings(action, approval),
        standing=_standing(standing.get("standing")),
        standing_waived=standing.get("waived") or [],
    )


def _standing(details: dict | None) -> dict | None:
    if not details:
        return None
    try:
        expires_at = datetime.fromisoformat(details.get("expires_at") or "")
    except ValueError:
        expires_at = None
    return {**details, "expires_at": expires_at}


def _has_approval(action: ActionRequest) -> bool:

    try:
        action.approval  # noqa: B018  (loaded by select_related; no query)
    except ObjectDoesNotExist:
        return False
    return True
