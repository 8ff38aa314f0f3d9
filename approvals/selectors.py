"""Reads for approvers: what this person may decide, with everything needed on one screen."""

from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.db.models import CharField, Q, QuerySet, Subquery, Value
from django.db.models.functions import Cast, Replace
from django.urls import reverse
from guardian.models import GroupObjectPermission, UserObjectPermission

from agents.models import RegistryChangeKind, RiskTier
from agents.portal_roles import PortalRole, group_name
from approvals.models import (
    ApprovalRequest,
    ApprovalRoute,
    ApprovalStage,
    ApprovalStatus,
    ExpiryOutcome,
    RouteStage,
    Suggestion,
    SuggestionKind,
    SuggestionStatus,
)

DECIDE = "approvals.decide_approvalrequest"
# What ``stage_history`` reads, prefetched by whoever lists or shows requests with it.
STAGE_HISTORY_PREFETCH = ("decisions__approver", "stage_track__approver_group")


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
            "change",
        )
        .order_by("-risk_score", "created_at")
    )


def approval_detail(*, request_id) -> ApprovalRequest | None:
    return (
        ApprovalRequest.objects.select_related(
            "agent__owner", "agent__role__group", "business_unit", "approver_group",
            "action__operation__connector", "promotion__plan", "requested_by",
            "change__agent__role__group", "change__role__group", "change__business_unit__owner",
        )
        .prefetch_related(*STAGE_HISTORY_PREFETCH)
        .filter(pk=request_id)
        .first()
    )  # fmt: skip


# --- routes: who decides an action, in which stages, with which escalation -------------------


def route_specificity(route: ApprovalRoute) -> tuple:
    """How specific a route is; the larger tuple wins. A named operation outranks a named
    unit, which outranks a narrower risk band, which outranks a higher amount threshold; on a
    tie the older route (lower id) wins, so the choice never depends on query order."""
    band = (100 if route.max_risk is None else route.max_risk) - (route.min_risk or 0)
    return (
        route.operation_id is not None,
        route.business_unit_id is not None,
        -band,
        route.min_amount is not None,
        route.min_amount or 0,
        -route.pk,
    )


def route_for(*, action) -> ApprovalRoute | None:
    """The one rule that routes an action's approval: the most specific enabled route whose
    operation, unit, risk band and amount all match (``route_specificity``), with its stages
    prefetched; None for the built-in default. One query."""
    unit_id = action.agent.business_unit_id
    risk, amount = action.risk_score, action.amount
    matching = (
        ApprovalRoute.objects.filter(enabled=True)
        .filter(Q(operation=None) | Q(operation_id=action.operation_id))
        .filter(Q(business_unit=None) | Q(business_unit_id=unit_id))
        .filter(Q(min_risk=None) | Q(min_risk__lte=risk))
        .filter(Q(max_risk=None) | Q(max_risk__gte=risk))
        .filter(Q(min_amount=None) | Q(min_amount__lte=amount) if amount is not None
                else Q(min_amount=None))
        .prefetch_related("stages")
    )  # fmt: skip
    routes = [route for route in matching if route.stages.all()]  # a route needs a stage
    return max(routes, key=route_specificity, default=None)


def stages_planned(*, action, route: ApprovalRoute | None) -> list[ApprovalStage]:
    """The stages an action's approval goes through, unsaved, each resolved to concrete
    approvers, quorum, clocks and escalation target. Empty fields of a route's stage, and an
    action no route matches, take the built-in default: the unit's approver group (else the
    portal's approvers), two approvers at or above the unit's dual-control risk, the settings'
    clocks, escalation to the risk officers."""
    unit = action.agent.business_unit
    plans = list(route.stages.all()) if route else [RouteStage(number=1, name="Approval")]
    stages = []
    for number, plan in enumerate(sorted(plans, key=lambda p: p.number), start=1):
        escalate = plan.escalate_after_seconds or settings.AUTONOMY_APPROVAL_ESCALATE_SECONDS
        group, user = plan.escalate_to_group, plan.escalate_to_user
        if group is None and user is None:
            group = _portal_group(plan.escalate_to_role or PortalRole.RISK_OFFICER)
        stages.append(
            ApprovalStage(
                number=number,
                name=plan.name,
                approver_group=plan.approver_group
                or unit.approver_group
                or _portal_group(PortalRole.APPROVER),
                quorum=plan.quorum or (2 if action.risk_score >= unit.dual_control_risk else 1),
                ttl_seconds=plan.ttl_seconds or settings.AUTONOMY_APPROVAL_TTL_SECONDS,
                remind_after_seconds=plan.remind_after_seconds or escalate // 2,
                escalate_after_seconds=escalate,
                escalation_group=group,
                escalation_user=user,
                expiry_outcome=plan.expiry_outcome or ExpiryOutcome.DENY,
            )
        )
    return stages


def _portal_group(role: str) -> Group:
    return Group.objects.get_or_create(name=group_name(role))[0]


def stage_history(approval: ApprovalRequest) -> list[dict]:
    """Each stage of a request with who decided it and when, for the page, the e-mail and the
    API. Reads the prefetched ``stage_track`` and ``decisions`` (``approval_detail``); a
    request opened without a route has no rows and one stage."""
    decisions = list(approval.decisions.all())
    return [
        {
            "number": stage.number,
            "name": stage.name,
            "approvers": stage.approver_group.name,
            "quorum": stage.quorum,
            "status": stage.status,
            "status_display": stage.get_status_display(),
            "current": stage.number == approval.stage and approval.status == ApprovalStatus.PENDING,
            "started_at": stage.started_at,
            "decided_at": stage.decided_at,
            "decisions": [d for d in decisions if d.stage == stage.number],
        }
        for stage in approval.stage_track.all()
    ]


def agent_recent_actions(*, agent, limit: int = 10):
    return agent.actions.select_related("operation__connector").order_by("-created_at")[:limit]


def approval_id_for_change(*, change_id):
    return ApprovalRequest.objects.filter(change_id=change_id).values_list("pk", flat=True).first()


def change_summary(*, change) -> dict:
    """What people read to decide a registry change: what it asks, about whom, and what the
    agent is now. ``change`` comes with its agent, role and unit (``approval_detail``)."""
    agent, payload = change.agent, change.payload
    facts = []
    if change.kind == RegistryChangeKind.RAISE_TIER:
        facts = [("Risk tier now", RiskTier(payload["from"]).label),
                 ("Risk tier asked", RiskTier(payload["to"]).label)]  # fmt: skip
    elif change.kind == RegistryChangeKind.REGISTER:
        facts = [("Role", agent.role.group.name),
                 ("Risk tier", agent.get_risk_tier_display())]  # fmt: skip
    else:
        to = agent.name if agent else f"the role {change.role.group.name} (all its agents)"
        what = "every operation of" if payload.get("model") == "connector" else "the operation"
        facts = [("Grant", f"{what} {payload.get('name', '?')}"), ("To", to)]
    return {
        "kind": change.kind,
        "kind_display": change.get_kind_display(),
        "summary": change.summary,
        "status": change.status,
        "agent": agent,
        "agent_url": reverse("agents:detail", args=[agent.slug]) if agent else "",
        "unit": change.business_unit,
        "unit_owner": change.business_unit.owner if change.business_unit_id else None,
        "facts": facts,
    }


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


def standing_prefill(*, approval: ApprovalRequest) -> dict:
    """The grant form's starting values for a pattern like this action's request: its
    operation, the agent's role and unit, its risk rounded up to the next 10 (below the
    unit's deny threshold), for 7 days. The names are the form's GET parameters."""
    action, agent = approval.action, approval.agent
    unit = approval.business_unit  # the agent's, as the request was opened
    max_risk = min(-(-action.risk_score // 10) * 10, unit.deny_threshold - 1)
    return {
        "operation": action.operation.key,
        "role": agent.role.slug,
        "unit": unit.slug,
        "max_risk": max_risk,
        "days": 7,
        "source": str(approval.pk),
    }


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
