"""Model changes logged by django-auditlog also enter the chain.

auditlog keeps the field-level history; the chain keeps its order and integrity.
"""

from auditlog import get_logentry_model
from auditlog.models import AbstractLogEntry
from django.db import transaction
from django.db.models.signals import post_save

from autonomy.audit.chain import append

Action = AbstractLogEntry.Action
ACTIONS = {
    Action.CREATE: "create",
    Action.UPDATE: "update",
    Action.DELETE: "delete",
    Action.ACCESS: "access",
}


def _on_log_entry(sender, instance, created: bool, **kwargs) -> None:
    if not created:
        return
    content_type = instance.content_type
    # Joins the change's transaction; a log entry written in autocommit mode gets its own.
    with transaction.atomic(savepoint=False):
        append(
            kind="model_change",
            actor=instance.actor.get_username() if instance.actor_id else "",
            payload={
                "model": f"{content_type.app_label}.{content_type.model}",
                "object_pk": instance.object_pk,
                "object_repr": instance.object_repr,
                "action": ACTIONS.get(instance.action, str(instance.action)),
                "changes": instance.changes_dict,
            },
        )


def connect() -> None:
    post_save.connect(
        _on_log_entry, sender=get_logentry_model(), dispatch_uid="autonomy.audit.model_change"
    )
