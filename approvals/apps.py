from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    """Humans in the loop: approval requests and decisions. Reacts to the kernel's
    ``action_needs_approval`` and ``action_settled``, and to its rollout promotions
    (``rollout_promotion_proposed``, ``rollout_promotion_closed``), and to the registry's
    changes that wait for people (``registry_change_requested``, ``registry_change_closed``)."""

    name = "approvals"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from agents.signals import registry_change_closed, registry_change_requested
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
        registry_change_requested.connect(
            receivers.on_registry_change_requested, dispatch_uid="approvals.open_change"
        )
        registry_change_closed.connect(
            receivers.on_registry_change_closed, dispatch_uid="approvals.close_change"
        )
        # Who decides what is governance: changes to routes are logged like policies.
        auditlog.register(models.ApprovalRoute)
        auditlog.register(models.RouteStage)
