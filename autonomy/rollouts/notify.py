"""E-mails to the people responsible for a plan when its wave changes."""

import logging

from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db.models import Q
from django.template.loader import render_to_string

from agents.portal_roles import PortalRole, group_name
from autonomy.models import RolloutEvent

log = logging.getLogger(__name__)


def responsible(plan):
    """The plan's owner and its approvers (the risk officers when it names none)."""
    groups = (
        Q(groups=plan.approver_group_id)
        if plan.approver_group_id
        else Q(groups__name=group_name(PortalRole.RISK_OFFICER))
    )
    people = Q(pk=plan.owner_id) | groups if plan.owner_id else groups
    return get_user_model().objects.filter(people, is_active=True).exclude(email="").distinct()


def event_notify(*, event_id) -> int:
    event = RolloutEvent.objects.select_related("plan").filter(pk=event_id).first()
    if event is None:
        return 0
    recipients = sorted(responsible(event.plan).values_list("email", flat=True))
    if not recipients:
        log.info("rollout event %s: nobody to tell", event_id)
        return 0
    subject = f"[Autonomy OS] {event.plan.name}: {event.get_kind_display().lower()}"
    body = render_to_string("emails/rollout_event.txt", {"event": event, "plan": event.plan})
    send_mail(subject=subject, message=body, from_email=None, recipient_list=recipients)
    return len(recipients)
