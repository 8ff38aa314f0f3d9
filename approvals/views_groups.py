"""The grouped inbox: similar waiting requests listed, opened and decided as one.

Reads come from ``approvals.groups``, the decision from ``approvals.services``; these views
parse the form, pick the template and word the outcome.
"""

from django.contrib import messages
from django.core.paginator import Page, Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from approvals import groups, services
from approvals.forms import GroupDecisionForm
from approvals.models import Channel, Verdict
from approvals.views_inbox import PAGE_SIZE, person_required
from autonomy.errors import DomainError, ErrorCode

STANDING_DAYS = 7


def _groups_context(request: HttpRequest, *, selected: str = "") -> dict:
    grouped = groups.inbox_groups(user=request.user)
    page: Page = Paginator(grouped.groups, PAGE_SIZE).get_page(request.GET.get("page"))
    return {
        "page_obj": page,
        "groups": groups.groups_named(page.object_list),
        "promotions": grouped.promotions,
        "selected": selected,
    }


@person_required
@require_GET
def inbox_grouped(request: HttpRequest) -> HttpResponse:
    return render(request, "approvals/groups.html", _groups_context(request))


def _group_or_404(request: HttpRequest, key: str) -> dict:
    group_key = groups.group_key_parse(key)
    detail = group_key and groups.group_detail(user=request.user, key=group_key)
    if not detail:
        raise Http404("No such group in your inbox.")
    return detail


def _standing_url(group: dict) -> str:
    """Where the person grants a standing approval for what this group asks (its page is
    another helper's; its query names the group's bounds)."""
    return (
        f"/inbox/standing/new/?operation={group['operation'].key}&role={group['role'].slug}"
        f"&unit={group['unit'].slug}&max_risk={group['risk_max']}&days={STANDING_DAYS}"
    )


@person_required
@require_GET
def group(request: HttpRequest, key: str) -> HttpResponse:
    detail = _group_or_404(request, key)
    return render(
        request,
        "approvals/group.html",
        {
            **_groups_context(request, selected=key),
            "group": detail,
            "form": GroupDecisionForm(initial={"until": detail["newest"]}),
            "standing_url": _standing_url(detail),
            "bulk_max_risk": services.BULK_MAX_RISK,
        },
    )


@person_required
@require_POST
def group_decide(request: HttpRequest, key: str) -> HttpResponse:
    form = GroupDecisionForm(request.POST)
    if not form.is_valid():
        _group_or_404(request, key)
        messages.error(request, "Choose Approve all or Reject all; the group was not decided.")
        return redirect("approvals:group", key=key)
    verdict = form.cleaned_data["verdict"]
    try:
        outcome = services.approvals_decide_group(
            approver=request.user,
            key=key,
            verdict=verdict,
            channel=Channel.INBOX,
            until=form.cleaned_data["until"],
            comment=form.cleaned_data["comment"],
            exclude=form.cleaned_data["exclude"],
        )
    except DomainError as exc:
        if exc.code == ErrorCode.NOT_FOUND:
            raise Http404(exc.message) from exc
        messages.error(request, exc.message)
        return redirect("approvals:group", key=key)
    word = "approved" if verdict == Verdict.APPROVE else "rejected"
    line = f"You {word} {outcome.decided} request{'s' if outcome.decided != 1 else ''}"
    if outcome.waiting:
        line += f"; {outcome.waiting} still wait for another approver (quorum or your own agents)"
    messages.success(request, line + ".")
    for skipped in outcome.skipped:
        messages.warning(request, f"Skipped {skipped}")
    undecided = groups.group_members(user=request.user, key=groups.group_key_parse(key))
    if undecided.exclude(decisions__approver=request.user).exists():
        return redirect("approvals:group", key=key)  # newer members arrived meanwhile
    return redirect("approvals:inbox-grouped")
