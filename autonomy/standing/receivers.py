"""A standing approval saved or deleted moves the policy-store version in the same
transaction, so every process's gate reads the standing approvals again on its next
decision (``autonomy.standing.selectors``). Use counts are not part of the index and move
nothing."""

from django.db.models.signals import post_delete, post_save

from autonomy.models import StandingApproval
from autonomy.policy.services import registry_changed


def _on_change(sender, **kwargs) -> None:
    registry_changed()


def connect() -> None:
    for signal in (post_save, post_delete):
        signal.connect(
            _on_change,
            sender=StandingApproval,
            dispatch_uid=f"autonomy.standing.{signal is post_save}",
        )
