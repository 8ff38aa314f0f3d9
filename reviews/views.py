"""The access reviews' pages: every review (``/reviews/``), one review's items grouped by kind
with keep and revoke in bulk (``/reviews/<id>/``), and "Open review now" for a unit.

Who may do what is ``reviews.selectors`` (``may_view``, ``may_answer``, ``may_open``); the
buttons call ``reviews.services``.
"""

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from agents.models import BusinessUnit
from agents.portal_roles import is_portal_person
from autonomy.errors import DomainError
from reviews import selectors, services
from reviews.models import AccessReview, ItemKind


def person_required(view):
    @wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not is_portal_person(request.user):
            raise PermissionDenied("Access reviews are for people of the portal.")
        return view(request, *args, **kwargs)

    return wrapped


def _review(user, review_id: int) -> AccessReview:
    review = AccessReview.objects.select_related("business_unit", "reviewer_group").filter(
        pk=review_id
    )
    review = review.first()
    if review is None:
        raise Http404("No such review.")
    if not selectors.may_view(user=user, review=review):
        raise PermissionDenied("You may not read this review.")
    return review


@person_required
@require_GET
@never_cache
def review_list(request: HttpRequest) -> HttpResponse:
    reviews = list(selectors.reviews_for_user(user=request.user))
    may_open = selectors.may_open(user=request.user)
    if not reviews and not selectors.may_view(user=request.user):
        raise PermissionDenied("Access reviews are for risk officers, IT admins and auditors.")
    return render(
        request,
        "reviews/list.html",
        {
            "reviews": reviews,
            "may_open": may_open,
            "units": list(BusinessUnit.objects.order_by("name")) if may_open else [],
            "period": services.period_of(timezone.now()),
            "now": timezone.now(),
        },
    )


@person_required
@require_GET
@never_cache
def review_page(request: HttpRequest, review_id: int) -> HttpResponse:
    review = _review(request.user, review_id)
    grouped = selectors.review_items(review=review)
    kinds = [
        {"kind": kind, "label": label, "items": grouped[kind]} for kind, label in ItemKind.choices
    ]
    return render(
        request,
        "reviews/detail.html",
        {
            "review": review,
            "kinds": kinds,
            "pending": sum(1 for k in kinds for i in k["items"] if i.decision == "pending"),
            "may_answer": selectors.may_answer(user=request.user, review=review)
            and review.status != "completed",
        },
    )


@person_required
@require_POST
def review_answer(request: HttpRequest, review_id: int) -> HttpResponse:
    review = _review(request.user, review_id)
    if not selectors.may_answer(user=request.user, review=review):
        raise PermissionDenied("You may not answer this review.")
    try:
        items = services.review_answer(
            review=review,
            item_ids=request.POST.getlist("item"),
            decision=request.POST.get("decision", ""),
            by=request.user,
            comment=request.POST.get("comment", ""),
        )
    except DomainError as error:
        messages.error(request, error.message)
    else:
        verb = "kept" if request.POST.get("decision") == "keep" else "revoked"
        messages.success(request, f"{len(items)} item{'s' if len(items) != 1 else ''} {verb}.")
    return redirect("reviews:detail", review_id=review.pk)


@person_required
@require_POST
def review_open(request: HttpRequest) -> HttpResponse:
    if not selectors.may_open(user=request.user):
        raise PermissionDenied("Only risk officers open access reviews.")
    unit = get_object_or_404(BusinessUnit, pk=request.POST.get("unit") or 0)
    try:
        review = services.review_open(
            unit=unit, period=services.period_of(timezone.now()), by=request.user
        )
    except DomainError as error:
        messages.error(request, error.message)
        return redirect("reviews:list")
    messages.success(request, f"Review of {unit} for {review.period} opened.")
    return redirect("reviews:detail", review_id=review.pk)
