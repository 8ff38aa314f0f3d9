"""The control map: what the product does to meet an obligation, which framework clauses it
answers, and which records prove it (``evidence_key`` names a query in
``compliance.evidence_queries``)."""

from django.db import models


class Framework(models.TextChoices):
    NIST_AI_RMF = "nist_ai_rmf", "NIST AI RMF 1.0"
    EU_AI_ACT = "eu_ai_act", "EU AI Act (deployer)"
    ISO_42001 = "iso_42001", "ISO/IEC 42001:2023"


class Control(models.Model):
    """One control of the product, shipped by a data migration and editable by risk
    officers in the admin."""

    ref = models.CharField(max_length=30, unique=True, help_text="e.g. AOS-GOV-01")
    title = models.CharField(max_length=200)
    description = models.TextField()
    feature = models.TextField(help_text="What in the product implements the control.")
    evidence = models.TextField(help_text="Which records prove it.")
    evidence_key = models.SlugField(
        max_length=60,
        help_text="The evidence query whose count for a period the page and the pack show.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["ref"]
        permissions = [("export_evidence", "Can download evidence packs")]

    def __str__(self) -> str:
        return f"{self.ref} {self.title}"


class FrameworkMapping(models.Model):
    """A control answering one clause of one framework."""

    control = models.ForeignKey(Control, on_delete=models.CASCADE, related_name="mappings")
    framework = models.CharField(max_length=20, choices=Framework.choices)
    ref = models.CharField(max_length=60, help_text="e.g. GOVERN 1.2, Art. 26(5), Clause 6.1.2")

    class Meta:
        ordering = ["framework", "ref"]
        constraints = [
            models.UniqueConstraint(
                fields=["control", "framework", "ref"], name="one_mapping_per_clause"
            )
        ]
        indexes = [models.Index(fields=["framework"], name="mapping_framework")]

    def __str__(self) -> str:
        return f"{self.get_framework_display()} {self.ref}"
