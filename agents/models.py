"""Who acts: business units, roles, agents and their credentials."""

import uuid

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Q
from django.utils import timezone


class RiskTier(models.IntegerChoices):
    LOW = 1, "Low"
    MEDIUM = 2, "Medium"
    HIGH = 3, "High"
    CRITICAL = 4, "Critical"


class BusinessUnit(models.Model):
    """A part of the business that agents work for.

    Its ``owner`` is the person who answers for its agents: registering one, raising one's
    risk tier or widening its grants waits for the owner's approval, then for security's
    (the portal's risk officers, ``agents.portal_roles.PortalRole.RISK_OFFICER``); see
    ``agents.services.registry_change_request``."""

    name = models.CharField(max_length=120, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    description = models.TextField(blank=True)
    # Risk scores (0-100) at or above these need a person, or are refused outright.
    approval_threshold = models.PositiveSmallIntegerField(default=50)
    deny_threshold = models.PositiveSmallIntegerField(default=85)
    # Who decides this unit's approvals (empty: the portal's Approvers), and how many of them
    # must agree when the risk is at or above the dual-control score.
    approver_group = models.ForeignKey(
        Group, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    dual_control_risk = models.PositiveSmallIntegerField(default=70)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_units",
        help_text="Approves first when an agent of this unit is registered or widened.",
    )
    # A new drift flag on one of this unit's agents quarantines the agent at once.
    auto_quarantine_on_drift = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.Model):
    """An agent role: a Django group (so guardian grants can target it) plus its profile."""

    group = models.OneToOneField(Group, on_delete=models.PROTECT, related_name="agent_role")
    slug = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    default_risk_tier = models.IntegerField(choices=RiskTier.choices, default=RiskTier.MEDIUM)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.group.name


class Blueprint(models.Model):
    """A template that stamps many agents at once and changes them together
    (``agents.blueprints``): their role, risk tier, limits, the role's grants (operation keys)
    and policies, and an autonomy level set on the role.

    ``policies`` are Cedar texts in which ``{{role}}`` stands for the blueprint's role entity
    (``Role::"<slug>"``); each is saved as a ``Policy`` named ``Blueprint <slug> #<n>``
    through ``policy_save``, so it is validated like any other policy. ``version`` moves on
    every change; each agent records the version last applied to it."""

    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    role = models.ForeignKey(Role, on_delete=models.PROTECT, related_name="blueprints")
    risk_tier = models.IntegerField(choices=RiskTier.choices, default=RiskTier.MEDIUM)
    autonomy_level = models.CharField(
        max_length=20, blank=True, help_text="set on the role; empty: none set"
    )
    max_actions_per_minute = models.PositiveIntegerField(null=True, blank=True)
    max_daily_spend = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    operations = models.JSONField(
        default=list, blank=True, help_text='operation keys granted to the role ("erp.pay")'
    )
    policies = models.JSONField(
        default=list, blank=True, help_text='Cedar texts; {{role}} stands for Role::"<slug>"'
    )
    version = models.PositiveIntegerField(default=1)
    # The autonomy setting (on the role) this blueprint keeps; replaced when the level changes.
    autonomy_setting = models.ForeignKey(
        "autonomy.AutonomySetting",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name


class AgentStatus(models.TextChoices):
    # Registered, waiting for its unit's owner and security to approve (``RegistryChange``).
    PENDING = "pending", "Awaiting approval"
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    QUARANTINED = "quarantined", "Quarantined"
    RETIRED = "retired", "Retired"


class Agent(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_agents"
    )
    business_unit = models.ForeignKey(BusinessUnit, on_delete=models.PROTECT, related_name="agents")
    role = models.ForeignKey(Role, on_delete=models.PROTECT, related_name="agents")
    status = models.CharField(
        max_length=20, choices=AgentStatus.choices, default=AgentStatus.ACTIVE, db_index=True
    )
    status_reason = models.CharField(max_length=500, blank=True)
    status_changed_at = models.DateTimeField(default=timezone.now)
    risk_tier = models.IntegerField(choices=RiskTier.choices, default=RiskTier.MEDIUM)
    # Limits the gate enforces; empty means the platform default (settings).
    max_actions_per_minute = models.PositiveIntegerField(null=True, blank=True)
    max_daily_spend = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    # One principal for guardian grants, auditlog actors and IdP identities.
    service_user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="agent"
    )
    # The IdP client id an agent uses for OIDC bearer tokens (client credentials grant).
    oidc_client_id = models.CharField(max_length=200, unique=True, null=True, blank=True)
    # Set when every credential is revoked (kill, revoke-all, retire): the IdP knows nothing of
    # that revocation, so its tokens are refused by their issue time instead.
    tokens_valid_after = models.DateTimeField(
        null=True,
        blank=True,
        verbose_name="IdP tokens valid after",
        help_text="IdP bearer tokens issued at or before this time are refused.",
    )
    # The blueprint the agent was stamped from, and the blueprint version last applied to it.
    blueprint = models.ForeignKey(
        "Blueprint", null=True, blank=True, on_delete=models.SET_NULL, related_name="agents"
    )
    blueprint_version = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["business_unit", "status"])]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status == AgentStatus.ACTIVE


class RegistryChangeKind(models.TextChoices):
    REGISTER = "register", "Register an agent"
    RAISE_TIER = "raise_tier", "Raise a risk tier"
    WIDEN_GRANT = "widen_grant", "Widen a grant"


class RegistryChangeStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"


class RegistryChange(models.Model):
    """A change to the registry that takes effect only once people approve it: an agent's
    registration, a riskier tier, or a new grant to an agent or a role. Written only by
    ``agents.services`` (``registry_change_request`` / ``registry_change_settle``).

    ``payload`` says what is asked: for ``raise_tier`` the tiers (``from``, ``to``); for
    ``widen_grant`` the target (``model``: operation or connector, ``pk``, ``name``) and the
    grantee (``to``: "agent" or "role:<slug>")."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=20, choices=RegistryChangeKind.choices)
    # The agent it is about; empty for a grant to a role.
    agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.CASCADE, related_name="registry_changes"
    )
    role = models.ForeignKey(
        Role, null=True, blank=True, on_delete=models.CASCADE, related_name="registry_changes"
    )
    business_unit = models.ForeignKey(
        BusinessUnit, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    payload = models.JSONField(default=dict)
    status = models.CharField(
        max_length=20,
        choices=RegistryChangeStatus.choices,
        default=RegistryChangeStatus.PENDING,
        db_index=True,
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-requested_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(agent__isnull=False) | Q(kind="widen_grant", role__isnull=False),
                name="registry_change_names_its_subject",
            ),
            # One riskier tier waits per agent at a time: a second ask replaces nothing.
            models.UniqueConstraint(
                fields=["agent"],
                condition=Q(status="pending", kind="raise_tier"),
                name="one_pending_tier_raise_per_agent",
            ),
        ]

    def __str__(self) -> str:
        return self.summary

    @property
    def summary(self) -> str:
        """One line saying what is asked, for the inbox and the audit trail."""
        who = self.agent.name if self.agent_id else f"role {self.role}"
        if self.kind == RegistryChangeKind.REGISTER:
            return f"Register {who}"
        if self.kind == RegistryChangeKind.RAISE_TIER:
            tiers = RiskTier(self.payload["from"]).label, RiskTier(self.payload["to"]).label
            return f"Raise {who}'s risk tier {tiers[0]} → {tiers[1]}"
        return f"Grant {who} {self.payload.get('name', '?')}"


class Scope(models.TextChoices):
    """What a credential may be used for. Checked on every request by the API."""

    AGENT_READ = "agent:read", "Read its own identity"
    ACTIONS_WRITE = "actions:write", "Request actions"
    TASKS_WRITE = "tasks:write", "Pull and complete workflow tasks"


class StoredToken:
    """What an agent's Credential and a person's PersonalToken share: a token is live until
    it is revoked or its expiry (if it has one) passes."""

    def state(self, now=None) -> str:
        now = now or timezone.now()
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


class Credential(StoredToken, models.Model):
    """An API token. Only the prefix is stored in clear; the rest as a SHA-256 digest.

    Tokens carry 256 bits of randomness, so a fast hash is enough (no password stretching):
    nobody can brute-force the pre-image, and lookups stay cheap on every request.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="credentials")
    name = models.CharField(max_length=120, default="default")
    prefix = models.CharField(max_length=16, unique=True)
    token_hash = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=500, blank=True)
    rotated_from = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="rotated_to"
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["agent"], name="credential_live_by_agent", condition=Q(revoked_at=None)
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class PersonalTokenScope(models.TextChoices):
    """What a person's token may do, on top of (never beyond) that person's permissions."""

    READ = "api:read", "Read (GET, HEAD, OPTIONS)"
    WRITE = "api:write", "Write (POST, PUT, PATCH, DELETE)"


class PersonalToken(StoredToken, models.Model):
    """A person's API token, for admins and integrations: it authenticates as its user, with
    that user's permissions narrowed by its scopes. Stored like an agent's Credential (prefix
    in clear, SHA-256 digest of the rest), and it always expires."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="personal_tokens"
    )
    name = models.CharField(max_length=120)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    token_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


# --- behaviour monitoring -------------------------------------------------------------------


class AgentBaseline(models.Model):
    """What an agent normally does, learned from its recent history (``agents.behaviour``).

    ``accepted`` keeps what people said is fine (dismissed flags: a connector, an hour, a data
    class, a rate); it survives relearning, so a dismissed flag does not come back.
    """

    agent = models.OneToOneField(Agent, on_delete=models.CASCADE, related_name="baseline")
    connectors = models.JSONField(default=dict, help_text="connector slug -> actions")
    operations = models.JSONField(default=dict, help_text="operation key -> actions")
    hours = models.JSONField(default=list, help_text="actions per hour of day (UTC), 24 slots")
    rate_mean = models.FloatField(default=0, help_text="actions per active hour, mean")
    rate_stdev = models.FloatField(default=0)
    rate_p95 = models.FloatField(default=0, help_text="actions per active hour, 95th percentile")
    denial_ratio = models.FloatField(default=0)
    max_data_class = models.CharField(max_length=20, blank=True)
    sample_size = models.PositiveIntegerField(default=0)
    window_days = models.PositiveSmallIntegerField(default=14)
    accepted = models.JSONField(default=dict, blank=True)
    learned_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"baseline of {self.agent_id} ({self.sample_size} actions)"


class DriftKind(models.TextChoices):
    FIRST_CONNECTOR = "first_connector", "First use of a connector"
    RATE_SPIKE = "rate_spike", "Rate spike"
    DENIAL_BURST = "denial_burst", "Denial burst"
    UNUSUAL_HOUR = "unusual_hour", "Unusual hour"
    DATA_CLASS_ESCALATION = "data_class_escalation", "Data-class escalation"
    RESULT_BOUND = "result_bound", "Result over its declared bound"


class FlagStatus(models.TextChoices):
    OPEN = "open", "Open"
    CONFIRMED = "confirmed", "Confirmed"
    DISMISSED = "dismissed", "Dismissed"


class DriftFlag(models.Model):
    """A deviation from the agent's baseline, with what was seen against what is normal."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="drift_flags")
    kind = models.CharField(max_length=30, choices=DriftKind.choices)
    # What the deviation is about: a connector slug, an hour, a data class; "" for rates.
    subject = models.CharField(max_length=120, blank=True)
    status = models.CharField(max_length=20, choices=FlagStatus.choices, default=FlagStatus.OPEN)
    evidence = models.JSONField(default=dict)
    score = models.PositiveSmallIntegerField(default=10, help_text="risk points while open")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Also the index behind the gate's "open flags of this agent" subquery.
            models.UniqueConstraint(
                fields=["agent", "kind", "subject"],
                condition=Q(status="open"),
                name="one_open_drift_flag",
            )
        ]
        indexes = [models.Index(fields=["agent", "created_at"], name="drift_flag_agent_recent")]

    def __str__(self) -> str:
        label = self.get_kind_display()
        return f"{label}: {self.subject}" if self.subject else label
