"""Approvals react to the kernel's action lifecycle and rollout promotions
(``autonomy.signals``), and to the registry's changes that wait for people
(``agents.signals``)."""

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


def on_registry_change_requested(sender, change, **kwargs) -> None:
    """A registration, a riskier tier or a wider grant waits: open the request for people."""
    services.approval_open_change(change=change)


def on_registry_change_closed(sender, change, **kwargs) -> None:
    """The change's agent was retired while it waited: nobody needs to decide it."""
    services.approval_cancel(change_id=change.pk)
