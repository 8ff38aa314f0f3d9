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

        post_migrate.connect(_sync_portal_roles, dispatch_uid="agents.portal_roles_sync")


def _sync_portal_roles(sender, **kwargs):
    """Once, after the last app's post_migrate: the roles name permissions of apps after this
    one (workflows, approvals, compliance, reviews), which their own post_migrate creates."""
    from django.apps import apps

    from agents.services import portal_roles_sync

    with_models = [config for config in apps.get_app_configs() if config.models_module]
    if sender is with_models[-1]:
        portal_roles_sync()
