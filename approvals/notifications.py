"""E-mails to approvers: each gets a signed, expiring, single-use link to a confirmation page."""

import json
import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db.models import Q, prefetch_related_objects
from django.template.loader import render_to_string

from approvals import links, selectors
from approvals.models import ApprovalRequest, ApprovalStatus
from autonomy import masking

log = logging.getLogger(__name__)

SUBJECTS = {
    "new": "Approval needed",
    "reminder": "Reminder: approval needed",
    "escalated": "Escalated: approval needed",
    "stage": "Approval needed",
}


def eligible_approvers(request: ApprovalRequest):
    groups = [request.approver_group_id]
    if request.escalated_at and request.escalation_group_id:
        groups.append(request.escalation_group_id)
    who = Q(groups__in=groups)
    if request.escalated_at and request.escalation_user_id:
        who |= Q(pk=request.escalation_user_id)
    people = (
        get_user_model()
        .objects.filter(who, is_active=True)
        .exclude(email="")
        # The agent's owner and the requester never decide alone: no link for them.
        .exclude(pk__in=request.interested_ids)
    )
    if request.stage > 1:  # whoever decided an earlier stage never decides this one
        people = people.exclude(pk__in=request.decisions.values("approver_id"))
    return people.distinct()


def approvers_notify(*, request_id: str, reason: str = "new") -> int:
    request = (
        ApprovalRequest.objects.select_related(
            "agent__owner",
            "action__operation__connector",
            "promotion__plan",
            "requested_by",
            "change__agent__role__group",
            "change__role__group",
            "change__business_unit__owner",
        )
        .filter(pk=request_id)
        .first()
    )
    if request is None or request.status != ApprovalStatus.PENDING:
        return 0
    sent = 0
    portal = settings.AUTONOMY_PORTAL_URL.rstrip("/")  # "https://host/" + "/approvals/..." 404s
    promotion = None
    if request.promotion_id:
        promotion = selectors.promotion_summary(promotion=request.promotion)
        promotion["plan_url"] = f"{portal}{promotion['plan_url']}"
    stages = []
    if request.routed:
        prefetch_related_objects([request], *selectors.STAGE_HISTORY_PREFETCH)
        stages = selectors.stage_history(request)
    of_stage = f" (stage {request.stage} of {request.stages})" if request.stages > 1 else ""
    for approver in eligible_approvers(request):
        url = f"{portal}{links.link_path(request=request, approver=approver)}"
        context = {
            "request": request,
            "action": request.action,
            # Plain text: the parameters as JSON, as people read them in the inbox, unescaped.
            # Always masked, whoever receives it (``autonomy.masking``: notifications never
            # carry sensitive values; mail leaves the system and is forwarded).
            "params_text": (
                json.dumps(
                    masking.params_for(request.action, viewer=None),
                    sort_keys=True,
                    ensure_ascii=False,
                )
                if request.action_id
                else ""
            ),
            "promotion": promotion,
            "change": selectors.change_summary(change=request.change)
            if request.change_id
            else None,
            "approver": approver,
            "url": url,
            "inbox_url": f"{portal}/inbox/",
            "stage_track": stages,
            "earlier_stages": [s for s in stages if s["number"] < request.stage],
        }
        send_mail(
            subject=f"[Autonomy OS] {SUBJECTS.get(reason, SUBJECTS['new'])}{of_stage}: "
            f"{request.subject}",
            message=render_to_string("emails/approval_needed.txt", context),
            from_email=None,
            recipient_list=[approver.email],
        )
        sent += 1
    log.info("approval %s: %s notice sent to %d approver(s)", request_id, reason, sent)
    return sent
