"""Standing approvals in the portal: the list (``/inbox/standing/``), the grant form, prefilled
from its GET parameters (a request's pane and suggestions link here), and one standing
approval with its uses per day and its Revoke button.

Reads come from ``autonomy.standing.selectors``; grants go through
``approvals.services.standing_approval_grant`` (``may_grant``: the one rule of who may),
revocations through ``autonomy.standing.services.standing_revoke``.
"""

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from agents.portal_roles import is_portal_person
from approvals import services
from approvals.forms import StandingGrantForm, StandingRevokeForm
from autonomy.errors import DomainError
from autonomy.standing import selectors
from autonomy.standing import services as standing_services

PAGE_SIZE = 50
STATES = ("active", "expired", "revoked")


def reader_required(view):
    """People of the portal who may view standing approvals; agents never."""

    @wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        user = request.user
        if not (is_portal_person(user) and user.has_perm("autonomy.view_standingapproval")):
            raise PermissionDenied("Standing approvals are for portal people who may view them.")
        return view(request, *args, **kwargs)

    return wrapped


@reader_required
@require_GET
def standing_list(request: HttpRequest) -> HttpResponse:
    state = request.GET.get("state", "active")
    if state not in STATES:
        state = "active"
    now = timezone.now()
    page = Paginator(selectors.listing(state=state, at=now), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    uses = selectors.uses_today(ids=[s.pk for s in page.object_list], at=now)
    rows = [(s, uses.get(s.pk, 0), s.state(now)) for s in page.object_list]
    return render(
        request,
        "approvals/standing/list.html",
        {
            "rows": rows,
            "page_obj": page,
            "state": state,
            "states": STATES,
            "may_grant": not standing_services.may_grant(user=request.user),
        },
    )


@reader_required
@require_http_methods(["GET", "POST"])
def standing_new(request: HttpRequest) -> HttpResponse:
    refused = standing_services.may_grant(user=request.user)
    if refused:
        raise PermissionDenied(refused)
    if request.method == "GET":
        form = StandingGrantForm(initial={k: v for k, v in request.GET.items() if v})
        return render(request, "approvals/standing/new.html", {"form": form})
    form = StandingGrantForm(request.POST)
    error, status = "", 400
    if form.is_valid():
        try:
            standing = services.standing_approval_grant(by=request.user, **form.terms())
        except DomainError as exc:
            error, status = exc.message, exc.status_code
            for field, problems in exc.details.get("fields", {}).items():
                if field in form.fields:
                    form.add_error(field, problems)
        else:
            messages.success(request, f"Granted standing approval #{standing.pk}.")
            return redirect("approvals:standing-detail", standing_id=standing.pk)
    context = {"form": form, "error": error}
    return render(request, "approvals/standing/new.html", context, status=status)


def _standing(standing_id: int):
    standing = selectors.standing_detail(standing_id=standing_id)
    if standing is None:
        raise Http404("No such standing approval.")
    return standing


def _detail_page(request: HttpRequest, standing, *, form=None, error: str = "", status=200):
    now = timezone.now()
    uses = selectors.uses_by_day(standing_id=standing.pk)
    today = selectors.day_of(now)
    context = {
        "standing": standing,
        "state": standing.state(now),
        "uses": uses,
        "used_today": next((u.count for u in uses if u.day == today), 0),
        "may_revoke": standing.revoked_at is None
        and standing_services.may_revoke(user=request.user),
        "form": form or StandingRevokeForm(),
        "error": error,
    }
    return render(request, "approvals/standing/detail.html", context, status=status)


@reader_required
@require_GET
def standing_detail(request: HttpRequest, standing_id: int) -> HttpResponse:
    return _detail_page(request, _standing(standing_id))


@reader_required
@require_POST
def standing_revoke(request: HttpRequest, standing_id: int) -> HttpResponse:
    standing = _standing(standing_id)
    if not standing_services.may_revoke(user=request.user):
        raise PermissionDenied("Revoking takes the permission to change standing approvals.")
    form = StandingRevokeForm(request.POST)
    if not form.is_valid():
        return _detail_page(request, standing, form=form, error="Say why.", status=400)
    try:
        standing_services.standing_revoke(
            standing_id=standing.pk, by=request.user, reason=form.cleaned_data["reason"]
        )
    except DomainError as exc:
        return _detail_page(request, standing, form=form, error=exc.message, status=exc.status_code)
    messages.success(request, f"Revoked standing approval #{standing.pk}: it allows nothing more.")
    return redirect("approvals:standing-detail", standing_id=standing.pk)
