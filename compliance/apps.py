from django.apps import AppConfig


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
