"""E-mails about access reviews."""

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse

from reviews import services
from reviews.models import AccessReview, Decision, ReviewStatus

log = logging.getLogger(__name__)


def review_escalated_notify(*, review_id: int) -> int:
    """Mail the escalation group that a review is past due; skip if it was answered since."""
    review = AccessReview.objects.select_related("business_unit").filter(pk=review_id).first()
    if review is None or review.status != ReviewStatus.ESCALATED:
        return 0
    group = services.escalation_group()
    if group is None:
        log.warning("review %s escalated, but nobody is in the escalation group", review_id)
        return 0
    pending = review.items.filter(decision=Decision.PENDING).count()
    url = settings.AUTONOMY_PORTAL_URL.rstrip("/") + reverse("reviews:detail", args=[review.pk])
    people = get_user_model().objects.filter(groups=group, is_active=True).exclude(email="")
    sent = 0
    for person in people:
        send_mail(
            subject=f"[Autonomy OS] Access review past due: {review.business_unit} {review.period}",
            message=render_to_string(
                "emails/review_escalated.txt",
                {"review": review, "pending": pending, "url": url, "person": person},
            ),
            from_email=None,
            recipient_list=[person.email],
        )
        sent += 1
    log.info("review %s escalation sent to %d person(s)", review_id, sent)
    return sent
