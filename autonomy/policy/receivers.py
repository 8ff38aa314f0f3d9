"""Registry changes move the policy-store version.

Connectors and operations are what policies, the gate and its caches see (entities,
parameter types, the operation a key names), and content rules are the gate's input read per
version (``autonomy.content.rules``); any save or delete of one moves the version in its own
transaction, so every process drops what it compiled or cached for the old one.
Bulk writes (``bulk_create``, ``QuerySet.update``) send no signals: call
``registry_changed`` after them, as ``seed_demo`` and the bench do.
"""

from django.db.models.signals import post_delete, post_save

from autonomy.models import Connector, ContentRule, Operation
from autonomy.policy.services import registry_changed


def _on_registry_change(sender, **kwargs) -> None:
    registry_changed()


def connect() -> None:
    for model in (Connector, Operation, ContentRule):
        for signal in (post_save, post_delete):
            signal.connect(
                _on_registry_change,
                sender=model,
                dispatch_uid=f"autonomy.policy.registry.{signal is post_save}.{model.__name__}",
            )
