"""Demo: operations that declare sensitive parameters and results (``autonomy.masking``), so
the portal shows them masked to the demo approvers (ava.approver and the others) and in the
approval e-mails, and in full to risk officers, auditors and the demo admin (a superuser)."""

from django.db import transaction

from autonomy.models import Operation
from autonomy.policy import services as policy_services

# operation key -> (sensitive parameters, sensitive result keys)
DECLARATIONS = {
    "crm.update-contact": ({"email": "pii", "phone": "pii"}, {}),
    "crm.verify-identity": ({"document": "pii"}, {}),  # a national id or passport number
    "crm.read-account": ({}, {"data.iban": "financial", "data.card_number": "secret"}),
    "hris.read-employee": (
        {},
        {"data.national_id": "pii", "data.iban": "financial", "data.salary": "financial"},
    ),
    "mail.send-email": ({"to": "pii"}, {}),
}


def seed_masking() -> int:
    """Declare them; idempotent. Returns how many operations changed."""
    changed = 0
    with transaction.atomic():
        for key, (params, results) in DECLARATIONS.items():
            connector, slug = key.split(".", 1)
            operation = Operation.objects.filter(connector__slug=connector, slug=slug).first()
            if operation is None:
                continue
            if operation.sensitive_params == params and operation.sensitive_results == results:
                continue
            operation.sensitive_params, operation.sensitive_results = params, results
            operation.save(update_fields=["sensitive_params", "sensitive_results"])
            changed += 1
        if changed:
            policy_services.registry_changed()
    return changed
