"""Humans in the loop: approval requests and the decisions people make on them."""

import uuid

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Q


class ApprovalStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"


class ExpiryOutcome(models.TextChoices):
    DENY = "deny", "Deny"
    APPROVE = "approve", "Approve"


class Channel(models.TextChoices):
    INBOX = "inbox", "Inbox"
    EMAIL = "email", "E-mail link"
    API = "api", "API"
    SYSTEM = "system", "System"


class Verdict(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"
    APPROVE_WITH_CHANGES = "approve_with_changes", "Approve with changes"
    REDIRECT = "redirect", "Redirect"


class ApprovalKind(models.TextChoices):
    ACTION = "action", "Action"
    PROMOTION = "promotion", "Rollout promotion"


class ApprovalRequest(models.Model):
    """Work that waits for people: who may decide, how many must agree, until when. The work
    is an agent's action the gate sent to people, or a rollout plan's promotion to its next
    wave; the rules (quorum, separation of duties, expiry, escalation) are the same."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    action = models.OneToOneField(
        "autonomy.ActionRequest",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="approval",
    )
    promotion = models.OneToOneField(
        "autonomy.RolloutPromotion",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="approval",
    )
    # The action's agent and its unit; empty for a promotion, which no one agent asked for.
    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    business_unit = models.ForeignKey(
        "agents.BusinessUnit", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The person who asked for it (a promotion's proposer); may approve, never alone.
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    subject = models.CharField(max_length=300)
    risk_score = models.PositiveSmallIntegerField(default=0, db_index=True)
    approver_group = models.ForeignKey(Group, on_delete=models.PROTECT, related_name="+")
    escalation_group = models.ForeignKey(
        Group, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    quorum = models.PositiveSmallIntegerField(default=1)
    approvals = models.PositiveSmallIntegerField(default=0)
    status = models.CharField(
        max_length=20, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING
    )
    expires_at = models.DateTimeField()
    expiry_outcome = models.CharField(
        max_length=10, choices=ExpiryOutcome.choices, default=ExpiryOutcome.DENY
    )
    escalate_at = models.DateTimeField(null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)
    reminded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-risk_score", "created_at"]
        indexes = [
            models.Index(fields=["status", "approver_group", "-risk_score", "created_at"],
                         name="approval_inbox"),
            models.Index(fields=["status", "expires_at"], name="approval_expiry"),
        ]  # fmt: skip
        constraints = [
            models.CheckConstraint(
                condition=Q(action__isnull=False, promotion__isnull=True)
                | Q(action__isnull=True, promotion__isnull=False),
                name="approval_for_action_or_promotion",
            )
        ]
        permissions = [("decide_approvalrequest", "Can decide approval requests")]

    def __str__(self) -> str:
        return self.subject

    @property
    def kind(self) -> str:
        return ApprovalKind.PROMOTION if self.promotion_id else ApprovalKind.ACTION

    @property
    def interested_ids(self) -> set:
        """Separation of duties: the people whose approval counts but never alone (the
        agent's owner, the person who asked for it)."""
        people = {self.requested_by_id}
        if self.agent_id:
            people.add(self.agent.owner_id)
        return people - {None}


class Decision(models.Model):
    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="decisions")
    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    verdict = models.CharField(max_length=30, choices=Verdict.choices)
    comment = models.TextField(blank=True)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    params = models.JSONField(null=True, blank=True)
    redirected_to = models.ForeignKey(
        Group, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            # One decision per person per request: a second click never counts twice.
            models.UniqueConstraint(
                fields=["request", "approver"], name="one_decision_per_approver"
            )
        ]

    def __str__(self) -> str:
        return f"{self.verdict} by {self.approver}"


class EmailLink(models.Model):
    """The server's record of a signed e-mail link: it expires here, not only in the signature,
    and is used once, then refused."""

    nonce = models.CharField(max_length=64, unique=True)
    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="links")
    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"link for {self.approver} on {self.request_id}"


class SuggestionKind(models.TextChoices):
    STANDING = "standing", "Standing approval"
    POLICY = "policy", "Policy change"


class SuggestionStatus(models.TextChoices):
    OPEN = "open", "Open"
    DISMISSED = "dismissed", "Dismissed"
    DRAFTED = "drafted", "Opened as a draft"


class Suggestion(models.Model):
    """A proposal to policy owners, learnt from history (``approvals.suggestions``): people
    kept approving one pattern (an operation asked by one agent role in one business unit)
    as asked, so a standing approval or a policy change would spare them the inbox. Its
    figures are refreshed by beat while it is open."""

    pattern_key = models.CharField(max_length=200)
    operation = models.ForeignKey("autonomy.Operation", on_delete=models.CASCADE, related_name="+")
    role = models.ForeignKey("agents.Role", on_delete=models.CASCADE, related_name="+")
    business_unit = models.ForeignKey(
        "agents.BusinessUnit", on_delete=models.CASCADE, related_name="+"
    )
    kind = models.CharField(max_length=10, choices=SuggestionKind.choices)
    status = models.CharField(
        max_length=10, choices=SuggestionStatus.choices, default=SuggestionStatus.OPEN
    )
    # Counts, window, risk and amount approved, sample request ids (``suggestions._figures``).
    evidence = models.JSONField(default=dict)
    # The proposal replayed on the recorded requests (``suggestions.Replay``).
    simulation = models.JSONField(default=dict)
    # The expected fall in inbox load: requests a day that would not have waited.
    per_day = models.FloatField(default=0)
    inbox_share = models.FloatField(default=0, help_text="of all requests that waited")
    policy = models.ForeignKey(
        "autonomy.Policy", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["-per_day", "pk"]
        constraints = [
            # Refreshing twice, or two beats at once, never proposes one pattern twice.
            models.UniqueConstraint(
                fields=["pattern_key"],
                condition=Q(status="open"),
                name="one_open_suggestion_per_pattern",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.pattern_key}"
