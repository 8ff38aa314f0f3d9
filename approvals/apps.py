from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    """Humans in the loop: approval requests and decisions. Reacts to the kernel's
    ``action_needs_approval`` and ``action_settled``, and to its rollout promotions
    (``rollout_promotion_proposed``, ``rollout_promotion_closed``)."""

    name = "approvals"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from approvals import models, receivers
        from autonomy.signals import (
            action_needs_approval,
            action_settled,
            rollout_promotion_closed,
            rollout_promotion_proposed,
        )

        action_needs_approval.connect(
            receivers.on_action_needs_approval, dispatch_uid="approvals.open"
        )
        action_settled.connect(receivers.on_action_settled, dispatch_uid="approvals.close")
        rollout_promotion_proposed.connect(
            receivers.on_rollout_promotion_proposed, dispatch_uid="approvals.open_promotion"
        )
        rollout_promotion_closed.connect(
            receivers.on_rollout_promotion_closed, dispatch_uid="approvals.close_promotion"
        )
        # Who decides what is governance: changes to routes are logged like policies.
        auditlog.register(models.ApprovalRoute)
        auditlog.register(models.RouteStage)
