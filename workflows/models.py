"""Workflows: reusable templates of steps, the runs that execute them, and coordination.

A published template version is immutable and runs pin it. Each step of a run is a
``StepRun`` whose id is the idempotency key of everything it does, so a redelivered Celery
task never causes a second side effect. ``Claim`` rows give one holder per resource key.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class TemplateStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    PUBLISHED = "published", "Published"
    ARCHIVED = "archived", "Archived"


class Template(models.Model):
    """One version of a reusable workflow. ``key`` names the workflow across its versions."""

    key = models.SlugField(max_length=80)
    version = models.PositiveIntegerField(default=1)
    name = models.CharField(max_length=160)
    description = models.TextField(blank=True)
    business_unit = models.ForeignKey(
        "agents.BusinessUnit", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    status = models.CharField(
        max_length=12, choices=TemplateStatus.choices, default=TemplateStatus.DRAFT
    )
    origin = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="clones",
        help_text="The template this one was cloned from.",
    )
    context_schema = models.JSONField(
        default=dict, blank=True, help_text="JSON Schema a run's starting context must satisfy."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["key", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["key", "version"], name="one_template_per_version")
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def is_published(self) -> bool:
        return self.status == TemplateStatus.PUBLISHED


class StepKind(models.TextChoices):
    OPERATION = "operation", "Operation through the gate"
    TASK = "task", "Task for an agent"


class Approval(models.TextChoices):
    NEVER = "never", "Never"
    ALWAYS = "always", "Always"
    WHEN = "when", "When the condition holds"


class Step(models.Model):
    """A node of the template's DAG."""

    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="steps")
    key = models.SlugField(max_length=80)
    name = models.CharField(max_length=160)
    kind = models.CharField(max_length=10, choices=StepKind.choices, default=StepKind.OPERATION)
    operation = models.ForeignKey(
        "autonomy.Operation", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    instructions = models.TextField(blank=True, help_text="What the agent is asked to do.")
    assignee_role = models.ForeignKey(
        "agents.Role", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    assignee_agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    depends_on = models.JSONField(default=list, blank=True, help_text="Keys of earlier steps.")
    input_map = models.JSONField(
        default=dict,
        blank=True,
        help_text='Parameters from the run context: {"amount": "$.invoice.amount"}; '
        "other values are literals.",
    )
    run_when = models.CharField(
        max_length=300, blank=True, help_text='Run only if this holds, e.g. "amount > 0".'
    )
    approval = models.CharField(max_length=8, choices=Approval.choices, default=Approval.NEVER)
    approval_when = models.CharField(
        max_length=300, blank=True, help_text='e.g. "invoice.amount > 10000"'
    )
    visible_context = models.JSONField(
        default=list,
        blank=True,
        help_text="Top-level context keys the assignee may read (inputs are always visible).",
    )
    output_key = models.CharField(
        max_length=80, blank=True, help_text="Where the output goes in the context (step key)."
    )
    timeout_seconds = models.PositiveIntegerField(default=300)
    max_retries = models.PositiveSmallIntegerField(default=2)
    retry_backoff_seconds = models.PositiveIntegerField(default=5)
    escalate_to_agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    escalate_to_role = models.ForeignKey(
        "agents.Role", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    escalate_to_human = models.BooleanField(
        default=False, help_text="After retries (and agent escalation), wait for a person."
    )
    compensation_operation = models.ForeignKey(
        "autonomy.Operation", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    compensation_input_map = models.JSONField(default=dict, blank=True)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["template", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["template", "key"], name="one_step_per_key"),
            models.CheckConstraint(
                condition=~(Q(assignee_role__isnull=False) & Q(assignee_agent__isnull=False)),
                name="step_one_assignee",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.template.key}/{self.key}"

    @property
    def context_key(self) -> str:
        return self.output_key or self.key


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    SUCCEEDED = "succeeded", "Succeeded"
    COMPENSATING = "compensating", "Compensating"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


RUN_FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class Run(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    template = models.ForeignKey(Template, on_delete=models.PROTECT, related_name="runs")
    status = models.CharField(
        max_length=14, choices=RunStatus.choices, default=RunStatus.RUNNING, db_index=True
    )
    context = models.JSONField(default=dict, blank=True)
    started_by = models.CharField(max_length=200, blank=True)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True, unique=True)  # noqa: DJ001
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.template.name} run {str(self.pk)[:8]}"


class StepStatus(models.TextChoices):
    PENDING = "pending", "Waiting for earlier steps"
    READY = "ready", "Ready"
    RUNNING = "running", "Running"
    WAITING_APPROVAL = "waiting_approval", "Waiting for approval"
    WAITING_AGENT = "waiting_agent", "Waiting for an agent"
    ESCALATED = "escalated", "Escalated to a person"
    SUCCEEDED = "succeeded", "Succeeded"
    SKIPPED = "skipped", "Skipped"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    COMPENSATED = "compensated", "Compensated"


STEP_DONE = (StepStatus.SUCCEEDED, StepStatus.SKIPPED)
STEP_FINISHED = (*STEP_DONE, StepStatus.FAILED, StepStatus.CANCELLED, StepStatus.COMPENSATED)
STEP_ACTIVE = (
    StepStatus.READY,
    StepStatus.RUNNING,
    StepStatus.WAITING_APPROVAL,
    StepStatus.WAITING_AGENT,
    StepStatus.ESCALATED,
)


class StepRun(models.Model):
    """One step of one run. Its id is the idempotency key of the work it does."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="step_runs")
    step = models.ForeignKey(Step, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(
        max_length=20, choices=StepStatus.choices, default=StepStatus.PENDING, db_index=True
    )
    assignee = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.PROTECT, related_name="step_runs"
    )
    assignee_role = models.ForeignKey(
        "agents.Role", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    attempt = models.PositiveSmallIntegerField(default=0)
    # Bumped when a person retries the step or it is escalated: attempts count again from 1,
    # and the new attempts' actions get keys of their own (never a replay of an old one).
    generation = models.PositiveSmallIntegerField(default=0)
    escalations = models.PositiveSmallIntegerField(default=0)
    action = models.ForeignKey(
        "autonomy.ActionRequest",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="step_runs",
    )
    compensation_action = models.ForeignKey(
        "autonomy.ActionRequest", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    input = models.JSONField(default=dict, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # When the step first became ready or was first offered (never moved by retries): the
    # start of its wait for an agent, in the analytics (``workflows.services.rollup``).
    ready_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    position = models.PositiveSmallIntegerField(default=0)
    # The worker process (host:pid) that claimed the running attempt, when a worker with a
    # heartbeat did (``autonomy.liveness``): the sweep takes the step back as soon as that
    # worker stops beating, not only when the lease runs out.
    worker = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["run", "position"]
        constraints = [models.UniqueConstraint(fields=["run", "step"], name="one_step_run")]
        indexes = [
            models.Index(fields=["status", "assignee"], name="steprun_assignee"),
            models.Index(fields=["status", "assignee_role"], name="steprun_role"),
            models.Index(fields=["status", "lease_until"], name="steprun_lease"),
        ]

    def __str__(self) -> str:
        return f"{self.step.key} ({self.status})"


class RunEvent(models.Model):
    """The run's timeline: who did what, waits, approvals, escalations, context changes."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    step_run = models.ForeignKey(
        StepRun, null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    kind = models.CharField(max_length=40)
    actor = models.CharField(max_length=200, blank=True)
    message = models.CharField(max_length=500, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "id"]

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


class Message(models.Model):
    """Run-scoped messages between agents; no recipient means everyone on the run."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="messages")
    sender = models.ForeignKey("agents.Agent", on_delete=models.PROTECT, related_name="+")
    recipient = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    step_run = models.ForeignKey(
        StepRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    body = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "id"]

    def __str__(self) -> str:
        return f"message {self.pk} on {self.run_id}"


class ClaimStatus(models.TextChoices):
    HELD = "held", "Held"
    WAITING = "waiting", "Waiting"
    RELEASED = "released", "Released"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"


class Claim(models.Model):
    """A holder of (or a waiter for) one resource key. One holder per key, enforced by the DB."""

    resource_key = models.CharField(max_length=200)
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="claims")
    run = models.ForeignKey(
        Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="claims"
    )
    priority = models.SmallIntegerField(default=0)
    status = models.CharField(max_length=10, choices=ClaimStatus.choices)
    lease_seconds = models.PositiveIntegerField(default=60)
    lease_until = models.DateTimeField(null=True, blank=True)
    yield_requested = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    acquired_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["resource_key", "-priority", "created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["resource_key"],
                condition=Q(status="held"),
                name="one_holder_per_resource",
            ),
            models.UniqueConstraint(
                fields=["resource_key", "agent"],
                condition=Q(status__in=["held", "waiting"]),
                name="one_open_claim_per_agent_and_resource",
            ),
        ]
        indexes = [models.Index(fields=["status", "lease_until"], name="claim_lease")]

    def __str__(self) -> str:
        return f"{self.resource_key} {self.status} by {self.agent_id}"


# --- analytics: rollups kept as work happens (``workflows.services.rollup``) ------------------

# Upper bounds (milliseconds) of the duration histograms' buckets, about ×3 apart, from 10 ms to
# 28 hours; the last bucket is open. Percentiles come from these counts, never from raw rows.
HISTOGRAM_BOUNDS_MS = (
    10, 30, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000, 3_000_000,
    10_000_000, 30_000_000, 100_000_000,
)  # fmt: skip
HISTOGRAM_FIELDS = tuple(f"h{i:02d}" for i in range(len(HISTOGRAM_BOUNDS_MS) + 1))


class DurationHistogram(models.Model):
    """How many durations fell in each bucket of ``HISTOGRAM_BOUNDS_MS``, their count and
    their sum (for means and shares of time)."""

    count = models.PositiveIntegerField(default=0)
    total_ms = models.BigIntegerField(default=0)
    h00 = models.PositiveIntegerField(default=0)
    h01 = models.PositiveIntegerField(default=0)
    h02 = models.PositiveIntegerField(default=0)
    h03 = models.PositiveIntegerField(default=0)
    h04 = models.PositiveIntegerField(default=0)
    h05 = models.PositiveIntegerField(default=0)
    h06 = models.PositiveIntegerField(default=0)
    h07 = models.PositiveIntegerField(default=0)
    h08 = models.PositiveIntegerField(default=0)
    h09 = models.PositiveIntegerField(default=0)
    h10 = models.PositiveIntegerField(default=0)
    h11 = models.PositiveIntegerField(default=0)
    h12 = models.PositiveIntegerField(default=0)
    h13 = models.PositiveIntegerField(default=0)
    h14 = models.PositiveIntegerField(default=0)
    h15 = models.PositiveIntegerField(default=0)

    class Meta:
        abstract = True


class Phase(models.TextChoices):
    """Where a step's time goes, end to end: the four parts add up to its duration."""

    WAIT_AGENT = "wait_agent", "waiting for an agent"
    WAIT_HUMAN = "wait_human", "waiting for a person"
    RUNNING = "running", "running"
    CONNECTOR = "connector", "in the connector"


class StepRollup(models.Model):
    """One step of one template version in one hour: how many of its step runs started,
    succeeded, failed, were retried, compensated or skipped."""

    hour = models.DateTimeField()
    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="+")
    step = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="+")
    started = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    retried = models.PositiveIntegerField(default=0)
    compensated = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["hour", "template", "step"], name="one_step_rollup")
        ]
        indexes = [models.Index(fields=["template", "hour"], name="step_rollup_template")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h step {self.step_id}"


class StepTimeRollup(DurationHistogram):
    """The durations of one phase of one step's finished step runs in one hour."""

    hour = models.DateTimeField()
    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="+")
    step = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="+")
    phase = models.CharField(max_length=12, choices=Phase.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "template", "step", "phase"], name="one_step_time_rollup"
            )
        ]
        indexes = [models.Index(fields=["template", "hour"], name="step_time_rollup_template")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h step {self.step_id} {self.phase}"


class RunRollup(DurationHistogram):
    """One template version's runs in one hour: started and how they ended, with the
    durations of those that finished."""

    hour = models.DateTimeField()
    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="+")
    started = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    cancelled = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "template"], name="one_run_rollup")]
        indexes = [models.Index(fields=["template", "hour"], name="run_rollup_template")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h template {self.template_id}"


class AgentRollup(models.Model):
    """One agent's actions that ended in one hour (from the kernel's signals): how they ended,
    how many waited for people and what people answered, and what the succeeded ones spent."""

    hour = models.DateTimeField()
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="+")
    settled = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    denied = models.PositiveIntegerField(default=0)
    approvals_needed = models.PositiveIntegerField(default=0)
    answered = models.PositiveIntegerField(default=0)
    overridden = models.PositiveIntegerField(default=0)
    spend = models.DecimalField(max_digits=20, decimal_places=2, default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "agent"], name="one_agent_rollup")]
        indexes = [models.Index(fields=["hour"], name="agent_rollup_hour")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h agent {self.agent_id}"
