"""E-mails to people about their agents."""

import logging

from django.core.mail import send_mail
from django.template.loader import render_to_string

from agents.models import Agent
from autonomy.observability.request_id import current as current_request_id

log = logging.getLogger(__name__)


def owner_status_changed(*, agent_id: str, status: str, reason: str) -> bool:
    """Mail the owner; skip quietly if the agent is gone or the status moved on meanwhile."""
    agent = Agent.objects.select_related("owner").filter(pk=agent_id).first()
    if agent is None or agent.status != status:
        log.info("status notice for %s skipped: agent gone or status changed", agent_id)
        return False
    if not agent.owner.email:
        log.info("status notice for %s skipped: owner has no e-mail", agent_id)
        return False
    context = {"agent": agent, "reason": reason, "reference": current_request_id()}
    send_mail(
        subject=f"[Autonomy OS] {agent.name} is now {agent.get_status_display().lower()}",
        message=render_to_string("emails/agent_status_changed.txt", context),
        from_email=None,
        recipient_list=[agent.owner.email],
    )
    log.info("status notice for %s (%s) sent to its owner", agent_id, status)
    return True
