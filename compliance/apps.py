from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ComplianceConfig(AppConfig):
    """Compliance evidence: the shipped, editable map of controls to NIST AI RMF, the EU AI
    Act's deployer obligations and ISO/IEC 42001, and signed evidence packs per period.
    Above the kernel, agents, approvals and workflows: it reads them, none of them reads it."""

    name = "compliance"
    verbose_name = "Compliance evidence"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from compliance import models

        # Field-level history of the control map: every edit is also in the hash chain.
        auditlog.register(models.Control)
        auditlog.register(models.FrameworkMapping)

        # This app's permissions exist only once its own post_migrate has run, after the
        # registry's: give the portal roles theirs again then.
        post_migrate.connect(_sync_portal_roles, sender=self)


def _sync_portal_roles(**kwargs) -> None:
    from agents.services import portal_roles_sync

    portal_roles_sync()
