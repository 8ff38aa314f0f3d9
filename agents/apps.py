from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Agent registry"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from agents import models
        from agents.api import schema  # noqa: F401  (registers the OpenAPI auth schemes)

        # Field-level history of every registry model; the token hash never enters the log.
        auditlog.register(models.BusinessUnit)
        auditlog.register(models.Role)
        auditlog.register(models.Agent, exclude_fields=["updated_at"])
        auditlog.register(models.Credential, exclude_fields=["token_hash", "last_used_at"])

        post_migrate.connect(_sync_portal_roles, sender=self)


def _sync_portal_roles(**kwargs):
    from agents.services import portal_roles_sync

    portal_roles_sync()
