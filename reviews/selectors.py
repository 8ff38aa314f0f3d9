"""Access reviews, the reads."""

from datetime import datetime

from django.db.models import Count, Q, QuerySet

from reviews.models import AccessReview, Decision, ItemKind, ReviewItem

VIEW = "reviews.view_accessreview"
ANSWER = "reviews.answer_accessreview"
OPEN = "reviews.add_accessreview"


def _person(user) -> bool:
    return bool(user and user.is_active and not hasattr(user, "agent"))


def may_view(*, user, review: AccessReview | None = None) -> bool:
    """Auditors, risk officers and IT admins read every review; the members of a review's
    reviewer group read theirs."""
    if not _person(user):
        return False
    if user.has_perm(VIEW):
        return True
    return review is not None and may_answer(user=user, review=review)


def may_answer(*, user, review: AccessReview) -> bool:
    """Risk officers and IT admins answer any review; a unit's own reviewer group its own."""
    if not _person(user):
        return False
    if user.has_perm(ANSWER):
        return True
    return (
        bool(review.reviewer_group_id) and user.groups.filter(pk=review.reviewer_group_id).exists()
    )


def may_open(*, user) -> bool:
    return _person(user) and user.has_perm(OPEN)


def _counted(reviews: QuerySet[AccessReview]) -> QuerySet[AccessReview]:
    return reviews.select_related("business_unit", "reviewer_group").annotate(
        item_count=Count("items"),
        pending_count=Count("items", filter=Q(items__decision=Decision.PENDING)),
        revoked_count=Count("items", filter=Q(items__decision=Decision.REVOKE)),
    )


def reviews_for_user(*, user) -> QuerySet[AccessReview]:
    """The reviews a person may see, with their counts: one query."""
    reviews = AccessReview.objects.all()
    if not user.has_perm(VIEW):
        reviews = reviews.filter(reviewer_group__in=user.groups.all())
    return _counted(reviews).order_by("-opened_at", "business_unit__name")


def review_items(*, review: AccessReview) -> dict[str, list[ReviewItem]]:
    """The items of a review grouped by kind, in the order of ``ItemKind``: one query."""
    grouped: dict[str, list[ReviewItem]] = {kind: [] for kind in ItemKind.values}
    for item in review.items.select_related(
        "agent__owner",
        "agent__role",
        "operation__connector",
        "connector",
        "credential",
        "decided_by",
    ):
        grouped[item.kind].append(item)
    return grouped


def reviews_for_period(*, start: datetime, end: datetime) -> QuerySet[AccessReview]:
    """Reviews opened in [start, end), with their counts, for the evidence pack."""
    return _counted(AccessReview.objects.filter(opened_at__gte=start, opened_at__lt=end)).order_by(
        "opened_at"
    )
