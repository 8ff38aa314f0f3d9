"""Approvals react to the kernel's action lifecycle and rollout promotions
(``autonomy.signals``)."""

from approvals import services
from autonomy.models import ActionStatus, Verdict


def on_action_needs_approval(sender, action, **kwargs) -> None:
    """The gate sent an action to people: open the request for their decision."""
    services.approval_open(action=action)


def on_action_settled(sender, action, **kwargs) -> None:
    """An action that waited for people was cancelled (a kill, a cancelled run): nobody
    needs to decide it any more."""
    if action.verdict == Verdict.NEEDS_APPROVAL and action.status == ActionStatus.CANCELLED:
        services.approval_cancel(action_id=action.pk)


def on_rollout_promotion_proposed(sender, promotion, **kwargs) -> None:
    """A plan's next wave's criteria hold: open the request that carries the promotion out."""
    services.approval_open_promotion(promotion=promotion)


def on_rollout_promotion_closed(sender, promotion, **kwargs) -> None:
    """The plan moved while its promotion waited (a demotion): nobody needs to decide it."""
    services.approval_cancel(promotion_id=promotion.pk)
