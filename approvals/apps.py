from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    """Humans in the loop: approval requests and decisions. Reacts to the kernel's
    ``action_needs_approval`` and ``action_settled``."""

    name = "approvals"

    def ready(self) -> None:
        from approvals import receivers
        from autonomy.signals import action_needs_approval, action_settled

        action_needs_approval.connect(
            receivers.on_action_needs_approval, dispatch_uid="approvals.open"
        )
        action_settled.connect(receivers.on_action_settled, dispatch_uid="approvals.close")
