"""The kernel's data: connectors and operations, policies, action requests, the audit chain."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse

from autonomy import masking
from autonomy.errors import DomainError, ErrorCode


class ConnectorKind(models.TextChoices):
    ERP = "erp", "ERP"
    CRM = "crm", "CRM"
    ITSM = "itsm", "ITSM"
    SQL = "sql", "SQL database"
    HTTP = "http", "HTTP / REST"
    MCP = "mcp", "MCP server"
    EMAIL = "email", "E-mail"
    INTERNAL = "internal", "Built-in"
    # The kernel's shared memory across runs (``autonomy.memory``): one built-in connector.
    MEMORY = "memory", "Shared memory"


class DataClass(models.TextChoices):
    PUBLIC = "public", "Public"
    INTERNAL = "internal", "Internal"
    CONFIDENTIAL = "confidential", "Confidential"
    RESTRICTED = "restricted", "Restricted"


class Effect(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Write"
    DELETE = "delete", "Delete"


class Connector(models.Model):
    """A system agents may touch. Its secrets live in the connector layer, never in the API."""

    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=20, choices=ConnectorKind.choices)
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    config = models.JSONField(default=dict, blank=True, help_text="Non-secret settings.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]
        permissions = [("execute_connector", "Can run every operation of this connector")]

    def __str__(self) -> str:
        return self.name


class Operation(models.Model):
    connector = models.ForeignKey(Connector, on_delete=models.PROTECT, related_name="operations")
    slug = models.SlugField(max_length=80)
    name = models.CharField(max_length=160)
    description = models.TextField(blank=True)
    effect = models.CharField(max_length=10, choices=Effect.choices, default=Effect.READ)
    sensitivity = models.PositiveSmallIntegerField(
        default=1, help_text="1 (harmless) to 5 (can move money or delete data)."
    )
    data_class = models.CharField(
        max_length=20, choices=DataClass.choices, default=DataClass.INTERNAL
    )
    pii = models.BooleanField("touches personal data", default=False)
    financial = models.BooleanField("moves or commits money", default=False)
    params_schema = models.JSONField(
        default=dict, blank=True, help_text="JSON Schema of the parameters an agent sends."
    )
    amount_param = models.CharField(
        max_length=60, blank=True, help_text="Parameter holding a monetary amount, if any."
    )
    count_param = models.CharField(
        max_length=60, blank=True, help_text="Parameter holding a record count, if any."
    )
    config = models.JSONField(
        default=dict,
        blank=True,
        help_text="How the connector type runs it: HTTP method and path, SQL text, result schema.",
    )
    # What the gate's content rules read (``autonomy.content``): the parameters that carry
    # content that leaves (an e-mail's subject and body, a ticket comment), scanned with
    # every string nested in them; and those that name recipients (domain allow-lists).
    content_params = models.JSONField(
        default=list,
        blank=True,
        help_text='Parameters carrying content that leaves, scanned by content rules: ["body"].',
    )
    recipient_params = models.JSONField(
        default=list,
        blank=True,
        help_text='Parameters naming recipients, for domain allow-lists: ["to", "cc"].',
    )
    # The result rule: a read that answers with more records than this raises a drift flag.
    result_max_records = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most records a result may hold; empty: no bound."
    )
    result_records_key = models.CharField(
        max_length=120,
        blank=True,
        help_text='Dotted path of the records list in the result ("data.items"); empty: '
        '"data", or the result itself when it is a list.',
    )
    # Stored in full, shown masked (``autonomy.masking``): {param name or dotted path: class}.
    sensitive_params = models.JSONField(
        default=dict,
        blank=True,
        validators=[masking.validate_declaration],
        help_text='Parameters shown masked to people without "view sensitive": '
        '{"national_id": "pii", "card.number": "secret", "iban": "financial"}.',
    )
    sensitive_results = models.JSONField(
        default=dict,
        blank=True,
        validators=[masking.validate_declaration],
        help_text='Result keys shown masked, the same way: {"data.items.salary": "financial"}.',
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["connector__slug", "slug"]
        constraints = [
            models.UniqueConstraint(fields=["connector", "slug"], name="operation_unique_slug")
        ]
        permissions = [("execute_operation", "Can run this operation")]

    def __str__(self) -> str:
        return self.key

    @property
    def key(self) -> str:
        """How agents name it: ``<connector>.<operation>``."""
        return f"{self.connector.slug}.{self.slug}"


class Policy(models.Model):
    """Cedar policies, validated against the schema generated from the registry."""

    name = models.CharField(max_length=160, unique=True)
    description = models.TextField(blank=True)
    text = models.TextField(help_text="One or more Cedar policy statements.")
    enabled = models.BooleanField(default=False)
    version = models.PositiveIntegerField(default=1)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "policies"

    def __str__(self) -> str:
        return self.name


class PolicyChange(models.TextChoices):
    """What a recorded policy version did."""

    CREATED = "created", "Created"
    EDITED = "edited", "Edited"
    ENABLED = "enabled", "Enabled"
    DISABLED = "disabled", "Disabled"
    DELETED = "deleted", "Deleted"
    ROLLED_BACK = "rolled_back", "Rolled back"
    PROMOTED = "promoted", "Promoted"


class PolicyVersionImmutable(DomainError):
    """A recorded policy version (or policy-set version) is never changed or deleted."""

    status_code = 409

    def __init__(self):
        super().__init__(
            ErrorCode.POLICY_HISTORY_IMMUTABLE,
            "Policy history is immutable: versions are never changed or deleted.",
        )


class ImmutableQuerySet(models.QuerySet):
    """History rows are never removed in bulk either (``QuerySet.update`` stays: deleting a
    policy sets its versions' ``policy`` to NULL through it, and nothing else calls it)."""

    def delete(self):
        raise PolicyVersionImmutable()


class PolicyVersion(models.Model):
    """One immutable snapshot of a policy, written by ``autonomy.policy.services`` in the
    transaction of the change it records; ``(policy_key, number)`` names it even after the
    policy is deleted, and decisions name it (``Statement.ref()``'s ``version``)."""

    policy = models.ForeignKey(
        Policy, null=True, blank=True, on_delete=models.SET_NULL, related_name="versions"
    )
    policy_key = models.PositiveIntegerField(help_text="The policy's id, kept once it is deleted.")
    policy_name = models.CharField(max_length=160)
    number = models.PositiveIntegerField()
    text = models.TextField()
    description = models.TextField(blank=True)
    enabled = models.BooleanField()
    change = models.CharField(max_length=20, choices=PolicyChange.choices)
    source_number = models.PositiveIntegerField(
        null=True, blank=True, help_text="The version a rollback restored."
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    author_name = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(db_index=True)
    note = models.TextField(blank=True)
    content_hash = models.CharField(max_length=64, help_text="SHA-256 of the text.")

    objects = ImmutableQuerySet.as_manager()

    class Meta:
        ordering = ["policy_key", "-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["policy_key", "number"], name="policy_version_unique_number"
            )
        ]

    def __str__(self) -> str:
        return f"{self.policy_name} v{self.number}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise PolicyVersionImmutable()
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PolicyVersionImmutable()


class PolicySetVersion(models.Model):
    """The enabled policy set after one recorded change: ``{policy id: version number}``, so
    "which versions were in force at time T" is one row (``selectors.policies_in_force``)."""

    number = models.PositiveIntegerField(unique=True)
    created_at = models.DateTimeField(db_index=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    author_name = models.CharField(max_length=150, blank=True)
    summary = models.CharField(max_length=300)
    policies = models.JSONField(default=dict, help_text="{policy id: version number}, enabled.")

    objects = ImmutableQuerySet.as_manager()

    class Meta:
        ordering = ["-number"]

    def __str__(self) -> str:
        return f"policy set v{self.number}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise PolicyVersionImmutable()
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PolicyVersionImmutable()


class PolicyStoreState(models.Model):
    """One row whose version moves whenever policies or the registry they see change, so
    every process can tell in one query whether its compiled policy cache is stale."""

    version = models.BigIntegerField(default=1)

    def __str__(self) -> str:
        return f"policy store v{self.version}"

    @classmethod
    def current(cls) -> int:
        row = cls.objects.filter(pk=1).values_list("version", flat=True).first()
        return row or 0


class Detector(models.TextChoices):
    """What a content rule looks for (``autonomy.content.detectors``)."""

    EMAIL = "email", "E-mail addresses"
    PHONE = "phone", "Phone numbers"
    IBAN = "iban", "IBANs"
    CARD = "card", "Card numbers"
    NATIONAL_ID = "national_id", "National ids"
    SECRET = "secret", "Secrets (keys and tokens)"
    FORBIDDEN_TERMS = "forbidden_terms", "Forbidden terms"
    REQUIRED_TERMS = "required_terms", "Required terms"
    RECIPIENT_DOMAINS = "recipient_domains", "Recipient domains (allow-list)"


class ContentEffect(models.TextChoices):
    """What a match does to the decision, strongest first."""

    BLOCK = "block", "Block (deny)"
    NEEDS_APPROVAL = "needs_approval", "Needs approval"
    REDACT = "redact", "Redact (the connector receives the redacted text)"
    LOG = "log", "Log only"


class ContentRule(models.Model):
    """A rule on what agents send: a detector, its options and an effect, scoped to an
    operation, a connector, a business unit and/or a role (each empty: any). The gate reads
    the enabled rules per policy-store version (``autonomy.content.rules``): every save or
    delete moves that version, so a change holds from the next decision."""

    name = models.CharField(max_length=160, unique=True)
    detector = models.CharField(max_length=30, choices=Detector.choices)
    options = models.JSONField(
        default=dict,
        blank=True,
        help_text='{"terms": [...]} for terms, {"domains": [...]} for recipients, '
        '{"region": "GB"} for phones, {"schemes": ["us.ssn"]} for national ids.',
    )
    effect = models.CharField(max_length=20, choices=ContentEffect.choices)
    operation = models.ForeignKey(
        Operation, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    connector = models.ForeignKey(
        Connector, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    business_unit = models.ForeignKey(
        "agents.BusinessUnit", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    role = models.ForeignKey(
        "agents.Role", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            # Terms and recipients are not spans of text to replace.
            models.CheckConstraint(
                condition=~Q(effect="redact", detector__in=["required_terms", "recipient_domains"]),
                name="content_rule_redacts_text_only",
            )
        ]

    def __str__(self) -> str:
        return self.name


class ActionStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    DENIED = "denied", "Denied"
    PENDING_APPROVAL = "pending_approval", "Pending approval"
    APPROVED = "approved", "Approved"
    EXECUTING = "executing", "Executing"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    # Decided and recorded under the shadow autonomy level, and never executed.
    SHADOWED = "shadowed", "Shadowed"


class AutonomyLevel(models.TextChoices):
    """How far an agent acts on its own, most restrictive first (``autonomy.levels``)."""

    SHADOW = "shadow", "Shadow: decided and recorded, never executed"
    SUPERVISED = "supervised", "Supervised: a person approves every allowed action"
    GUARDED = "guarded", "Guarded: risk thresholds decide"
    AUTONOMOUS = "autonomous", "Autonomous: only policy and hard limits apply"


class AutonomySetting(models.Model):
    """One autonomy level set on exactly one of an agent, a role, a business unit or a
    workflow template (by its key: the kernel does not import ``workflows``), optionally
    narrowed to some operations. ``autonomy.levels.level_for`` picks the most restrictive
    that applies."""

    level = models.CharField(max_length=20, choices=AutonomyLevel.choices)
    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    role = models.ForeignKey(
        "agents.Role", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    business_unit = models.ForeignKey(
        "agents.BusinessUnit", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    template_key = models.SlugField(
        max_length=100, blank=True, help_text="a workflow template's key"
    )
    operations = models.JSONField(
        default=list,
        blank=True,
        help_text='operation keys ("erp.pay_invoice") it is narrowed to; empty: all',
    )
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(
                        agent__isnull=False,
                        role__isnull=True,
                        business_unit__isnull=True,
                        template_key="",
                    )
                    | Q(
                        agent__isnull=True,
                        role__isnull=False,
                        business_unit__isnull=True,
                        template_key="",
                    )
                    | Q(
                        agent__isnull=True,
                        role__isnull=True,
                        business_unit__isnull=False,
                        template_key="",
                    )
                    | (
                        Q(agent__isnull=True, role__isnull=True, business_unit__isnull=True)
                        & ~Q(template_key="")
                    )
                ),
                name="autonomy_setting_one_scope",
            )
        ]
        indexes = [models.Index(fields=["template_key"], name="autonomy_setting_template")]

    def __str__(self) -> str:
        return f"{self.level} on {self.scope}"

    @property
    def scope(self) -> str:
        """Where it is set, as the trace names it: "business unit finance"."""
        if self.agent_id:
            return f"agent {self.agent.slug}"
        if self.role_id:
            return f"role {self.role.slug}"
        if self.business_unit_id:
            return f"business unit {self.business_unit.slug}"
        return f"workflow template {self.template_key}"


# --- rollout in waves (``autonomy.rollouts``) -----------------------------------------------


class RolloutPlan(models.Model):
    """A controlled rollout: a group of agents (those of a role, or those acting in a
    workflow template's steps, or both) widened wave by wave. The agents the waves up to
    ``current_wave`` reach act at the current wave's level; the rest of the group at
    ``held_level``. ``current_wave`` moves only through ``autonomy.rollouts.services``: up
    through an approved promotion, down by a person or a tripped guard."""

    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=160)
    description = models.TextField(blank=True)
    role = models.ForeignKey(
        "agents.Role",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="the agents it covers: those of this role",
    )
    template_key = models.SlugField(
        max_length=100, blank=True, help_text="or those acting in this workflow template's steps"
    )
    operations = models.JSONField(
        default=list, blank=True, help_text="operation keys it is narrowed to; empty: all"
    )
    held_level = models.CharField(
        max_length=20,
        choices=AutonomyLevel.choices,
        default=AutonomyLevel.SHADOW,
        help_text="the level of the group's agents no wave has reached yet",
    )
    current_wave = models.PositiveSmallIntegerField(
        default=0, help_text="0: not started, every agent of the group is held"
    )
    wave_since = models.DateTimeField(null=True, blank=True)
    window_minutes = models.PositiveIntegerField(
        default=24 * 60, help_text="the entry criteria are measured over this window"
    )
    auto_propose = models.BooleanField(
        default=True, help_text="propose the promotion as soon as the next wave's criteria hold"
    )
    active = models.BooleanField(default=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approver_group = models.ForeignKey(
        "auth.Group",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="who approves its promotions (empty: the risk officers)",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(role__isnull=False) | ~Q(template_key=""),
                name="rollout_plan_has_group",
            )
        ]
        permissions = [("promote_rolloutplan", "Can propose and demote rollout waves")]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("rollouts:plan", args=[self.slug])


class RolloutWave(models.Model):
    """One step of a plan: whom it reaches (on top of the waves before it), the level they act
    at while it is current, what must hold to enter it, and what demotes it."""

    plan = models.ForeignKey(RolloutPlan, on_delete=models.CASCADE, related_name="waves")
    number = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=160, blank=True)
    level = models.CharField(max_length=20, choices=AutonomyLevel.choices)
    agents = models.ManyToManyField("agents.Agent", blank=True, related_name="+")
    business_units = models.ManyToManyField("agents.BusinessUnit", blank=True, related_name="+")
    everyone = models.BooleanField(default=False, help_text="reaches the plan's whole group")
    # Entry criteria, measured on the agents the previous wave reached, over the plan's
    # window. Empty: not required.
    min_actions = models.PositiveIntegerField(default=0)
    max_denial_ratio = models.FloatField(null=True, blank=True)
    max_failure_ratio = models.FloatField(null=True, blank=True)
    max_open_drift_flags = models.PositiveIntegerField(null=True, blank=True)
    max_override_ratio = models.FloatField(null=True, blank=True)
    # Guards while it is current: this many failures within the guard window, or any new
    # drift flag, demote the plan to the wave before it at once.
    guard_failures = models.PositiveIntegerField(null=True, blank=True)
    guard_window_minutes = models.PositiveIntegerField(default=10)
    guard_drift_flag = models.BooleanField(default=False)

    class Meta:
        ordering = ["plan", "number"]
        constraints = [
            models.UniqueConstraint(fields=["plan", "number"], name="rollout_wave_number"),
            models.CheckConstraint(condition=Q(number__gte=1), name="rollout_wave_from_one"),
        ]

    def __str__(self) -> str:
        return f"wave {self.number}" + (f" ({self.name})" if self.name else "")


class PromotionStatus(models.TextChoices):
    PENDING = "pending", "Waiting for approval"
    APPROVED = "approved", "Approved and carried out"
    REJECTED = "rejected", "Rejected"
    VOID = "void", "Void: the plan moved while it waited"


class RolloutPromotion(models.Model):
    """A proposal to move a plan up one wave, with the figures that justified it. Carried out
    only when the approval it opened (``approvals``) is granted."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    plan = models.ForeignKey(RolloutPlan, on_delete=models.CASCADE, related_name="promotions")
    from_wave = models.PositiveSmallIntegerField()
    to_wave = models.PositiveSmallIntegerField()
    figures = models.JSONField(default=dict)
    status = models.CharField(
        max_length=10, choices=PromotionStatus.choices, default=PromotionStatus.PENDING
    )
    proposed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One promotion waits per plan at a time.
            models.UniqueConstraint(
                fields=["plan"], condition=Q(status="pending"), name="one_pending_promotion"
            )
        ]

    def __str__(self) -> str:
        return f"{self.plan}: wave {self.from_wave} → {self.to_wave} ({self.status})"


class RolloutEventKind(models.TextChoices):
    PROPOSED = "proposed", "Promotion proposed"
    PROMOTED = "promoted", "Promoted"
    REJECTED = "rejected", "Promotion rejected"
    VOIDED = "voided", "Promotion void"
    DEMOTED = "demoted", "Demoted"
    GUARD_TRIPPED = "guard_tripped", "Guard tripped"


class RolloutEvent(models.Model):
    """The plan's history: every change of its wave, who made it and why."""

    plan = models.ForeignKey(RolloutPlan, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=RolloutEventKind.choices)
    from_wave = models.PositiveSmallIntegerField()
    to_wave = models.PositiveSmallIntegerField()
    actor = models.CharField(max_length=200)
    reason = models.TextField(blank=True)
    figures = models.JSONField(default=dict, blank=True)
    promotion = models.ForeignKey(
        RolloutPromotion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["plan", "-created_at"], name="rollout_event_plan")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: wave {self.from_wave} → {self.to_wave}"


class RolloutMeasurement(models.Model):
    """A plan's figures and its next wave's criteria at one moment (measured on beat), for
    the charts over time on the plan's page."""

    plan = models.ForeignKey(RolloutPlan, on_delete=models.CASCADE, related_name="measurements")
    wave = models.PositiveSmallIntegerField(help_text="the current wave when measured")
    at = models.DateTimeField()
    figures = models.JSONField(default=dict)
    met = models.BooleanField(default=False)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["plan", "-at"], name="rollout_measure_plan")]

    def __str__(self) -> str:
        return f"{self.plan} at {self.at:%Y-%m-%d %H:%M}"


class Verdict(models.TextChoices):
    ALLOW = "allow", "Allow"
    DENY = "deny", "Deny"
    NEEDS_APPROVAL = "needs_approval", "Needs approval"


class HumanDecision(models.TextChoices):
    APPROVED = "approved", "Approved as asked"
    CHANGED = "changed", "Approved with changes"
    REJECTED = "rejected", "Rejected"


class ActionRequest(models.Model):
    """One thing an agent asked to do, the gate's decision, and what happened."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: ``action_agent_time`` (agent, created_at) leads with it, and every
    # index is one more write on the gate's path.
    agent = models.ForeignKey(
        "agents.Agent", on_delete=models.PROTECT, related_name="actions", db_index=False
    )
    # No index either: nothing looks actions up by credential, and credentials are revoked,
    # never deleted (the admin refuses), so SET_NULL never has to find their actions.
    credential = models.ForeignKey(
        "agents.Credential",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    operation = models.ForeignKey(Operation, on_delete=models.PROTECT, related_name="actions")
    params = models.JSONField(default=dict)
    reason = models.TextField(blank=True)
    # NULL, not "", when absent: the unique constraint must ignore actions without a key.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    request_hash = models.CharField(max_length=64, blank=True)
    verdict = models.CharField(max_length=20, choices=Verdict.choices)
    status = models.CharField(max_length=20, choices=ActionStatus.choices, db_index=True)
    risk_score = models.PositiveSmallIntegerField(default=0)
    risk_factors = models.JSONField(default=list)
    reasons = models.JSONField(default=list)
    policy_ids = models.JSONField(default=dict)
    amount = models.DecimalField(max_digits=18, decimal_places=2, null=True, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    # The W3C trace the decision belongs to (the agent's, when it sent a traceparent), so
    # the trace page and the API lead to the same trace in the tracing backend.
    trace_id = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(db_index=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # The worker process (host:pid) executing it, when a worker with a heartbeat runs it
    # (``autonomy.liveness``): the sweep sends it again as soon as that worker stops
    # beating, not only when its execution lease runs out. A workflow step's action names
    # none: the step is what its sweep takes back.
    worker = models.CharField(max_length=200, blank=True, default="")
    outcome = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    # The autonomy level it was decided at (``autonomy.levels``).
    autonomy_level = models.CharField(
        max_length=20, choices=AutonomyLevel.choices, default=AutonomyLevel.GUARDED
    )
    # The workflow template a step's action was asked for (its key: the kernel does not
    # import ``workflows``), so deciding it again on release applies the template's level.
    template_key = models.CharField(max_length=80, blank=True, default="")
    # What people answered when it waited for them (``HumanDecision``), for the override
    # ratio of rollouts; empty when it never waited or nobody answered.
    human_decision = models.CharField(
        max_length=10, choices=HumanDecision.choices, blank=True, default="", db_default=""
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="action_unique_idempotency_key",
            )
        ]
        indexes = [
            # An agent's actions by time: its page, its API list, drift baselines. The gate
            # reads ``AgentUsage`` instead.
            models.Index(fields=["agent", "created_at"], name="action_agent_time")
        ]
        permissions = [
            ("view_sensitive", "Can see the sensitive parameters and results of actions")
        ]

    def __str__(self) -> str:
        return f"{self.operation} by {self.agent} ({self.status})"

    @property
    def executed(self) -> bool:
        """Whether its connector was called (or is being called); a shadowed action never
        is."""
        return self.started_at is not None


class AgentUsage(models.Model):
    """One agent's decided actions in one minute: what the gate's rate limit, denial count
    and daily budget read (``autonomy.usage``), so that a decision costs the same for an
    agent's thousandth action of the day as for its first. Written in the transaction that
    records each action; rows older than ``AUTONOMY_USAGE_KEEP_DAYS`` are pruned by beat."""

    # No index of its own: the unique (agent, minute) constraint leads with it.
    agent = models.ForeignKey(
        "agents.Agent", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    minute = models.DateTimeField()
    actions = models.PositiveIntegerField(default=0, help_text="allowed or sent to approval")
    denials = models.PositiveIntegerField(default=0)
    spend = models.DecimalField(
        max_digits=20, decimal_places=2, default=0, help_text="amounts of allowed actions"
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["agent", "minute"], name="one_usage_row")]
        indexes = [models.Index(fields=["minute"], name="usage_minute")]

    def __str__(self) -> str:
        return f"{self.agent_id} {self.minute:%H:%M} {self.actions}/{self.denials}"


class StandingApproval(models.Model):
    """A bounded, time-boxed pre-approval a person granted (``autonomy.standing``): actions of
    ``operation`` by the agents in its scope (one agent; or a role, a business unit or both),
    up to ``max_risk`` (and ``max_amount``), at most ``daily_limit`` a day, between
    ``starts_at`` and ``expires_at``, are allowed where the gate would otherwise ask a person
    for the risk threshold or an approval policy. Never lifts a denial. Every save or delete
    moves the policy-store version, so a grant or a revocation holds from the next decision."""

    operation = models.ForeignKey(Operation, on_delete=models.CASCADE, related_name="+")
    role = models.ForeignKey(
        "agents.Role", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    business_unit = models.ForeignKey(
        "agents.BusinessUnit", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    max_risk = models.PositiveSmallIntegerField(help_text="the highest risk score it allows")
    max_amount = models.DecimalField(max_digits=18, decimal_places=2, null=True, blank=True)
    daily_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="actions a day (UTC) it allows; empty: no daily bound"
    )
    starts_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    revoke_reason = models.CharField(max_length=500, blank=True)
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.CharField(max_length=500, help_text="why it was granted")
    # The approval request it was granted from (no foreign key: the kernel does not import
    # ``approvals``).
    source_request_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(agent__isnull=False, role__isnull=True, business_unit__isnull=True)
                | Q(agent__isnull=True, role__isnull=False)
                | Q(agent__isnull=True, business_unit__isnull=False),
                name="standing_approval_scope",
            ),
            models.CheckConstraint(
                condition=Q(expires_at__gt=models.F("starts_at")),
                name="standing_approval_time_box",
            ),
        ]
        indexes = [models.Index(fields=["expires_at"], name="standing_approval_expiry")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.summary}"

    @property
    def scope(self) -> str:
        """Who it covers, as pages name it: "role it-provisioner in business unit it"."""
        if self.agent_id:
            return f"agent {self.agent.slug}"
        parts = [f"role {self.role.slug}"] if self.role_id else []
        if self.business_unit_id:
            parts.append(f"business unit {self.business_unit.slug}")
        return " in ".join(parts)

    @property
    def summary(self) -> str:
        """One line: "role x may call hr.read_employee, risk ≤ 60, up to 200 a day"."""
        bounds = [f"risk ≤ {self.max_risk}"]
        if self.max_amount is not None:
            bounds.append(f"amount ≤ {self.max_amount}")
        if self.daily_limit is not None:
            bounds.append(f"up to {self.daily_limit} a day")
        return f"{self.scope} may call {self.operation.key}, {', '.join(bounds)}"

    def state(self, at) -> str:
        """active, scheduled, expired or revoked at ``at``."""
        if self.revoked_at is not None:
            return "revoked"
        if at >= self.expires_at:
            return "expired"
        return "active" if at >= self.starts_at else "scheduled"


class StandingApprovalUse(models.Model):
    """How many actions one standing approval allowed on one day (UTC): the row its daily
    bound is enforced on (``autonomy.standing.services.standing_consume``)."""

    standing = models.ForeignKey(
        StandingApproval, on_delete=models.CASCADE, related_name="uses", db_index=False
    )
    day = models.DateField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["standing", "day"], name="one_standing_use_row")
        ]

    def __str__(self) -> str:
        return f"{self.standing_id} {self.day} {self.count}"


class TrialKind(models.TextChoices):
    POLICY = "policy", "One draft policy (new, or replacing one)"
    SET = "set", "A whole draft set (replacing the enabled policies)"


class TrialStatus(models.TextChoices):
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"
    PROMOTED = "promoted", "Promoted"


class PolicyTrial(models.Model):
    """A log-only trial (``autonomy.policy.trials``): draft policies decide beside the enabled
    ones on live traffic, and every decision where they would differ is recorded; the
    outcome never changes."""

    name = models.CharField(max_length=160)
    kind = models.CharField(max_length=10, choices=TrialKind.choices, default=TrialKind.POLICY)
    # [{"name": ..., "text": ...}]: one for ``policy``, one or more for ``set``.
    drafts = models.JSONField(default=list)
    # The enabled policy one draft replaces (``policy`` kind); none for a new policy.
    replaces = models.ForeignKey(
        Policy, null=True, blank=True, on_delete=models.SET_NULL, related_name="trials"
    )
    status = models.CharField(
        max_length=10, choices=TrialStatus.choices, default=TrialStatus.RUNNING, db_index=True
    )
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)
    promoted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    promoted_at = models.DateTimeField(null=True, blank=True)
    # Decisions on which the draft failed to evaluate (the live decision went on unharmed).
    errors = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"trial {self.name} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("trials:detail", args=[self.pk])


class TrialDifference(models.Model):
    """One live decision a trial's draft would have decided otherwise: written with the
    action, in its transaction, only when the verdicts differ."""

    # No index of its own: ``trial_difference_time`` (trial, created_at) leads with it.
    trial = models.ForeignKey(
        PolicyTrial, on_delete=models.CASCADE, related_name="differences", db_index=False
    )
    action = models.ForeignKey("ActionRequest", on_delete=models.CASCADE, related_name="+")
    agent = models.ForeignKey(
        "agents.Agent", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    operation = models.ForeignKey(
        Operation, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    business_unit = models.ForeignKey(
        "agents.BusinessUnit", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    live_verdict = models.CharField(max_length=20, choices=Verdict.choices)
    draft_verdict = models.CharField(max_length=20, choices=Verdict.choices)
    draft_reasons = models.JSONField(default=list)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["trial", "created_at"], name="trial_difference_time")]

    def __str__(self) -> str:
        return f"{self.live_verdict} → {self.draft_verdict} (trial {self.trial_id})"


class ConnectorSecret(models.Model):
    """A connector's credential, encrypted at rest (``autonomy.connectors.vault``). Only the
    connector layer decrypts it, inside a call; no page or API ever shows the value."""

    connector = models.ForeignKey(Connector, on_delete=models.CASCADE, related_name="secrets")
    name = models.SlugField(max_length=60)
    ciphertext = models.TextField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["connector__slug", "name"]
        constraints = [
            models.UniqueConstraint(fields=["connector", "name"], name="connector_secret_unique")
        ]

    def __str__(self) -> str:
        return f"{self.connector.slug}/{self.name}"


class CallState(models.TextChoices):
    STARTED = "started", "Started (outcome unknown until done)"
    DONE = "done", "Done"


class ConnectorCall(models.Model):
    """A side effect a connector performed, keyed by the action's id: a redelivered task
    finds the receipt and never calls the system twice. ``started`` is an intent recorded
    before a side effect that has no idempotency key of its own (e-mail, SQL writes)."""

    idempotency_key = models.CharField(max_length=200, unique=True)
    operation = models.ForeignKey(Operation, on_delete=models.PROTECT, related_name="+")
    params = models.JSONField(default=dict)
    result = models.JSONField(default=dict)
    state = models.CharField(max_length=10, choices=CallState.choices, default=CallState.DONE)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.idempotency_key


class AuditRecord(models.Model):
    """Append-only. Appended unsealed (no ``seq``), with a MAC over its content keyed outside
    the database (``key_id`` names the key); the sealer then gives it the next ``seq`` and
    chains it: its hash covers seq, ``prev_hash``, MAC and content (``autonomy.audit``)."""

    seq = models.BigIntegerField(unique=True, null=True, blank=True)
    created_at = models.DateTimeField(db_index=True)
    kind = models.CharField(max_length=40, db_index=True)
    actor = models.CharField(max_length=200, blank=True)
    agent_id = models.UUIDField(null=True, blank=True, db_index=True)
    action_id = models.UUIDField(null=True, blank=True, db_index=True)
    payload = models.JSONField(default=dict)
    key_id = models.CharField(max_length=16, blank=True)
    mac = models.CharField(max_length=64, blank=True)
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64, blank=True)

    class Meta:
        # Trail order; records not sealed yet follow, in the order they were appended.
        ordering = [models.F("seq").asc(nulls_last=True), "id"]
        indexes = [
            # The sealer's queue: only unsealed rows are in it, so it stays small.
            models.Index(fields=["id"], condition=Q(seq__isnull=True), name="audit_unsealed")
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.kind}" if self.seq else f"(unsealed) {self.kind}"


class AuditHead(models.Model):
    """The sealed chain's tip. Only the sealer reads and moves it (locking this row); appends
    never touch it."""

    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"audit head #{self.seq}"


class InterventionKind(models.TextChoices):
    PAUSE = "pause", "Pause"
    RESUME = "resume", "Resume"
    QUARANTINE = "quarantine", "Quarantine"
    KILL = "kill", "Kill"
    EMERGENCY_STOP = "emergency_stop", "Emergency stop"
    EMERGENCY_LIFT = "emergency_lift", "Emergency stop lifted"
    OVERRIDE = "override", "Override a pending decision"
    REDIRECT = "redirect", "Redirect a step"


class InterventionScope(models.TextChoices):
    AGENT = "agent", "One agent"
    BUSINESS_UNIT = "business_unit", "A business unit"
    FLEET = "fleet", "The whole fleet"


class Intervention(models.Model):
    """A person stepping in: who, on what, why, and (for a stop) when it was lifted."""

    kind = models.CharField(max_length=20, choices=InterventionKind.choices)
    scope = models.CharField(max_length=20, choices=InterventionScope.choices)
    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    business_unit = models.ForeignKey(
        "agents.BusinessUnit", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.TextField()
    details = models.JSONField(default=dict, blank=True)
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["kind", "lifted_at"], name="intervention_open")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.scope}) by {self.by}"


class ActivityRollup(models.Model):
    """Actions per minute by business unit, operation and verdict: the dashboard reads these
    pre-aggregated rows instead of scanning every action."""

    minute = models.DateTimeField()
    business_unit = models.ForeignKey(
        "agents.BusinessUnit", on_delete=models.CASCADE, related_name="+"
    )
    operation = models.ForeignKey(Operation, on_delete=models.CASCADE, related_name="+")
    verdict = models.CharField(max_length=20, choices=Verdict.choices)
    count = models.PositiveIntegerField(default=0)
    risk_sum = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["minute", "business_unit", "operation", "verdict"], name="one_rollup_row"
            )
        ]
        indexes = [models.Index(fields=["minute", "verdict"], name="rollup_minute")]

    def __str__(self) -> str:
        return f"{self.minute:%H:%M} {self.verdict} {self.count}"


class WorkerBeat(models.Model):
    """A worker process that executes actions and workflow steps, and when it last said it
    was alive (``autonomy.liveness``). A row whose beat is older than
    ``AUTONOMY_WORKER_LOST_SECONDS`` is a worker that died or hangs."""

    name = models.CharField(max_length=200, primary_key=True)  # host:pid
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return self.name


class MemoryEntry(models.Model):
    """One thing agents remember across runs ("customer 4411 prefers e-mail"), in exactly one
    scope: a business unit, a role, or a workflow template (by its key: the kernel does not
    import ``workflows``). Agents read and write it only through the gate (the ``memory``
    connector's operations); who may see which scope is ``autonomy.memory.selectors``. The
    provenance (agent, action, template) says who wrote it last, so everything an agent
    later found poisoned wrote is purged in one step (``memory_purge``)."""

    business_unit = models.ForeignKey(
        "agents.BusinessUnit", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    role = models.ForeignKey(
        "agents.Role", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    template_key = models.SlugField(
        max_length=100, blank=True, help_text="a workflow template's key"
    )
    key = models.CharField(max_length=200)
    value = models.JSONField()
    sensitivity = models.CharField(
        max_length=20, choices=DataClass.choices, default=DataClass.INTERNAL
    )
    # provenance: the agent and the action that wrote it last, and the template it acted for
    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.ForeignKey(
        ActionRequest,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    action_template_key = models.CharField(
        max_length=80, blank=True, help_text="the workflow template the writing action acted for"
    )
    # a person who corrected it in the portal, last
    written_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    expires_at = models.DateTimeField(help_text="never returned after this; pruned on beat")

    class Meta:
        ordering = ["key", "pk"]
        verbose_name = "memory entry"
        verbose_name_plural = "memory entries"
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(business_unit__isnull=False, role__isnull=True, template_key="")
                    | Q(business_unit__isnull=True, role__isnull=False, template_key="")
                    | (Q(business_unit__isnull=True, role__isnull=True) & ~Q(template_key=""))
                ),
                name="memory_entry_one_scope",
            ),
            # One entry per key in each scope; each also serves reads by key and by prefix.
            models.UniqueConstraint(
                fields=["business_unit", "key"],
                condition=Q(business_unit__isnull=False),
                name="memory_unit_key",
            ),
            models.UniqueConstraint(
                fields=["role", "key"], condition=Q(role__isnull=False), name="memory_role_key"
            ),
            models.UniqueConstraint(
                fields=["template_key", "key"],
                condition=~Q(template_key=""),
                name="memory_template_key",
            ),
        ]
        indexes = [models.Index(fields=["expires_at"], name="memory_expiry")]
        permissions = [("purge_memoryentry", "Can purge memory entries by their provenance")]

    def __str__(self) -> str:
        return f"{self.scope}: {self.key}"

    @property
    def scope(self) -> str:
        """Where it lives, as people read it: "business unit customer-ops"."""
        if self.business_unit_id:
            return f"business unit {self.business_unit.slug}"
        if self.role_id:
            return f"role {self.role.slug}"
        return f"workflow template {self.template_key}"
