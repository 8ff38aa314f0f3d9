"""The reads behind the compliance page and the evidence pack's sections: set-based
aggregates for the period, and streamed lists where a section lists rows."""

from collections import Counter
from collections.abc import Iterator
from datetime import datetime

from django.db.models import Count, DurationField, ExpressionWrapper, F, QuerySet

from approvals.models import ApprovalRequest, Decision
from autonomy.models import ActionRequest, Intervention
from autonomy.policy import selectors as policy_selectors
from compliance.evidence_queries import evidence_counts
from compliance.models import Control, Framework, FrameworkMapping
from reviews import selectors as review_selectors

STREAM_CHUNK = 2000


def controls(*, framework: str | None = None) -> QuerySet[Control]:
    """The control map with its mappings prefetched (two queries), optionally only the
    controls that answer a clause of ``framework``."""
    queryset = Control.objects.prefetch_related("mappings")
    if framework:
        queryset = queryset.filter(
            pk__in=FrameworkMapping.objects.filter(framework=framework).values("control")
        )
    return queryset


def controls_with_counts(
    *, start: datetime, end: datetime, framework: str | None = None
) -> list[dict]:
    """Each control with its framework clauses and its evidence count for [start, end): two
    queries for the map, one per distinct evidence key."""
    rows = list(controls(framework=framework))
    counts = evidence_counts((c.evidence_key for c in rows), start=start, end=end)
    return [control_row(control, counts[control.evidence_key]) for control in rows]


def control_row(control: Control, count: int | None) -> dict:
    return {
        "ref": control.ref,
        "title": control.title,
        "description": control.description,
        "feature": control.feature,
        "evidence": control.evidence,
        "evidence_key": control.evidence_key,
        "evidence_count": count,
        "frameworks": [
            {
                "framework": m.framework,
                "label": Framework(m.framework).label,
                "ref": m.ref,
            }
            for m in control.mappings.all()
        ],
    }


# --- sections of the evidence pack ----------------------------------------------------------


def _policies_in_force(at: datetime) -> list[dict]:
    """The policy versions in force at ``at`` (the kernel's immutable history answers it),
    with their text and its hash, so an auditor can match a decision's named version."""
    return [
        {
            "policy_id": version.policy_key,
            "name": version.policy_name,
            "version": version.number,
            "change": version.change,
            "text_sha256": version.content_hash,
            "text": version.text,
            "author": version.author_name or None,
            "recorded_at": version.created_at.isoformat(),
        }
        for version in policy_selectors.policies_in_force(at)
    ]


def policies_section(*, start: datetime, end: datetime) -> dict:
    return {"at": end.isoformat(), "policies": _policies_in_force(end)}


def _counts(queryset, field: str) -> dict:
    return {
        str(row[field]): row["n"]
        for row in queryset.values(field).annotate(n=Count("pk")).order_by(field)
    }


def decisions_section(*, start: datetime, end: datetime) -> dict:
    """The gate's decisions in the period: counts by verdict, operation, business unit and
    reason code. Four GROUP BY queries and one streamed read of the reasons."""
    actions = ActionRequest.objects.filter(created_at__gte=start, created_at__lt=end)
    by_operation = {
        f"{row['operation__connector__slug']}.{row['operation__slug']}": row["n"]
        for row in actions.values("operation__connector__slug", "operation__slug")
        .annotate(n=Count("pk"))
        .order_by("operation__connector__slug", "operation__slug")
    }
    reasons = Counter()
    for entries in actions.values_list("reasons", flat=True).iterator(chunk_size=STREAM_CHUNK):
        reasons.update(entry.get("code", "") for entry in entries or () if isinstance(entry, dict))
    return {
        "total": actions.count(),
        "by_verdict": _counts(actions, "verdict"),
        "by_operation": by_operation,
        "by_business_unit": _counts(actions, "agent__business_unit__slug"),
        "by_reason_code": dict(sorted(reasons.items())),
    }


def _median_seconds_to_decision(decided: QuerySet) -> float | None:
    """The median time from opening to decision: a count, then the middle row(s) of the
    requests ordered by that time (no percentile function is portable)."""
    count = decided.count()
    if not count:
        return None
    waits = (
        decided.annotate(
            wait=ExpressionWrapper(F("decided_at") - F("created_at"), output_field=DurationField())
        )
        .order_by("wait")
        .values_list("wait", flat=True)
    )
    middle = list(waits[(count - 1) // 2 : count // 2 + 1])
    return sum(w.total_seconds() for w in middle) / len(middle)


def approvals_summary(*, start: datetime, end: datetime) -> dict:
    opened = ApprovalRequest.objects.filter(created_at__gte=start, created_at__lt=end)
    decided = ApprovalRequest.objects.filter(
        decided_at__gte=start, decided_at__lt=end, decided_at__isnull=False
    )
    return {
        "opened": opened.count(),
        "opened_by_status": _counts(opened, "status"),
        "decided": decided.count(),
        "decided_by_status": _counts(decided, "status"),
        "median_seconds_to_decision": _median_seconds_to_decision(decided),
    }


def approval_decisions(*, start: datetime, end: datetime) -> Iterator[dict]:
    """Every decision people made in the period, oldest first, streamed."""
    decisions = (
        Decision.objects.filter(created_at__gte=start, created_at__lt=end)
        .select_related("approver", "request")
        .order_by("created_at", "pk")
    )
    for decision in decisions.iterator(chunk_size=STREAM_CHUNK):
        yield {
            "request_id": str(decision.request_id),
            "subject": decision.request.subject,
            "approver": decision.approver.get_username(),
            "verdict": decision.verdict,
            "channel": decision.channel,
            "stage": decision.stage,
            "comment": decision.comment,
            "at": decision.created_at.isoformat(),
        }


def interventions_summary(*, start: datetime, end: datetime) -> dict:
    made = Intervention.objects.filter(created_at__gte=start, created_at__lt=end)
    return {"total": made.count(), "by_kind": _counts(made, "kind")}


def interventions(*, start: datetime, end: datetime) -> Iterator[dict]:
    """Pauses, kills, quarantines, stops and overrides of the period, oldest first."""
    made = (
        Intervention.objects.filter(created_at__gte=start, created_at__lt=end)
        .select_related("agent", "business_unit", "by", "lifted_by")
        .order_by("created_at", "pk")
    )
    for item in made.iterator(chunk_size=STREAM_CHUNK):
        yield {
            "id": item.pk,
            "kind": item.kind,
            "scope": item.scope,
            "agent": item.agent.slug if item.agent_id else None,
            "business_unit": item.business_unit.slug if item.business_unit_id else None,
            "by": item.by.get_username() if item.by_id else None,
            "reason": item.reason,
            "details": item.details,
            "at": item.created_at.isoformat(),
            "lifted_at": item.lifted_at.isoformat() if item.lifted_at else None,
            "lifted_by": item.lifted_by.get_username() if item.lifted_by_id else None,
        }


def reviews(*, start: datetime, end: datetime) -> list[dict]:
    """The access reviews opened in the period, with how they were answered."""
    return [
        {
            "business_unit": review.business_unit.slug,
            "period": review.period,
            "status": review.status,
            "opened_at": review.opened_at.isoformat(),
            "due_at": review.due_at.isoformat(),
            "escalated_at": review.escalated_at.isoformat() if review.escalated_at else None,
            "completed_at": review.completed_at.isoformat() if review.completed_at else None,
            "reviewers": review.reviewer_group.name if review.reviewer_group_id else None,
            "items": review.item_count,
            "pending": review.pending_count,
            "revoked": review.revoked_count,
        }
        for review in review_selectors.reviews_for_period(start=start, end=end)
    ]
