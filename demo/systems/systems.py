"""The three demo systems — ERP, CRM, ITSM — as operations: each one an OpenAPI operation
(its ``operationId`` becomes the Autonomy OS operation slug: ``postInvoice`` → ``erp.post-invoice``)
and a handler over the store.

The demo systems know every id an agent may name: reading an invoice, account or incident
they have never seen creates a plausible one, as if it had always been there, so the demo
workflows (which invent ids) run end to end. Writes are real: they change stored records.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from demo.systems.store import Store, now

TEXT = {"type": "string", "maxLength": 500}
MONEY = {"type": "number", "minimum": 0}
PRIORITY = {"type": "integer", "minimum": 1, "maximum": 4}
JSON_OBJECT = {"application/json": {"schema": {"type": "object"}}}


class Problem(Exception):
    """An answer other than 2xx: status and a message for the caller."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Op:
    operation_id: str
    method: str
    path: str
    summary: str
    handler: Callable[[Store, dict], tuple[int, dict]]
    query: dict = field(default_factory=dict)  # name -> schema
    body: dict = field(default_factory=dict)  # name -> schema
    required: tuple = ()  # required body or query names
    effect: str = ""

    @property
    def path_params(self) -> list[str]:
        return [part[1:-1] for part in self.path.split("/") if part.startswith("{")]


# --- ERP: invoices and purchase orders --------------------------------------------------------


def _invoice(store: Store, invoice_id: str) -> dict:
    found = store.get("erp", "invoice", invoice_id)
    if found is None:
        found = store.put(
            "erp",
            "invoice",
            invoice_id,
            {
                "invoice_id": invoice_id,
                "status": "received",
                "amount": None,
                "currency": "EUR",
                "supplier": "Acme",
                "received_at": now(),
            },
        )
    return found


def read_invoice(store, p):
    return 200, _invoice(store, p["invoice_id"])


def post_invoice(store, p):
    invoice = _invoice(store, p["invoice_id"])
    if invoice["status"] in ("posted", "paid"):
        raise Problem(409, "already_posted", f"Invoice {p['invoice_id']} is already posted.")
    invoice.update(
        status="posted", amount=p["amount"], currency=p.get("currency") or "EUR", posted_at=now()
    )
    return 201, store.put("erp", "invoice", p["invoice_id"], invoice)


def pay_invoice(store, p):
    invoice = _invoice(store, p["invoice_id"])
    if invoice["status"] == "void":
        raise Problem(409, "invoice_void", f"Invoice {p['invoice_id']} is void.")
    if invoice["status"] == "paid":
        raise Problem(409, "already_paid", f"Invoice {p['invoice_id']} is already paid.")
    payment_id = f"PAY-{store.next_number('erp.payment'):06d}"
    payment = {
        "payment_id": payment_id,
        "invoice_id": p["invoice_id"],
        "amount": p["amount"],
        "currency": p.get("currency") or invoice.get("currency") or "EUR",
        "paid_at": now(),
    }
    store.put("erp", "payment", payment_id, payment)
    invoice.update(
        status="paid", amount=invoice.get("amount") or p["amount"], payment_id=payment_id
    )
    store.put("erp", "invoice", p["invoice_id"], invoice)
    return 201, payment


def void_invoice(store, p):
    invoice = _invoice(store, p["invoice_id"])
    if invoice["status"] == "paid":
        raise Problem(409, "already_paid", f"Invoice {p['invoice_id']} is paid; refund it instead.")
    invoice.update(status="void", void_reason=p.get("reason") or "", voided_at=now())
    return 200, store.put("erp", "invoice", p["invoice_id"], invoice)


def create_purchase_order(store, p):
    po_number = f"PO-{store.next_number('erp.purchase_order'):06d}"
    order = {
        "po_number": po_number,
        "supplier": p["supplier"],
        "amount": p["amount"],
        "currency": p.get("currency") or "EUR",
        "status": "open",
        "created_at": now(),
    }
    return 201, store.put("erp", "purchase_order", po_number, order)


def read_purchase_order(store, p):
    order = store.get("erp", "purchase_order", p["po_number"])
    if order is None:
        raise Problem(404, "not_found", f"No purchase order {p['po_number']}.")
    return 200, order


def match_purchase_order(store, p):
    invoice = _invoice(store, p["invoice_id"])
    order = store.get("erp", "purchase_order", p["po_number"])
    if order is None:  # a PO from before the demo began: it covers what the invoice says
        amount = p.get("amount") if p.get("amount") is not None else invoice.get("amount")
        order = store.put(
            "erp",
            "purchase_order",
            p["po_number"],
            {
                "po_number": p["po_number"],
                "supplier": invoice.get("supplier") or "Acme",
                "amount": amount,
                "currency": invoice.get("currency") or "EUR",
                "status": "open",
                "created_at": now(),
            },
        )
    amount = p.get("amount") if p.get("amount") is not None else invoice.get("amount")
    matched = (
        amount is None or order.get("amount") is None or float(amount) <= float(order["amount"])
    )
    return 200, {
        "invoice_id": p["invoice_id"],
        "po_number": p["po_number"],
        "matched": matched,
        "po_amount": order.get("amount"),
        "invoice_amount": amount,
    }


# --- CRM: accounts and contacts ---------------------------------------------------------------


def _account(store: Store, account_id: str) -> dict:
    found = store.get("crm", "account", account_id)
    if found is None:
        n = sum(map(ord, account_id))
        found = store.put(
            "crm",
            "account",
            account_id,
            {
                "account_id": account_id,
                "name": f"Customer {account_id}",
                "tier": ["bronze", "silver", "gold"][n % 3],
                "status": "active",
                "identity_verified": False,
                "created_at": now(),
            },
        )
    return found


def _contact(store: Store, contact_id: str) -> dict:
    found = store.get("crm", "contact", contact_id)
    if found is None:
        found = store.put(
            "crm",
            "contact",
            contact_id,
            {
                "contact_id": contact_id,
                "email": f"{contact_id.lower()}@example.com",
                "phone": "",
                "created_at": now(),
            },
        )
    return found


def read_account(store, p):
    return 200, _account(store, p["account_id"])


def update_account(store, p):
    account = _account(store, p["account_id"])
    account.update({k: p[k] for k in ("name", "tier", "status") if p.get(k) is not None})
    account["updated_at"] = now()
    return 200, store.put("crm", "account", p["account_id"], account)


def verify_identity(store, p):
    account = _account(store, p["account_id"])
    document = str(p["document"])
    verified = len(document) >= 6
    check_id = f"IDC-{store.next_number('crm.identity_check'):06d}"
    check = {
        "check_id": check_id,
        "account_id": p["account_id"],
        "verified": verified,
        "document_type": document.split(":", 1)[0] if ":" in document else "document",
        "checked_at": now(),
    }
    store.put("crm", "identity_check", check_id, check)
    if verified:
        account.update(identity_verified=True)
        store.put("crm", "account", p["account_id"], account)
    return 201, check


def update_contact(store, p):
    contact = _contact(store, p["contact_id"])
    contact.update({k: p[k] for k in ("email", "phone") if p.get(k) is not None})
    contact["updated_at"] = now()
    return 200, store.put("crm", "contact", p["contact_id"], contact)


def export_contacts(store, p):
    limit = max(1, min(int(p["limit"]), 1000))
    contacts = store.list("crm", "contact", limit=limit)
    return 200, {
        "count": len(contacts),
        "total": store.count("crm", "contact"),
        "contacts": contacts,
    }


# --- ITSM: incidents ---------------------------------------------------------------------------


def _incident(store: Store, incident_id: str) -> dict:
    found = store.get("itsm", "incident", incident_id)
    if found is None:
        found = store.put(
            "itsm",
            "incident",
            incident_id,
            {
                "incident_id": incident_id,
                "title": f"Reported incident {incident_id}",
                "priority": 3,
                "status": "new",
                "team": None,
                "opened_at": now(),
            },
        )
    return found


def create_incident(store, p):
    incident_id = f"INC-{store.next_number('itsm.incident'):06d}"
    incident = {
        "incident_id": incident_id,
        "title": p["title"],
        "priority": p.get("priority") or 3,
        "status": "new",
        "team": None,
        "opened_at": now(),
    }
    return 201, store.put("itsm", "incident", incident_id, incident)


def read_incident(store, p):
    return 200, _incident(store, p["incident_id"])


def enrich_incident(store, p):
    incident = _incident(store, p["incident_id"])
    category = p.get("category") or "unknown"
    n = sum(map(ord, p["incident_id"]))
    return 200, {
        "incident_id": incident["incident_id"],
        "category": category,
        "assets": [f"{category[:3].upper()}-{n % 997:03d}", f"HOST-{n % 89:02d}"],
        "related_incidents": n % 4,
    }


def assign_incident(store, p):
    incident = _incident(store, p["incident_id"])
    if incident["status"] == "closed":
        raise Problem(409, "incident_closed", f"Incident {p['incident_id']} is closed.")
    incident.update(team=p["team"], status="assigned", assigned_at=now())
    if p.get("priority") is not None:
        incident["priority"] = p["priority"]
    return 200, store.put("itsm", "incident", p["incident_id"], incident)


def close_incident(store, p):
    incident = _incident(store, p["incident_id"])
    incident.update(status="closed", resolution=p.get("resolution") or "", closed_at=now())
    return 200, store.put("itsm", "incident", p["incident_id"], incident)


def delete_incident(store, p):
    if not store.delete("itsm", "incident", p["incident_id"]):
        raise Problem(404, "not_found", f"No incident {p['incident_id']}.")
    return 200, {"incident_id": p["incident_id"], "deleted": True}


SYSTEMS: dict[str, dict] = {
    "erp": {
        "title": "Demo ERP (finance and procurement)",
        "operations": [
            Op("readInvoice", "GET", "/invoices/{invoice_id}", "Read an invoice", read_invoice),
            Op(
                "postInvoice",
                "POST",
                "/invoices/{invoice_id}/post",
                "Post an invoice",
                post_invoice,
                body={"amount": MONEY, "currency": TEXT},
                required=("amount",),
            ),
            Op(
                "payInvoice",
                "POST",
                "/invoices/{invoice_id}/payments",
                "Pay an invoice",
                pay_invoice,
                body={"amount": MONEY, "currency": TEXT},
                required=("amount",),
            ),
            Op(
                "voidInvoice",
                "POST",
                "/invoices/{invoice_id}/void",
                "Void a posted invoice",
                void_invoice,
                body={"reason": TEXT},
            ),
            Op(
                "matchPurchaseOrder",
                "GET",
                "/invoices/{invoice_id}/match",
                "Match an invoice to its purchase order",
                match_purchase_order,
                query={"po_number": TEXT, "amount": MONEY},
                required=("po_number",),
            ),
            Op(
                "createPurchaseOrder",
                "POST",
                "/purchase-orders",
                "Create a purchase order",
                create_purchase_order,
                body={"supplier": TEXT, "amount": MONEY, "currency": TEXT},
                required=("supplier", "amount"),
            ),
            Op(
                "readPurchaseOrder",
                "GET",
                "/purchase-orders/{po_number}",
                "Read a purchase order",
                read_purchase_order,
            ),
        ],
    },
    "crm": {
        "title": "Demo CRM",
        "operations": [
            Op("readAccount", "GET", "/accounts/{account_id}", "Read an account", read_account),
            Op(
                "updateAccount",
                "PATCH",
                "/accounts/{account_id}",
                "Update an account",
                update_account,
                body={"name": TEXT, "tier": TEXT, "status": TEXT},
            ),
            Op(
                "verifyIdentity",
                "POST",
                "/accounts/{account_id}/identity-checks",
                "Verify a customer's identity",
                verify_identity,
                body={"document": TEXT},
                required=("document",),
            ),
            Op(
                "updateContact",
                "PATCH",
                "/contacts/{contact_id}",
                "Update a contact",
                update_contact,
                body={"email": TEXT, "phone": TEXT},
            ),
            Op(
                "exportContacts",
                "GET",
                "/contacts",
                "Export contacts",
                export_contacts,
                query={"limit": {"type": "integer", "minimum": 1, "maximum": 100000}},
                required=("limit",),
            ),
        ],
    },
    "itsm": {
        "title": "Demo IT service management",
        "operations": [
            Op(
                "createIncident",
                "POST",
                "/incidents",
                "Open an incident",
                create_incident,
                body={"title": TEXT, "priority": PRIORITY},
                required=("title",),
            ),
            Op(
                "readIncident", "GET", "/incidents/{incident_id}", "Read an incident", read_incident
            ),
            Op(
                "enrichIncident",
                "GET",
                "/incidents/{incident_id}/enrichment",
                "Enrich an incident with asset data",
                enrich_incident,
                query={"category": TEXT},
            ),
            Op(
                "assignIncident",
                "POST",
                "/incidents/{incident_id}/assignment",
                "Assign an incident to a team",
                assign_incident,
                body={"team": TEXT, "priority": PRIORITY},
                required=("team",),
            ),
            Op(
                "closeIncident",
                "POST",
                "/incidents/{incident_id}/close",
                "Close an incident",
                close_incident,
                body={"resolution": TEXT},
            ),
            Op(
                "deleteIncident",
                "DELETE",
                "/incidents/{incident_id}",
                "Delete an incident",
                delete_incident,
            ),
        ],
    },
}


def _parameter(name: str, where: str, schema: dict, required: bool) -> dict:
    return {"name": name, "in": where, "required": required, "schema": dict(schema)}


def openapi_document(system: str, *, server_url: str = "") -> dict:
    """The OpenAPI 3 document of one demo system, as it serves it at ``openapi.json``."""
    spec = SYSTEMS[system]
    paths: dict[str, dict] = {}
    for op in spec["operations"]:
        parameters = [_parameter(n, "path", {"type": "string"}, True) for n in op.path_params]
        parameters += [_parameter(n, "query", s, n in op.required) for n, s in op.query.items()]
        entry = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "parameters": parameters,
            "responses": {
                "200": {"description": "OK", "content": JSON_OBJECT},
                "201": {"description": "Created", "content": JSON_OBJECT},
                "401": {"description": "Missing or wrong bearer token"},
                "404": {"description": "Not found"},
                "409": {"description": "Conflicts with the state, or a reused key"},
            },
        }
        if op.body:
            body_schema = {"type": "object", "properties": {k: dict(v) for k, v in op.body.items()}}
            required = [n for n in op.required if n in op.body]
            if required:
                body_schema["required"] = required
            entry["requestBody"] = {
                "required": bool(required),
                "content": {"application/json": {"schema": body_schema}},
            }
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    document = {
        "openapi": "3.0.3",
        "info": {
            "title": spec["title"],
            "version": "1.0.0",
            "description": "A demo system for Autonomy OS. Writes honour Idempotency-Key.",
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document
