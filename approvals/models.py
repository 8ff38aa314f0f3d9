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


class StageStatus(models.TextChoices):
    WAITING = "waiting", "Waiting"
    PENDING = "pending", "In progress"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"


class EscalationRole(models.TextChoices):
    """The portal roles an escalation may go to (``agents.portal_roles.PortalRole``)."""

    RISK_OFFICER = "risk_officer", "Risk officer"
    APPROVER = "approver", "Approver"
    IT_ADMIN = "it_admin", "IT admin"
    AUDITOR = "auditor", "Auditor"


class ApprovalKind(models.TextChoices):
    ACTION = "action", "Action"
    PROMOTION = "promotion", "Rollout promotion"
    CHANGE = "change", "Registry change"


def _one_escalation_target() -> Q:
    """At most one of the three escalation targets: a group, a named person, a portal role."""
    group, user, role = (
        Q(escalate_to_group__isnull=False),
        Q(escalate_to_user__isnull=False),
        ~Q(escalate_to_role=""),
    )
    return ~(group & user) & ~(group & role) & ~(user & role)


class ApprovalRoute(models.Model):
    """A rule for who decides an action, in which ordered stages, and with which reminders and
    escalation. It matches on operation, business unit, risk band and amount; an empty match
    field matches anything, and ``selectors.route_for`` picks the most specific match. A route
    of one stage that names no approver group is an *escalation rule*: it changes only the
    clocks and the escalation target of the built-in default."""

    name = models.CharField(max_length=120, unique=True)
    enabled = models.BooleanField(default=True)
    operation = models.ForeignKey(
        "autonomy.Operation", null=True, blank=True, on_delete=models.CASCADE, related_name="+",
        help_text="Empty: any operation.",
    )  # fmt: skip
    business_unit = models.ForeignKey(
        "agents.BusinessUnit", null=True, blank=True, on_delete=models.CASCADE,
        related_name="+", help_text="Empty: any business unit.",
    )  # fmt: skip
    min_risk = models.PositiveSmallIntegerField(null=True, blank=True)
    max_risk = models.PositiveSmallIntegerField(null=True, blank=True)
    min_amount = models.DecimalField(
        max_digits=16, decimal_places=2, null=True, blank=True,
        help_text="Matches actions whose amount is at least this; empty: any amount.",
    )  # fmt: skip
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(min_risk__isnull=True)
                | Q(max_risk__isnull=True)
                | Q(min_risk__lte=models.F("max_risk")),
                name="route_risk_band_ordered",
            )
        ]

    def __str__(self) -> str:
        return self.name

    def label(self, stages: list["RouteStage"]) -> str:
        """How a request names the rule that applied to it."""
        only_clocks = len(stages) == 1 and stages[0].approver_group_id is None
        return f"{'Escalation rule' if only_clocks else 'Approval route'}: {self.name}"[:160]


class RouteStage(models.Model):
    """One ordered stage of a route: its approvers, quorum, clocks and escalation. Empty
    fields take the built-in default (the unit's approvers and dual-control quorum, the
    settings' clocks, escalation to risk officers)."""

    route = models.ForeignKey(ApprovalRoute, on_delete=models.CASCADE, related_name="stages")
    number = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=80, help_text="Manager, Finance, Security…")
    approver_group = models.ForeignKey(
        Group, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Empty: the business unit's approvers.",
    )  # fmt: skip
    quorum = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Empty: the unit's dual-control rule."
    )
    ttl_seconds = models.PositiveIntegerField(null=True, blank=True)
    remind_after_seconds = models.PositiveIntegerField(null=True, blank=True)
    escalate_after_seconds = models.PositiveIntegerField(null=True, blank=True)
    escalate_to_group = models.ForeignKey(
        Group, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    escalate_to_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
        related_name="+",
    )  # fmt: skip
    escalate_to_role = models.CharField(max_length=20, choices=EscalationRole.choices, blank=True)
    expiry_outcome = models.CharField(
        max_length=10, choices=ExpiryOutcome.choices, default=ExpiryOutcome.DENY
    )

    class Meta:
        ordering = ["route", "number"]
        constraints = [
            models.UniqueConstraint(fields=["route", "number"], name="one_route_stage_per_number"),
            models.CheckConstraint(
                condition=_one_escalation_target(), name="route_stage_one_escalation_target"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.number}. {self.name}"


class ApprovalRequest(models.Model):
    """Work that waits for people: who may decide, how many must agree, until when. The work
    is an agent's action the gate sent to people, a rollout plan's promotion to its next
    wave, or a registry change (``agents.RegistryChange``); the rules (quorum, separation
    of duties, expiry, escalation) are the same."""

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
    # A registry change (an agent's registration, a riskier tier, a wider grant) that takes
    # effect when approved (``agents.services.registry_change_settle``).
    change = models.OneToOneField(
        "agents.RegistryChange",
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
    escalation_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )  # fmt: skip
    # The route that set the stages and escalation, and its label when the request opened
    # ("Escalation rule: Payments over 10k"); empty: the built-in default.
    route = models.ForeignKey(
        ApprovalRoute, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    route_label = models.CharField(max_length=160, blank=True)
    # The stage that waits now, of how many. The fields above and below (approver group,
    # quorum, approvals, clocks, escalation) are the current stage's; ApprovalStage rows keep
    # each stage's plan and outcome.
    stage = models.PositiveSmallIntegerField(default=1)
    stages = models.PositiveSmallIntegerField(default=1)
    stage_name = models.CharField(max_length=80, blank=True)
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
    remind_at = models.DateTimeField(null=True, blank=True)
    reminded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    # The clock closed it: nobody decided in time (``status`` says which way it went, expired
    # or approved by its expiry outcome). Load figures count these apart from people's
    # decisions.
    expired_undecided = models.BooleanField(default=False)

    class Meta:
        ordering = ["-risk_score", "created_at"]
        indexes = [
            models.Index(fields=["status", "approver_group", "-risk_score", "created_at"],
                         name="approval_inbox"),
            models.Index(fields=["status", "expires_at"], name="approval_expiry"),
            models.Index(fields=["created_at"], name="approval_arrivals"),
            models.Index(fields=["decided_at"], name="approval_closings"),
        ]  # fmt: skip
        constraints = [
            models.CheckConstraint(
                condition=Q(action__isnull=False, promotion__isnull=True, change__isnull=True)
                | Q(action__isnull=True, promotion__isnull=False, change__isnull=True)
                | Q(action__isnull=True, promotion__isnull=True, change__isnull=False),
                name="approval_for_action_promotion_or_change",
            )
        ]
        permissions = [("decide_approvalrequest", "Can decide approval requests")]

    def __str__(self) -> str:
        return self.subject

    def get_kind_display(self) -> str:
        return ApprovalKind(self.kind).label

    @property
    def kind(self) -> str:
        if self.promotion_id:
            return ApprovalKind.PROMOTION
        return ApprovalKind.CHANGE if self.change_id else ApprovalKind.ACTION

    @property
    def routed(self) -> bool:
        """Opened under a route: its stages have ApprovalStage rows."""
        return bool(self.route_label)

    @property
    def interested_ids(self) -> set:
        """Separation of duties: the people whose approval counts but never alone (the
        agent's owner, the person who asked for it)."""
        people = {self.requested_by_id}
        if self.agent_id:
            people.add(self.agent.owner_id)
        return people - {None}


class ApprovalStage(models.Model):
    """One stage of a routed request: its plan, resolved when the request opened (so a route
    edited later changes no waiting request), and its outcome. Written only by
    ``approvals.services``; the live state of the current stage sits on the request."""

    request = models.ForeignKey(
        ApprovalRequest, on_delete=models.CASCADE, related_name="stage_track"
    )
    number = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=80)
    approver_group = models.ForeignKey(Group, on_delete=models.PROTECT, related_name="+")
    quorum = models.PositiveSmallIntegerField(default=1)
    ttl_seconds = models.PositiveIntegerField()
    remind_after_seconds = models.PositiveIntegerField()
    escalate_after_seconds = models.PositiveIntegerField()
    escalation_group = models.ForeignKey(
        Group, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    escalation_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )  # fmt: skip
    expiry_outcome = models.CharField(
        max_length=10, choices=ExpiryOutcome.choices, default=ExpiryOutcome.DENY
    )
    status = models.CharField(
        max_length=20, choices=StageStatus.choices, default=StageStatus.WAITING
    )
    started_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["request", "number"]
        constraints = [
            models.UniqueConstraint(fields=["request", "number"], name="one_stage_per_number")
        ]

    def __str__(self) -> str:
        return f"stage {self.number} ({self.name}) of {self.request_id}"


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
    stage = models.PositiveSmallIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["created_at"], name="decision_time")]
        constraints = [
            # One decision per person per request, whatever the stage: a second click never
            # counts twice, and nobody approves two stages of one request (separation of
            # duties across stages).
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
    # The stage the link was sent for: once that stage is decided, the link is refused.
    stage = models.PositiveSmallIntegerField(default=1)

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
