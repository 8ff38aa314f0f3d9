import os

from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_migrate


class AutonomyConfig(AppConfig):
    name = "autonomy"
    verbose_name = "Autonomy OS kernel"

    def ready(self) -> None:
        os.makedirs(settings.STATIC_ROOT, exist_ok=True)

        from autonomy.audit import receivers
        from autonomy.policy import receivers as policy_receivers
        from autonomy.rollouts import receivers as rollout_receivers
        from autonomy.standing import receivers as standing_receivers

        receivers.connect()
        policy_receivers.connect()
        rollout_receivers.connect()
        standing_receivers.connect()

        from autonomy.observability import tracing

        tracing.configure()

        # Field-level history (django-auditlog) of the kernel's registry, and of grants:
        # every LogEntry is also appended to the hash chain by the receiver above.
        from auditlog.registry import auditlog
        from guardian.models import GroupObjectPermission, UserObjectPermission

        from autonomy import models

        auditlog.register(models.Connector)
        auditlog.register(models.Operation)
        auditlog.register(models.Policy)
        auditlog.register(models.AutonomySetting)
        auditlog.register(models.RolloutPlan, exclude_fields=["current_wave", "wave_since"])
        auditlog.register(models.RolloutWave, m2m_fields={"agents", "business_units"})
        auditlog.register(GroupObjectPermission)
        auditlog.register(UserObjectPermission)

        post_migrate.connect(_ensure_memory_connector, sender=self)


def _ensure_memory_connector(**kwargs) -> None:
    """Every installation has the built-in shared-memory connector (``autonomy.memory``)."""
    from autonomy.memory.registry import memory_connector_ensure

    memory_connector_ensure()
