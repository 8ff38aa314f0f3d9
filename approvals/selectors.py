"""Reads for approvers: what this person may decide, with everything needed on one screen."""

from datetime import datetime

from django.contrib.contenttypes.models import ContentType
from django.db.models import CharField, QuerySet, Subquery, Value
from django.db.models.functions import Cast, Replace
from guardian.models import GroupObjectPermission, UserObjectPermission

from approvals.models import (
    ApprovalRequest,
    ApprovalStatus,
    Suggestion,
    SuggestionKind,
    SuggestionStatus,
)

DECIDE = "approvals.decide_approvalrequest"


def inbox_for_user(*, user, status: str = ApprovalStatus.PENDING) -> QuerySet[ApprovalRequest]:
    """Requests this person may decide (guardian grants to their groups), riskiest and oldest
    first, joined so that a page of them costs a constant number of queries."""
    ct = ContentType.objects.get_for_model(ApprovalRequest)

    # guardian keeps object ids as text. Compare as hyphen-less text on both sides: casting
    # every stored id to a uuid (guardian's own shortcut) breaks on other models' integer ids,
    # and SQLite renders a uuid as bare hex where guardian wrote it with hyphens.
    def bare(expression):
        return Replace(expression, Value("-"), Value(""))

    granted = (
        GroupObjectPermission.objects.filter(
            content_type=ct, permission__codename="decide_approvalrequest", group__user=user
        )
        .annotate(bare_pk=bare("object_pk"))
        .values("bare_pk")
    )
    direct = (
        UserObjectPermission.objects.filter(
            content_type=ct, permission__codename="decide_approvalrequest", user=user
        )
        .annotate(bare_pk=bare("object_pk"))
        .values("bare_pk")
    )
    return (
        ApprovalRequest.objects.filter(status=status)
        .annotate(pk_text=bare(Cast("pk", CharField())))
        .filter(pk_text__in=Subquery(granted.union(direct)))
        .select_related(
            "agent__owner",
            "business_unit",
            "approver_group",
            "action__operation__connector",
            "promotion__plan",
        )
        .order_by("-risk_score", "created_at")
    )


def approval_detail(*, request_id) -> ApprovalRequest | None:
    return (
        ApprovalRequest.objects.select_related(
            "agent__owner", "agent__role__group", "business_unit", "approver_group",
            "action__operation__connector", "promotion__plan", "requested_by",
        )
        .prefetch_related("decisions__approver")
        .filter(pk=request_id)
        .first()
    )  # fmt: skip


def agent_recent_actions(*, agent, limit: int = 10):
    return agent.actions.select_related("operation__connector").order_by("-created_at")[:limit]


def promotion_summary(*, promotion) -> dict:
    """What people read to decide a promotion: the measured figures (as proposed, so what
    they approve is what was measured) against the next wave's thresholds, each worded for
    the page and the e-mail alike, and the plan's page when the portal has one."""
    proposal = promotion.figures or {}
    figures = proposal.get("figures") or {}
    return {
        "plan": promotion.plan,
        "plan_url": promotion.plan.get_absolute_url(),
        "from_wave": promotion.from_wave,
        "to_wave": promotion.to_wave,
        "met": bool(proposal.get("met")),
        "criteria": [
            {
                "label": c.get("label") or c.get("name"),
                "value": _figure(c.get("name", ""), c.get("value")),
                "threshold": ("≥ " if c.get("at_least") else "≤ ")
                + _figure(c.get("name", ""), c.get("threshold")),
                "met": bool(c.get("met")),
            }
            for c in proposal.get("criteria") or []
        ],
        "window": _window(figures.get("window_minutes")),
        "since": _moment(figures.get("since")),
        "at": _moment(figures.get("at")),
        "agents": figures.get("agents"),
        "actions": figures.get("actions"),
    }


def _figure(name: str, value) -> str:
    if value is None:
        return "—"
    if name.endswith("_ratio"):
        return f"{value:.1%}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _moment(text):
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def _window(minutes) -> str:
    if not minutes:
        return "—"
    if minutes % (24 * 60) == 0:
        days = minutes // (24 * 60)
        return f"{days} day{'s' if days != 1 else ''}"
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"


def suggestions_open() -> QuerySet[Suggestion]:
    """Open suggestions, the largest expected fall in inbox load first, joined for display."""
    return (
        Suggestion.objects.filter(status=SuggestionStatus.OPEN)
        .select_related("operation__connector", "role__group", "business_unit")
        .order_by("-per_day", "pk")
    )


def suggestions_open_count() -> int:
    return Suggestion.objects.filter(status=SuggestionStatus.OPEN).count()


def suggestion_summary(suggestion: Suggestion) -> dict:
    """What a policy owner reads of one suggestion, worded once for the page and the API."""
    evidence, simulation = suggestion.evidence or {}, suggestion.simulation or {}
    days = evidence.get("window_days")
    approved, rejected = evidence.get("approved", 0), evidence.get("rejected", 0)
    headline = (
        f"{suggestion.role} agents in {suggestion.business_unit.name}: "
        f"“{suggestion.operation.name}” approved {approved} time{'' if approved == 1 else 's'} "
        f"unchanged and rejected {rejected} time{'' if rejected == 1 else 's'} "
        f"in {days} day{'' if days == 1 else 's'}"
    )
    per_day = suggestion.per_day
    return {
        "id": suggestion.pk,
        "kind": suggestion.kind,
        "kind_label": suggestion.get_kind_display(),
        "is_policy": suggestion.kind == SuggestionKind.POLICY,
        "operation": suggestion.operation.key,
        "operation_name": suggestion.operation.name,
        "role": suggestion.role.slug,
        "role_name": str(suggestion.role),
        "business_unit": suggestion.business_unit.slug,
        "business_unit_name": suggestion.business_unit.name,
        "headline": headline,
        "fall": f"~{per_day:.0f}" if per_day >= 1 else f"~{per_day:.1f}",
        "fall_share": f"{suggestion.inbox_share:.0%}",
        "per_day": per_day,
        "inbox_share": suggestion.inbox_share,
        "evidence": evidence,
        "simulation": simulation,
        "bounds": simulation.get("bounds") or {},
        "wait_reasons": simulation.get("wait_reasons") or {},
        "updated_at": suggestion.updated_at,
    }
