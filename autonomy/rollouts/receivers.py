"""The guards: a failed action or a new drift flag of an agent a guarded wave reaches demotes
the plan in the transaction that recorded it, before the agent's next action is decided."""

from django.db.models.signals import post_save

from agents.models import DriftFlag
from autonomy import signals
from autonomy.models import ActionRequest, ActionStatus
from autonomy.rollouts import services


def on_action_settled(sender, action, **kwargs) -> None:
    if action.status == ActionStatus.FAILED:
        services.guard_check(agent=action.agent, template_key=action.template_key)


def on_drift_flag_saved(sender, instance, created, **kwargs) -> None:
    if created:
        services.guard_check(agent=instance.agent, drift_flag=instance)


def connect() -> None:
    signals.action_settled.connect(
        on_action_settled, sender=ActionRequest, dispatch_uid="rollouts_guard_failures"
    )
    post_save.connect(on_drift_flag_saved, sender=DriftFlag, dispatch_uid="rollouts_guard_drift")
