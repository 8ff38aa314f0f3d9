"""Signed, expiring, single-use e-mail links. The signature binds request, person and nonce;
the nonce row is the server's record: it makes the link single-use and holds its expiry, which
the server checks on every use together with the request's own expiry (the signer's max age is
only a second bound, never the authority). A link is for one stage of the request: once
that stage is decided it is refused here. A request that is decided or cancelled refuses its
links through the decision service; one past its expiry refuses them here, swept or not."""

import secrets
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from approvals.models import ApprovalRequest, EmailLink
from autonomy.errors import DomainError, ErrorCode

SALT = "autonomy.approvals.email-link"


def link_path(*, request: ApprovalRequest, approver) -> str:
    nonce = secrets.token_urlsafe(24)
    max_age = timedelta(seconds=settings.AUTONOMY_APPROVAL_LINK_MAX_AGE)
    EmailLink.objects.create(
        nonce=nonce,
        request=request,
        approver=approver,
        expires_at=min(timezone.now() + max_age, request.expires_at),
        stage=request.stage,
    )
    token = signing.dumps({"r": str(request.pk), "u": approver.pk, "n": nonce}, salt=SALT)
    return reverse("approvals:email-confirm", args=[token])


def link_open(token: str) -> EmailLink:
    """The link's row, if its signature, server-side expiry and single use all hold; else
    link_invalid."""
    try:
        data = signing.loads(token, salt=SALT, max_age=settings.AUTONOMY_APPROVAL_LINK_MAX_AGE)
    except signing.SignatureExpired as exc:
        raise DomainError(
            ErrorCode.LINK_INVALID, "This link has expired.", {"why": "expired"}, 410
        ) from exc
    except signing.BadSignature as exc:
        raise DomainError(
            ErrorCode.LINK_INVALID, "This link is not valid.", {"why": "tampered"}, 400
        ) from exc
    link = (
        EmailLink.objects.select_related(
            "request__action__operation__connector",
            "request__agent",
            "request__promotion__plan",
            "approver",
        )
        .filter(nonce=data.get("n"), request_id=data.get("r"), approver_id=data.get("u"))
        .first()
    )
    if link is None:
        raise DomainError(
            ErrorCode.LINK_INVALID, "This link is not valid.", {"why": "unknown"}, 400
        )
    if link.used_at is not None:
        raise DomainError(
            ErrorCode.LINK_INVALID, "This link was already used.", {"why": "used"}, 410
        )
    now = timezone.now()
    if link.stage != link.request.stage:
        raise DomainError(
            ErrorCode.LINK_INVALID,
            f"This link was for stage {link.stage}, which is decided; the request has moved on.",
            {"why": "stage", "stage": link.stage, "current_stage": link.request.stage},
            410,
        )
    if link.expires_at <= now or link.request.expires_at <= now:
        raise DomainError(ErrorCode.LINK_INVALID, "This link has expired.", {"why": "expired"}, 410)
    return link


def link_use(*, token: str) -> EmailLink:
    """Mark the link used, once, under a row lock (two tabs posting at once: one wins)."""
    link = link_open(token)
    with transaction.atomic():
        updated = EmailLink.objects.filter(pk=link.pk, used_at__isnull=True).update(
            used_at=timezone.now()
        )
    if not updated:
        raise DomainError(
            ErrorCode.LINK_INVALID, "This link was already used.", {"why": "used"}, 410
        )
    return link
