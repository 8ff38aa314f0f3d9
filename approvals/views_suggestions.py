"""Suggestions from history for policy owners (``/inbox/suggestions/``): each with its
evidence, the expected fall in inbox load and its replay on past traffic, and buttons that
open it as a draft or dismiss it. Reads from ``approvals.selectors``; the buttons call
``approvals.suggestions``, whose ``may_review`` is the one rule of who may see and act."""

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from approvals import selectors, suggestions
from autonomy.errors import DomainError


def owner_required(view):
    @wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not suggestions.may_review(user=request.user):
            raise PermissionDenied("Suggestions are for people who may change policies.")
        return view(request, *args, **kwargs)

    return wrapped


@owner_required
@require_GET
def suggestion_list(request: HttpRequest) -> HttpResponse:
    items = [selectors.suggestion_summary(s) for s in selectors.suggestions_open()]
    return render(request, "approvals/suggestions.html", {"suggestions": items})


def _act(request: HttpRequest, act, **kwargs):
    """Run one service; a refusal (gone, already closed) is said on the list."""
    try:
        return act(by=request.user, **kwargs)
    except DomainError as exc:
        messages.error(request, exc.message)
        return None


@owner_required
@require_POST
def suggestion_standing(request: HttpRequest, suggestion_id: int) -> HttpResponse:
    url = _act(request, suggestions.suggestion_open_standing, suggestion_id=suggestion_id)
    return redirect(url or "approvals:suggestions")


@owner_required
@require_POST
def suggestion_policy(request: HttpRequest, suggestion_id: int) -> HttpResponse:
    policy = _act(request, suggestions.suggestion_draft_policy, suggestion_id=suggestion_id)
    if policy is None:
        return redirect("approvals:suggestions")
    messages.success(
        request,
        f"Draft policy “{policy.name}” saved, disabled. Review it, enable it and disable the "
        "policies it replaces.",
    )
    return redirect(reverse("admin:autonomy_policy_change", args=[policy.pk]))


@owner_required
@require_POST
def suggestion_dismiss(request: HttpRequest, suggestion_id: int) -> HttpResponse:
    if _act(request, suggestions.suggestion_dismiss, suggestion_id=suggestion_id):
        messages.success(request, "Suggestion dismissed; it is not proposed again this window.")
    return redirect("approvals:suggestions")
