"""Approvals react to the kernel's action lifecycle (``autonomy.signals``)."""

from django.utils import timezone

from approvals import services
from approvals.models import ApprovalRequest, ApprovalStatus
from autonomy.models import ActionStatus, Verdict


def on_action_needs_approval(sender, action, **kwargs) -> None:
    """The gate sent an action to people: open the request for their decision."""
    services.approval_open(action=action)


def on_action_settled(sender, action, **kwargs) -> None:
    """An action that waited for people was cancelled (a kill, a cancelled run): nobody
    needs to decide it any more."""
    if action.verdict == Verdict.NEEDS_APPROVAL and action.status == ActionStatus.CANCELLED:
        ApprovalRequest.objects.filter(action_id=action.pk, status=ApprovalStatus.PENDING).update(
            status=ApprovalStatus.CANCELLED, decided_at=timezone.now()
        )
