"""Demo systems, operations, grants and policies for the embedded default (``seed_demo``)."""

from django.db import transaction

from agents.models import Role
from autonomy import actions, grants
from autonomy.memory.registry import memory_connector_ensure
from autonomy.models import Connector, ConnectorKind, DataClass, Effect, Operation, Policy

MONEY = {"type": "number", "minimum": 0}
TEXT = {"type": "string", "maxLength": 500}


def _schema(required: list[str], **props) -> dict:
    return {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }


CONNECTORS = [
    ("erp", "ERP (finance and procurement)", ConnectorKind.ERP),
    ("crm", "CRM", ConnectorKind.CRM),
    ("itsm", "IT service management", ConnectorKind.ITSM),
    ("warehouse", "Data warehouse", ConnectorKind.SQL),
    ("hris", "HR information system", ConnectorKind.HTTP),
    ("mail", "Outbound e-mail", ConnectorKind.EMAIL),
]

# connector, slug, name, effect, sensitivity, data class, pii, financial, schema, amount, count
OPERATIONS = [
    ("erp", "read-invoice", "Read an invoice", Effect.READ, 1, DataClass.INTERNAL, False, False,
     _schema(["invoice_id"], invoice_id=TEXT), "", ""),
    ("erp", "post-invoice", "Post an invoice", Effect.WRITE, 2, DataClass.CONFIDENTIAL, False, True,
     _schema(["invoice_id", "amount"], invoice_id=TEXT, amount=MONEY, currency=TEXT), "amount", ""),
    ("erp", "pay-invoice", "Pay an invoice", Effect.WRITE, 4, DataClass.INTERNAL, False, True,
     _schema(["invoice_id", "amount"], invoice_id=TEXT, amount=MONEY, currency=TEXT), "amount", ""),
    ("erp", "create-purchase-order", "Create a purchase order", Effect.WRITE, 3,
     DataClass.CONFIDENTIAL, False, True,
     _schema(["supplier", "amount"], supplier=TEXT, amount=MONEY, currency=TEXT), "amount", ""),
    ("crm", "read-account", "Read an account", Effect.READ, 1, DataClass.CONFIDENTIAL, True, False,
     _schema(["account_id"], account_id=TEXT), "", ""),
    ("crm", "update-contact", "Update a contact", Effect.WRITE, 2, DataClass.CONFIDENTIAL, True,
     False, _schema(["contact_id"], contact_id=TEXT, email=TEXT, phone=TEXT), "", ""),
    ("crm", "export-contacts", "Export contacts", Effect.READ, 3, DataClass.RESTRICTED, True, False,
     _schema(["limit"], limit={"type": "integer", "minimum": 1, "maximum": 100000}), "", "limit"),
    ("itsm", "create-incident", "Open an incident", Effect.WRITE, 1, DataClass.INTERNAL, False,
     False, _schema(["title"], title=TEXT, priority={"type": "integer", "minimum": 1,
                                                      "maximum": 4}), "", ""),
    ("itsm", "close-incident", "Close an incident", Effect.WRITE, 2, DataClass.INTERNAL, False,
     False, _schema(["incident_id"], incident_id=TEXT, resolution=TEXT), "", ""),
    ("itsm", "delete-incident", "Delete an incident", Effect.DELETE, 3, DataClass.INTERNAL, False,
     False, _schema(["incident_id"], incident_id=TEXT), "", ""),
    ("warehouse", "run-report", "Run a report", Effect.READ, 2, DataClass.CONFIDENTIAL, False,
     False, _schema(["report"], report=TEXT, limit={"type": "integer", "minimum": 1}), "", "limit"),
    ("hris", "read-employee", "Read an employee record", Effect.READ, 3, DataClass.RESTRICTED, True,
     False, _schema(["employee_id"], employee_id=TEXT), "", ""),
    ("mail", "send-email", "Send an e-mail", Effect.WRITE, 2, DataClass.INTERNAL, False, False,
     _schema(["to", "subject"], to=TEXT, subject=TEXT, body={"type": "string"}), "", ""),
    # used by the demo workflow templates (demo/workflows.py)
    ("erp", "match-purchase-order", "Match an invoice to its purchase order", Effect.READ, 1,
     DataClass.INTERNAL, False, False,
     _schema(["invoice_id", "po_number"], invoice_id=TEXT, po_number=TEXT, amount=MONEY), "", ""),
    ("erp", "void-invoice", "Void a posted invoice", Effect.WRITE, 2, DataClass.CONFIDENTIAL,
     False, True, _schema(["invoice_id"], invoice_id=TEXT, reason=TEXT), "", ""),
    ("crm", "verify-identity", "Verify a customer's identity", Effect.READ, 2,
     DataClass.CONFIDENTIAL, True, False,
     _schema(["account_id", "document"], account_id=TEXT, document=TEXT), "", ""),
    ("itsm", "enrich-incident", "Enrich an incident with asset data", Effect.READ, 1,
     DataClass.INTERNAL, False, False,
     _schema(["incident_id"], incident_id=TEXT, category=TEXT), "", ""),
    ("itsm", "assign-incident", "Assign an incident to a team", Effect.WRITE, 1,
     DataClass.INTERNAL, False, False,
     _schema(["incident_id", "team"], incident_id=TEXT, team=TEXT,
             priority={"type": "integer", "minimum": 1, "maximum": 4}), "", ""),
]  # fmt: skip

# role slug -> connectors it may use whole, and single operations
GRANTS = {
    "invoice-processor": (
        ["mail"],
        ["erp.read-invoice", "erp.post-invoice", "erp.match-purchase-order", "erp.void-invoice"],
    ),
    "payments-clerk": ([], ["erp.read-invoice", "erp.pay-invoice"]),
    "po-buyer": ([], ["erp.create-purchase-order", "erp.read-invoice", "mail.send-email"]),
    "supplier-onboarder": (["mail"], ["crm.read-account"]),
    "hr-assistant": (["mail"], ["hris.read-employee"]),
    "support-agent": (
        ["itsm", "memory"],
        ["crm.read-account", "crm.update-contact", "mail.send-email"],
    ),
    "onboarding-agent": (["crm", "mail"], ["memory.read", "memory.write", "memory.search"]),
    "incident-triager": (["itsm", "mail", "memory"], []),
    "access-provisioner": (["itsm"], ["hris.read-employee"]),
    "contract-reviewer": ([], ["crm.read-account"]),
    "data-analyst": (["warehouse"], []),
}

POLICIES = [
    (
        "Baseline: granted work up to sensitivity 4",
        "Anything an agent is granted is permitted unless it is among the most sensitive.",
        'permit (principal, action == Action::"invoke", resource)\n'
        "when { resource.sensitivity <= 4 };",
    ),
    (
        "Payments above 10,000 need a person",
        "Large payments and purchase orders wait for an approver.",
        '@approval("required")\n'
        'permit (principal, action == Action::"invoke", resource in Connector::"erp")\n'
        "when { resource.financial && context has amount && context.amount > 10000 };",
    ),
    (
        "Restricted data stays with HR, IT and Legal",
        "Only agents of these business units may touch restricted data.",
        'forbid (principal, action, resource)\nwhen { resource.data_class == "restricted" }\n'
        'unless { principal in BusinessUnit::"hr" || principal in BusinessUnit::"it" || '
        'principal in BusinessUnit::"legal" };',
    ),
    (
        "No deletions at night",
        "Deletes wait for office hours (06:00-22:00 UTC).",
        'forbid (principal, action, resource)\nwhen { resource.effect == "delete" && '
        "(context.hour < 6 || context.hour >= 22) };",
    ),
]


def seed() -> dict[str, int]:
    from autonomy.policy import services as policy_services

    created = {"connectors": 0, "operations": 0, "policies": 0}
    with transaction.atomic():
        connectors = {}
        for slug, name, kind in CONNECTORS:
            connectors[slug], made = Connector.objects.get_or_create(
                slug=slug, defaults={"name": name, "kind": kind}
            )
            created["connectors"] += made
        operations = {}
        for conn, slug, name, effect, sens, dclass, pii, fin, schema, amount, count in OPERATIONS:
            op, made = Operation.objects.get_or_create(
                connector=connectors[conn],
                slug=slug,
                defaults=dict(
                    name=name, effect=effect, sensitivity=sens, data_class=dclass, pii=pii,
                    financial=fin, params_schema=schema, amount_param=amount, count_param=count,
                ),
            )  # fmt: skip
            operations[op.key] = op
            created["operations"] += made
        wire_demo_systems(connectors=connectors, operations=operations)
        # the kernel's shared memory, granted to customer-ops and IT roles below
        memory_connector_ensure()
        connectors["memory"] = Connector.objects.get(slug="memory")
        operations.update(
            (op.key, op) for op in Operation.objects.filter(connector=connectors["memory"])
        )
        if created["operations"] or created["connectors"]:
            roles = {r.slug: r for r in Role.objects.select_related("group")}
            for role_slug, (whole, single) in GRANTS.items():
                if role_slug not in roles:
                    continue
                for conn in whole:
                    grants.grant(target=connectors[conn], to=roles[role_slug])
                for key in single:
                    grants.grant(target=operations[key], to=roles[role_slug])
            policy_services.registry_changed()
        for name, description, text in POLICIES:
            if not Policy.objects.filter(name=name).exists():
                policy_services.policy_save(
                    name=name, description=description, text=text, enabled=True, by=None
                )
                created["policies"] += 1
    return created


DEMO_SYSTEMS = ("erp", "crm", "itsm")
REST_LAYOUT = ("method", "path", "query", "body_param")


def wire_demo_systems(*, connectors: dict, operations: dict) -> None:
    """Give the demo ERP/CRM/ITSM operations the method and path the demo systems' OpenAPI
    documents describe (read in-process: seeding never needs the systems running) and, when
    ``AUTONOMY_DEMO_SYSTEMS_URL`` is set, point the connectors at them with the demo token.
    Without it the connectors keep answering from the ledger. Idempotent; writes only changes.
    """
    from django.conf import settings

    from autonomy.connectors import openapi
    from autonomy.connectors.services import connector_secret_set
    from autonomy.models import ConnectorSecret
    from demo.systems.server import default_token
    from demo.systems.systems import openapi_document

    base = settings.AUTONOMY_DEMO_SYSTEMS_URL.rstrip("/")
    for system in DEMO_SYSTEMS:
        for spec in openapi.operation_specs(openapi_document(system)):
            op = operations.get(f"{system}.{spec['slug']}")
            if op is None:
                continue  # extra operations are for `import_demo_systems`, not the seed
            config = {k: v for k, v in (op.config or {}).items() if k not in REST_LAYOUT}
            config.update(spec["config"])
            if config != op.config:
                op.config = config
                op.save(update_fields=["config"])
        if not base:
            continue
        connector = connectors[system]
        wanted = {"base_url": f"{base}/{system}", "auth": {"type": "bearer", "secret": "token"}}
        if any(connector.config.get(k) != v for k, v in wanted.items()):
            connector.config = {**connector.config, **wanted}
            connector.save(update_fields=["config"])
        if not ConnectorSecret.objects.filter(connector=connector, name="token").exists():
            connector_secret_set(connector=connector, name="token", value=default_token(), by=None)


def seed_activity() -> int:
    """A first day of work for a fresh demo: a few dozen actions through the real gate, some
    allowed, some denied, some waiting in the approval inbox. Skipped once actions exist."""
    from agents.models import Agent, AgentStatus
    from autonomy.models import ActionRequest

    if ActionRequest.objects.exists():
        return 0
    plan = [
        ("invoice-processor", "erp.post-invoice", {"invoice_id": "INV-{n}", "amount": 1800}),
        ("invoice-processor", "erp.read-invoice", {"invoice_id": "INV-{n}"}),
        ("payments-clerk", "erp.pay-invoice", {"invoice_id": "INV-{n}", "amount": 48000}),
        ("payments-clerk", "erp.pay-invoice", {"invoice_id": "INV-{n}", "amount": 900}),
        ("po-buyer", "erp.create-purchase-order", {"supplier": "Acme", "amount": 25000}),
        (
            "support-agent",
            "crm.update-contact",
            {"contact_id": "CON-{n}", "phone": "+44 20 7946 0{n}"},
        ),
        ("support-agent", "crm.export-contacts", {"limit": 5000}),
        ("incident-triager", "itsm.create-incident", {"title": "VPN down", "priority": 2}),
        ("data-analyst", "warehouse.run-report", {"report": "monthly-spend", "limit": 500}),
        ("access-provisioner", "hris.read-employee", {"employee_id": "E-{n}"}),
    ]
    created = 0
    for n, (role, operation, params) in enumerate(plan * 3):
        candidates = list(
            Agent.objects.select_related("role__group", "business_unit", "service_user")
            .filter(role__slug=role, status=AgentStatus.ACTIVE)
            .order_by("slug")[:3]
        )
        if not candidates:  # a small demo (--agents 20) may lack some roles
            continue
        agent = candidates[(n // len(plan)) % len(candidates)]
        filled = {k: v.format(n=1000 + n) if isinstance(v, str) else v for k, v in params.items()}
        actions.action_request(
            agent=agent, operation_key=operation, params=filled, reason="demo: first day of work"
        )
        created += 1
    return created
