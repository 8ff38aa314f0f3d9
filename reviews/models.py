"""An access review of one business unit for one period, and the items it asks about."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class ReviewStatus(models.TextChoices):
    OPEN = "open", "Open"
    ESCALATED = "escalated", "Escalated"
    COMPLETED = "completed", "Completed"


class ItemKind(models.TextChoices):
    DORMANT = "dormant", "Dormant agent"
    OVER_PRIVILEGED = "over_privileged", "Unused grant"
    ORPHANED = "orphaned", "Orphaned agent"
    CREDENTIAL_EXPIRING = "credential_expiring", "Credential expiring"
    CREDENTIAL_UNUSED = "credential_unused", "Credential never used"


class Decision(models.TextChoices):
    PENDING = "pending", "Pending"
    KEEP = "keep", "Keep"
    REVOKE = "revoke", "Revoke"


class AccessReview(models.Model):
    business_unit = models.ForeignKey(
        "agents.BusinessUnit", on_delete=models.PROTECT, related_name="access_reviews"
    )
    period = models.CharField(max_length=20, help_text='The period reviewed, e.g. "2026-Q4".')
    status = models.CharField(
        max_length=20, choices=ReviewStatus.choices, default=ReviewStatus.OPEN, db_index=True
    )
    opened_at = models.DateTimeField(default=timezone.now)
    opened_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    due_at = models.DateTimeField()
    escalated_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # Who answers: the unit's approver group when it has one, else the portal's risk
    # officers (``reviews.services.reviewers_for``), as it was when the review opened.
    reviewer_group = models.ForeignKey(
        "auth.Group", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The thresholds the detection used, in days.
    dormant_days = models.PositiveSmallIntegerField()
    unused_days = models.PositiveSmallIntegerField()
    expiring_days = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["business_unit", "period"], name="one_access_review_per_unit_period"
            )
        ]
        permissions = [
            ("answer_accessreview", "Can answer access reviews (keep or revoke)"),
        ]

    def __str__(self) -> str:
        return f"{self.business_unit} {self.period}"


class ReviewItem(models.Model):
    review = models.ForeignKey(AccessReview, on_delete=models.CASCADE, related_name="items")
    kind = models.CharField(max_length=30, choices=ItemKind.choices)
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="+")
    # What an unused grant is on: an operation, or a whole connector.
    operation = models.ForeignKey(
        "autonomy.Operation", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    connector = models.ForeignKey(
        "autonomy.Connector", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    credential = models.ForeignKey(
        "agents.Credential", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    evidence = models.JSONField(default=dict)
    decision = models.CharField(
        max_length=10, choices=Decision.choices, default=Decision.PENDING, db_index=True
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    comment = models.TextField(blank=True)

    class Meta:
        ordering = ["kind", "id"]
        indexes = [
            models.Index(
                fields=["review"], name="review_item_pending", condition=Q(decision="pending")
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.agent_id}"
