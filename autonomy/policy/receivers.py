"""Registry changes move the policy-store version.

Connectors and operations are what policies, the gate and its caches see (entities,
parameter types, the operation a key names), autonomy settings, rollout plans and their
waves what the level index holds (``autonomy.levels``), and content rules the gate's input
read per version (``autonomy.content.rules``); any save or delete of one (or change of a
wave's agents or units) moves the version in its own transaction, so every process drops
what it compiled or cached for the old one.
Bulk writes (``bulk_create``, ``QuerySet.update``) send no signals: call
``registry_changed`` after them, as ``seed_demo`` and the bench do.
"""

from django.db.models.signals import m2m_changed, post_delete, post_save

from autonomy.models import (
    AutonomySetting,
    Connector,
    ContentRule,
    Operation,
    RolloutPlan,
    RolloutWave,
)
from autonomy.policy.services import registry_changed


def _on_registry_change(sender, **kwargs) -> None:
    registry_changed()


def _on_members_change(sender, action, **kwargs) -> None:
    if action in ("post_add", "post_remove", "post_clear"):
        registry_changed()


def connect() -> None:
    for model in (Connector, Operation, AutonomySetting, RolloutPlan, RolloutWave, ContentRule):
        for signal in (post_save, post_delete):
            signal.connect(
                _on_registry_change,
                sender=model,
                dispatch_uid=f"autonomy.policy.registry.{signal is post_save}.{model.__name__}",
            )
    for members in (RolloutWave.agents.through, RolloutWave.business_units.through):
        m2m_changed.connect(
            _on_members_change,
            sender=members,
            dispatch_uid=f"autonomy.policy.registry.members.{members.__name__}",
        )
