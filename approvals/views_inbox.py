"""The approval inbox: what this person may decide, with everything needed on one screen.

Reads come from ``approvals.selectors``, decisions go through ``approvals.services``; these
views only parse the form, pick the template and word the outcome.
"""

import hashlib
import json
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import etag, require_GET, require_POST

from approvals import selectors, services, suggestions
from approvals.forms import BulkDecisionForm, DecisionForm
from approvals.load import decisions_of, forecast_sentence, strip_load, wait_words
from approvals.models import ApprovalKind, ApprovalRequest, ApprovalStatus, Channel, Verdict
from autonomy import masking
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import PromotionStatus
from autonomy.risk import FACTOR_LABELS
from autonomy.standing import services as standing_services

PAGE_SIZE = 50
# Below this risk score a request may be decided together with others, without opening it.
BULK_MAX_RISK = services.BULK_MAX_RISK

APPROVAL_REASONS = {ErrorCode.POLICY_REQUIRES_APPROVAL, ErrorCode.RISK_NEEDS_APPROVAL}


def person_required(view):
    """Signed-in people only: anonymous visitors go to sign-in, agents' service users get 403."""

    @wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if hasattr(request.user, "agent"):
            raise PermissionDenied("Agents have no approval inbox.")
        return view(request, *args, **kwargs)

    return wrapped


# --- the list -------------------------------------------------------------------------------


def _inbox_page(request: HttpRequest) -> Page:
    """This person's page of pending requests; computed once per HTTP request."""
    if not hasattr(request, "_inbox_page"):
        paginator = Paginator(selectors.inbox_for_user(user=request.user), PAGE_SIZE)
        request._inbox_page = paginator.get_page(request.GET.get("page"))
    return request._inbox_page


def _list_version(request: HttpRequest, *args, **kwargs) -> str:
    """A cheap token of what the list shows: the page's rows and their approval counts.

    The poller sends it back as ``If-None-Match``; an unchanged inbox answers 304, empty.
    """
    page = _inbox_page(request)
    rows = [(str(r.pk), r.stage, r.approvals, r.quorum, r.escalated_at) for r in page.object_list]
    seed = repr((request.user.pk, page.number, page.paginator.count, rows))
    return hashlib.sha256(seed.encode()).hexdigest()[:32]


def _list_context(request: HttpRequest) -> dict:
    page = _inbox_page(request)
    return {
        "page_obj": page,
        "requests": page.object_list,
        "bulk_max_risk": BULK_MAX_RISK,
        "list_version": _list_version(request),
    }


def _strip_context(request: HttpRequest) -> dict:
    """The load strip over the inbox: the backlog and its direction, the last hour, and this
    person's own share (``approvals.load``)."""
    load = strip_load()
    mine = decisions_of(user=request.user, now=load.now)
    rate = round(load.rate_per_hour)
    return {
        "strip": {
            "load": load,
            "forecast": forecast_sentence(load),
            "trend": f"↑ {rate:,}/h" if rate > 0 else f"↓ {-rate:,}/h" if rate < 0 else "",
            "trend_tone": "up" if rate > 0 else "down",
            "mine_waiting": _inbox_page(request).paginator.count,
            "mine_decided": mine["decisions_24h"],
            "median_wait": wait_words(load.median_seconds),
        }
    }


@person_required
@require_GET
def inbox(request: HttpRequest) -> HttpResponse:
    context = {
        **_list_context(request),
        **_strip_context(request),
        "suggestion_count": _suggestion_count(request),
    }
    return render(request, "approvals/inbox.html", context)


def _suggestion_count(request: HttpRequest) -> int:
    """Open suggestions, for the header's badge: policy owners only."""
    if not suggestions.may_review(user=request.user):
        return 0
    return selectors.suggestions_open_count()


@person_required
@require_GET
@etag(_list_version)
def inbox_list(request: HttpRequest) -> HttpResponse:
    """The list alone, for the page's poller; 304 while nothing changed."""
    response = render(request, "approvals/_list.html", _list_context(request))
    response["Cache-Control"] = "private, no-cache"
    return response


# --- one request ----------------------------------------------------------------------------


def _visible(request: HttpRequest, request_id) -> ApprovalRequest:
    """The request, if this person is among its deciders; otherwise it does not exist."""
    approval = selectors.approval_detail(request_id=request_id)
    if approval is None or not services.may_decide(user=request.user, request=approval):
        raise Http404("No such approval request in your inbox.")
    return approval


def _policy_names(refs) -> list[str]:
    names = [ref.get("policy") if isinstance(ref, dict) else str(ref) for ref in refs or []]
    return list(dict.fromkeys(n for n in names if n))


def _risk_factors(action) -> list[dict]:
    total = max(action.risk_score, 1)
    factors = []
    for factor in action.risk_factors or []:
        value = factor.get("value")
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        points = factor.get("points") or 0
        factors.append(
            {
                "label": FACTOR_LABELS.get(factor.get("factor"), factor.get("factor")),
                "value": value,
                "points": points,
                "share": min(100, round(100 * points / total)),
            }
        )
    return sorted(factors, key=lambda f: -f["points"])


def _detail_context(
    request: HttpRequest, approval: ApprovalRequest, *, form=None, error: str = ""
) -> dict:
    decisions = list(approval.decisions.all())
    mine = next((d for d in decisions if d.approver_id == request.user.pk), None)
    pending = approval.status == ApprovalStatus.PENDING
    decision = {
        "approval": approval,
        "decisions": decisions,
        "my_decision": mine,
        "pending": pending,
        "can_decide": pending and mine is None,
        "needs_independent": pending and approval.approvals >= approval.quorum,
        "form": form or DecisionForm(),
        "error": error,
        "bulk_max_risk": BULK_MAX_RISK,
        "stage_track": selectors.stage_history(approval) if approval.routed else [],
    }
    if approval.kind == ApprovalKind.PROMOTION:
        return {
            **decision,
            "promotion": selectors.promotion_summary(promotion=approval.promotion),
            "is_proposer": approval.requested_by_id == request.user.pk,
        }
    if approval.kind == ApprovalKind.CHANGE:
        return {
            **decision,
            "change": selectors.change_summary(change=approval.change),
            "is_requester": approval.requested_by_id == request.user.pk,
            "is_owner": bool(approval.agent_id) and approval.agent.owner_id == request.user.pk,
        }
    action = approval.action
    asked_by = [r for r in action.reasons or [] if r.get("code") in APPROVAL_REASONS]
    policies = action.policy_ids or {}
    return {
        **decision,
        "action": action,
        "agent": approval.agent,
        "recent_actions": selectors.agent_recent_actions(agent=approval.agent),
        "params_json": json.dumps(
            masking.params_for(action, viewer=request.user),
            indent=2,
            sort_keys=True,
            ensure_ascii=False,
        ),
        "risk_factors": _risk_factors(action),
        "gate_reasons": masking.reasons_for(action, viewer=request.user),
        "approval_reasons": asked_by,
        "permitted_by": _policy_names(policies.get("permits")),
        "approval_policies": _policy_names(
            name
            for reason in asked_by
            for name in (reason.get("details") or {}).get("policies", [])
        ),
        "is_owner": approval.agent.owner_id == request.user.pk,
        "standing_url": _standing_url(request, approval),
    }


def _standing_url(request: HttpRequest, approval: ApprovalRequest) -> str:
    """The grant form prefilled from this request, for those who may grant; else ""."""
    if standing_services.may_grant(user=request.user):
        return ""
    query = urlencode(selectors.standing_prefill(approval=approval))
    return f"{reverse('approvals:standing-new')}?{query}"


def _detail_page(request: HttpRequest, approval: ApprovalRequest, *, status=200, **extra):
    context = _detail_context(request, approval, **extra)
    if request.GET.get("partial"):
        return render(request, "approvals/_detail.html", context, status=status)
    context = {
        **_list_context(request),
        **_strip_context(request),
        **context,
        "suggestion_count": _suggestion_count(request),
    }
    return render(request, "approvals/detail.html", context, status=status)


@person_required
@require_GET
def detail(request: HttpRequest, request_id) -> HttpResponse:
    """The full page with this request selected, or (``?partial=1``) its pane alone."""
    return _detail_page(request, _visible(request, request_id))


@person_required
@require_GET
def change_request(request: HttpRequest, change_id) -> HttpResponse:
    """The request a registry change waits on (the agent page links here), for those who may
    decide it; otherwise it does not exist."""
    approval_id = selectors.approval_id_for_change(change_id=change_id)
    if approval_id is None:
        raise Http404("No request waits on this change.")
    return redirect("approvals:detail", request_id=_visible(request, approval_id).pk)


def _outcome(approval: ApprovalRequest, verdict: str) -> str:
    if verdict == Verdict.REDIRECT:
        return f"“{approval.subject}” now waits for {approval.approver_group.name}."
    if approval.kind == ApprovalKind.PROMOTION:
        return _promotion_outcome(approval, verdict)
    if approval.kind == ApprovalKind.CHANGE and approval.status != ApprovalStatus.PENDING:
        if approval.status == ApprovalStatus.APPROVED:
            return f"Approved “{approval.subject}”. The change takes effect now."
        return f"Rejected “{approval.subject}”. Nothing in the registry changes."
    if approval.status == ApprovalStatus.APPROVED:
        return f"Approved “{approval.subject}”. The action is released to run."
    if approval.status == ApprovalStatus.REJECTED:
        return f"Rejected “{approval.subject}”. The action is stopped and will not run."
    if approval.approvals == 0 and approval.stage > 1 and verdict != Verdict.REJECT:
        return (
            f"Approved stage {approval.stage - 1} of “{approval.subject}”. It now waits for "
            f"stage {approval.stage} of {approval.stages}: {approval.approver_group.name}."
        )
    if verdict == Verdict.APPROVE and approval.approvals >= approval.quorum:
        return (
            f"Your approval of “{approval.subject}” is recorded. The agent's owner may not "
            "approve alone: another approver must still agree."
        )
    return (
        f"Your approval of “{approval.subject}” is recorded "
        f"({approval.approvals} of {approval.quorum}); it waits for more approvers."
    )


def _promotion_outcome(approval: ApprovalRequest, verdict: str) -> str:
    promotion = approval.promotion
    if approval.status == ApprovalStatus.APPROVED:
        promotion.refresh_from_db(fields=["status"])
        if promotion.status == PromotionStatus.VOID:
            return (
                f"Approved “{approval.subject}”, but the plan moved while it waited: nothing "
                "changed; it may be proposed again."
            )
        return f"Approved “{approval.subject}”. The plan is at wave {promotion.to_wave} now."
    if approval.status == ApprovalStatus.REJECTED:
        return f"Rejected “{approval.subject}”. The plan stays at wave {promotion.from_wave}."
    return (
        f"Your approval of “{approval.subject}” is recorded. Whoever proposed a promotion may "
        "not approve it alone: another approver must still agree."
    )


@person_required
@require_POST
def decide(request: HttpRequest, request_id) -> HttpResponse:
    form = DecisionForm(request.POST)
    if not form.is_valid():
        return _detail_page(
            request,
            _visible(request, request_id),
            form=form,
            error="Choose Approve or Reject.",
            status=400,
        )
    verdict = form.cleaned_data["verdict"]
    try:
        approval = services.approval_decide(
            request_id=request_id,
            approver=request.user,
            verdict=verdict,
            channel=Channel.INBOX,
            comment=form.cleaned_data["comment"],
            redirect_to=form.cleaned_data["redirect_to"],
        )
    except DomainError as exc:
        return _detail_page(
            request,
            _visible(request, request_id),
            form=form,
            error=exc.message,
            status=exc.status_code,
        )
    messages.success(request, _outcome(approval, verdict))
    if not services.may_decide(user=request.user, request=approval):
        return redirect("approvals:inbox")  # passed to the next stage's approvers
    return redirect("approvals:detail", request_id=approval.pk)


@person_required
@require_POST
def bulk_decide(request: HttpRequest) -> HttpResponse:
    """One verdict and comment for several low-risk requests, each decided on its own."""
    form = BulkDecisionForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            messages.error(request, " ".join(errors))
        return redirect("approvals:inbox")
    verdict, comment = form.cleaned_data["verdict"], form.cleaned_data["comment"]
    done, refused = services.approvals_decide_bulk(
        approver=request.user,
        ids=form.cleaned_data["ids"],
        verdict=verdict,
        comment=comment,
        channel=Channel.INBOX,
    )
    if done:
        word = "Approved" if verdict == Verdict.APPROVE else "Rejected"
        messages.success(request, f"{word} {done} request{'s' if done != 1 else ''}.")
    for line in refused:
        messages.warning(request, f"Refused {line}")
    return redirect("approvals:inbox")
