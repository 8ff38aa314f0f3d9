"""Demo workflows for the embedded default: three published templates (``seed``) and a
player (``DemoPlayer``) that keeps a few runs going and does the agents' task steps.

The templates are the same documents a person would import as YAML, and they are published
through the same service, so a template that would not validate fails the seed loudly.
"""

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from agents.models import Agent, AgentStatus
from autonomy.errors import DomainError
from workflows import authoring, services
from workflows.models import Run, RunStatus, StepRun, StepStatus, Template, TemplateStatus

_TEXT = {"type": "string"}

ONBOARDING = {
    "key": "customer-onboarding",
    "name": "Customer onboarding",
    "description": "Collect the documents, verify identity, set the customer up and welcome them.",
    "business_unit": "customer-ops",
    "context_schema": {
        "type": "object",
        "required": ["customer"],
        "properties": {
            "customer": {
                "type": "object",
                "required": ["account_id", "contact_id", "email"],
                "properties": {"account_id": _TEXT, "contact_id": _TEXT, "email": _TEXT},
            }
        },
    },
    "steps": [
        {
            "key": "gather-documents",
            "name": "Gather documents",
            "kind": "task",
            "assignee_role": "onboarding-agent",
            "instructions": "Ask the customer for an identity document and proof of address; "
            "return {identity_document, documents}.",
            "visible_context": ["customer"],
            "output_key": "documents",
            "timeout_seconds": 900,
        },
        {
            "key": "validate-identity",
            "name": "Validate identity",
            "operation": "crm.verify-identity",
            "assignee_role": "onboarding-agent",
            "depends_on": ["gather-documents"],
            "input_map": {
                "account_id": "$.customer.account_id",
                "document": "$.documents.identity_document",
            },
        },
        {
            "key": "update-crm",
            "name": "Update CRM",
            "operation": "crm.update-contact",
            "assignee_role": "onboarding-agent",
            "depends_on": ["validate-identity"],
            "input_map": {"contact_id": "$.customer.contact_id", "email": "$.customer.email"},
        },
        {
            "key": "welcome-email",
            "name": "Welcome e-mail",
            "operation": "mail.send-email",
            "assignee_role": "onboarding-agent",
            "depends_on": ["update-crm"],
            "input_map": {
                "to": "$.customer.email",
                "subject": "Welcome aboard",
                "body": "Your account is ready.",
            },
        },
    ],
}

INVOICE = {
    "key": "invoice-processing",
    "name": "Invoice processing",
    "description": "Extract, match to the purchase order, post to the ERP (a person approves "
    "above 10,000), tell the requester. If a later step fails, the posted invoice is voided.",
    "business_unit": "finance",
    "context_schema": {
        "type": "object",
        "required": ["invoice"],
        "properties": {
            "invoice": {
                "type": "object",
                "required": ["id", "amount", "po_number"],
                "properties": {
                    "id": _TEXT,
                    "amount": {"type": "number", "minimum": 0},
                    "po_number": _TEXT,
                    "currency": _TEXT,
                    "requester": _TEXT,
                },
            }
        },
    },
    "steps": [
        {
            "key": "extract",
            "name": "Extract invoice data",
            "operation": "erp.read-invoice",
            "assignee_role": "invoice-processor",
            "input_map": {"invoice_id": "$.invoice.id"},
        },
        {
            "key": "match-po",
            "name": "Match purchase order",
            "operation": "erp.match-purchase-order",
            "assignee_role": "invoice-processor",
            "depends_on": ["extract"],
            "input_map": {
                "invoice_id": "$.invoice.id",
                "po_number": "$.invoice.po_number",
                "amount": "$.invoice.amount",
            },
        },
        {
            "key": "post",
            "name": "Post to ERP",
            "operation": "erp.post-invoice",
            "assignee_role": "invoice-processor",
            "depends_on": ["match-po"],
            "input_map": {
                "invoice_id": "$.invoice.id",
                "amount": "$.invoice.amount",
                "currency": "$.invoice.currency",
            },
            "approval": "when",
            "approval_when": "invoice.amount > 10000",
            "compensation_operation": "erp.void-invoice",
            "compensation_input_map": {
                "invoice_id": "$.invoice.id",
                "reason": "The invoice workflow failed after posting.",
            },
        },
        {
            "key": "notify",
            "name": "Tell the requester",
            "operation": "mail.send-email",
            "assignee_role": "invoice-processor",
            "depends_on": ["post"],
            "input_map": {"to": "$.invoice.requester", "subject": "Your invoice is posted"},
        },
    ],
}

INCIDENT = {
    "key": "it-incident-triage",
    "name": "IT incident triage",
    "description": "An agent classifies the incident; enrichment and assignment run in "
    "parallel; the reporter hears back.",
    "business_unit": "it",
    "context_schema": {
        "type": "object",
        "required": ["incident"],
        "properties": {
            "incident": {
                "type": "object",
                "required": ["id", "title"],
                "properties": {"id": _TEXT, "title": _TEXT, "reporter": _TEXT},
            }
        },
    },
    "steps": [
        {
            "key": "classify",
            "name": "Classify",
            "kind": "task",
            "assignee_role": "incident-triager",
            "instructions": "Read the incident; return {category, team, priority (1-4)}.",
            "visible_context": ["incident"],
            "output_key": "classification",
            "timeout_seconds": 600,
        },
        {
            "key": "enrich",
            "name": "Enrich with asset data",
            "operation": "itsm.enrich-incident",
            "assignee_role": "incident-triager",
            "depends_on": ["classify"],
            "input_map": {"incident_id": "$.incident.id", "category": "$.classification.category"},
        },
        {
            "key": "assign",
            "name": "Assign to a team",
            "operation": "itsm.assign-incident",
            "assignee_role": "incident-triager",
            "depends_on": ["classify"],
            "input_map": {
                "incident_id": "$.incident.id",
                "team": "$.classification.team",
                "priority": "$.classification.priority",
            },
        },
        {
            "key": "notify",
            "name": "Notify the reporter",
            "operation": "mail.send-email",
            "assignee_role": "incident-triager",
            "depends_on": ["enrich", "assign"],
            "input_map": {"to": "$.incident.reporter", "subject": "We are on your incident"},
        },
    ],
}

TEMPLATES = [ONBOARDING, INVOICE, INCIDENT]
KEYS = [doc["key"] for doc in TEMPLATES]


def seed() -> dict[str, int]:
    """Publish the demo templates that do not exist yet (by key). Returns counts created."""
    created = 0
    existing = set(Template.objects.filter(key__in=KEYS).values_list("key", flat=True))
    for doc in TEMPLATES:
        if doc["key"] in existing:
            continue
        with transaction.atomic():
            draft = authoring.template_from_dict(data=doc)
            authoring.template_publish(template=draft)
        created += 1
    return {"templates": created}


# --- a few runs in flight, and the agents' side of task steps -------------------------------

CATEGORIES = [
    ("network", "network-ops"),
    ("access", "identity-team"),
    ("hardware", "desk-side"),
    ("application", "app-support"),
]
TITLES = ["VPN drops every hour", "Cannot open the ERP", "Laptop will not boot", "Printer jam"]
SUPPLIERS = ["Acme", "Globex", "Initech", "Umbrella"]


def demo_context(*, key: str, rng: random.Random, n: int) -> dict:
    """A plausible starting context for a demo run; about a third of invoices are large
    enough to need a person's approval."""
    if key == ONBOARDING["key"]:
        return {
            "customer": {
                "account_id": f"ACC-{n:05d}",
                "contact_id": f"CON-{n:05d}",
                "email": f"customer{n}@example.com",
            }
        }
    if key == INVOICE["key"]:
        large = rng.random() < 0.35
        amount = rng.randint(10_500, 60_000) if large else rng.randint(120, 4_000)
        return {
            "invoice": {
                "id": f"INV-{n:05d}",
                "amount": amount,
                "currency": "EUR",
                "po_number": f"PO-{rng.randint(1000, 9999)}",
                "supplier": rng.choice(SUPPLIERS),
                "requester": "ap-team@example.com",
            }
        }
    return {
        "incident": {
            "id": f"INC-{n:05d}",
            "title": rng.choice(TITLES),
            "reporter": f"employee{n}@example.com",
        }
    }


def task_output(*, step_key: str, rng: random.Random) -> dict:
    """What a demo agent answers for a task step."""
    if step_key == "gather-documents":
        return {
            "identity_document": f"passport:{rng.randint(10**7, 10**8 - 1)}",
            "documents": ["passport.pdf", "proof-of-address.pdf"],
        }
    if step_key == "classify":
        category, team = rng.choice(CATEGORIES)
        return {"category": category, "team": team, "priority": rng.randint(1, 4)}
    return {"done": True}


def runs_moving() -> int:
    """Demo runs in flight that are not waiting for a person."""
    waiting = StepRun.objects.filter(
        run=OuterRef("pk"), status__in=[StepStatus.WAITING_APPROVAL, StepStatus.ESCALATED]
    )
    return (
        Run.objects.filter(status=RunStatus.RUNNING, template__key__in=KEYS)
        .exclude(Exists(waiting))
        .count()
    )


@dataclass
class DemoPlayer:
    """Starts demo runs and plays the demo agents; ``tick`` does one round of each."""

    in_flight: int = 3
    think_seconds: float = 4.0
    max_open: int = 40
    rng: random.Random = field(default_factory=random.Random)
    claimed: dict = field(default_factory=dict)  # step run id -> (agent, due)
    started: int = 0

    def tick(self, *, now: datetime | None = None) -> list[str]:
        lines = self.start_runs()
        lines += self.finish_tasks(now=now or timezone.now())
        lines += self.take_tasks(now=now or timezone.now())
        return lines

    def start_runs(self) -> list[str]:
        templates: dict[str, Template] = {}
        for template in Template.objects.filter(
            key__in=KEYS, status=TemplateStatus.PUBLISHED
        ).order_by("key", "-version"):
            templates.setdefault(template.key, template)  # the latest published version
        if not templates:
            return ["no published demo templates: run `manage.py seed_demo` first"]
        open_runs = Run.objects.filter(status=RunStatus.RUNNING, template__key__in=KEYS).count()
        lines = []
        for _ in range(max(0, min(self.in_flight - runs_moving(), self.max_open - open_runs))):
            key = self.rng.choice(sorted(templates))
            self.started += 1
            n = int(timezone.now().timestamp()) % 100_000 + self.started
            context = demo_context(key=key, rng=self.rng, n=n)
            try:
                run = services.run_start(template=templates[key], context=context, by="demo_runs")
            except DomainError as exc:
                lines.append(f"could not start {key}: {exc.message}")
                continue
            lines.append(f"started {templates[key]} run {str(run.pk)[:8]} {_summary(context)}")
        return lines

    def _agents(self) -> list[Agent]:
        roles = {
            step["assignee_role"]
            for doc in TEMPLATES
            for step in doc["steps"]
            if step.get("kind") == "task"
        }
        agents = []
        for role in sorted(roles):
            agents += list(
                Agent.objects.filter(role__slug=role, status=AgentStatus.ACTIVE)
                .select_related("role", "service_user")
                .order_by("slug")[:3]
            )
        return agents

    def take_tasks(self, *, now: datetime) -> list[str]:
        lines = []
        for agent in self._agents():
            try:
                step_run = services.task_next(agent=agent)
            except DomainError as exc:
                lines.append(f"{agent.slug} cannot take tasks: {exc.message}")
                continue
            if step_run is None:
                continue
            due = now + timedelta(seconds=self.rng.uniform(0, self.think_seconds))
            self.claimed[step_run.pk] = (agent, due)
            lines.append(f"{agent.slug} took {step_run.step.key} of run {str(step_run.run_id)[:8]}")
        return lines

    def finish_tasks(self, *, now: datetime | None) -> list[str]:
        """Complete the claimed tasks that are due (all of them when ``now`` is None)."""
        lines = []
        for step_run_id, (agent, due) in list(self.claimed.items()):
            if now is not None and due > now:
                continue
            del self.claimed[step_run_id]
            step_run = StepRun.objects.select_related("step").get(pk=step_run_id)
            output = task_output(step_key=step_run.step.key, rng=self.rng)
            try:
                services.task_complete(agent=agent, step_run_id=step_run_id, output=output)
            except DomainError as exc:
                lines.append(f"{agent.slug} could not complete {step_run.step.key}: {exc.message}")
                continue
            lines.append(f"{agent.slug} completed {step_run.step.key} → {output}")
        return lines


def _summary(context: dict) -> str:
    if "invoice" in context:
        return f"(invoice {context['invoice']['id']}, amount {context['invoice']['amount']})"
    if "incident" in context:
        return f"(incident {context['incident']['id']}: {context['incident']['title']})"
    return f"(customer {context['customer']['account_id']})"
