"""Demo content rules (issue 25's output guardrails) on the demo mail and ITSM operations.

The e-mail and ticket operations declare the parameters that carry content (and the
recipients); three rules apply to them: card numbers never leave (block), brand rules on
customer e-mail wait for a person (needs approval, the words highlighted in the inbox) and
secrets are redacted before the connector sees them. The CRM export declares a result bound,
so an export that returns more records than that raises a drift flag. The fleet
(``demo.fleet``) now and then has an agent try both kinds of e-mail (``PLAYS``).
"""

from django.db import transaction

from autonomy.models import ContentEffect, ContentRule, Detector, Operation

# operation key -> content params, recipient params
DECLARED = {
    "mail.send-email": (["subject", "body"], ["to"]),
    "itsm.create-incident": (["title"], []),
    "itsm.close-incident": (["resolution"], []),
    "crm.update-contact": ([], ["email"]),
}
RESULT_BOUNDS = {"crm.export-contacts": (1000, "data.contacts")}
BRAND_TERMS = ["guaranteed", "risk-free", "cheapest", "no questions asked", "100% safe"]

# name, detector, options, effect, connector slug ("" = every operation that declares content)
RULES = [
    ("Card numbers never leave", Detector.CARD, {}, ContentEffect.BLOCK, ""),
    ("Brand: no promises we cannot keep", Detector.FORBIDDEN_TERMS, {"terms": BRAND_TERMS},
     ContentEffect.NEEDS_APPROVAL, "mail"),
    ("Secrets are redacted", Detector.SECRET, {}, ContentEffect.REDACT, ""),
]  # fmt: skip

# roles granted mail.send-email in the demo (``demo.connectors.GRANTS``)
SENDERS = ("invoice-processor", "support-agent", "onboarding-agent", "po-buyer")
CUSTOMERS = ["ana.silva@customer.example", "li.wei@customer.example", "sam.okafor@client.example"]


def _card_email(rng) -> dict:
    return {
        "to": rng.choice(CUSTOMERS),
        "subject": "Your payment details",
        "body": "Hello,\n\nas requested, the card on file is 4111 1111 1111 1111 "
        "(exp 12/29).\n\nKind regards,\nAccounts",
    }


def _brand_email(rng) -> dict:
    return {
        "to": rng.choice(CUSTOMERS),
        "subject": "An offer for you",
        "body": "Hello,\n\nour new plan is the cheapest on the market, with guaranteed "
        "returns and a risk-free trial.\n\nKind regards,\nSales",
    }


# (operation, params maker, reason): what the fleet's agents occasionally try
PLAYS = [
    ("mail.send-email", _card_email, "fleet: e-mailing a customer their card number"),
    ("mail.send-email", _brand_email, "fleet: a sales e-mail off brand"),
]


def seed() -> dict[str, int]:
    """Declare content on the demo operations and add the demo rules. Idempotent."""
    from autonomy.models import Connector

    created = 0
    with transaction.atomic():
        operations = {
            op.key: op
            for op in Operation.objects.select_related("connector").filter(
                connector__slug__in={k.split(".")[0] for k in [*DECLARED, *RESULT_BOUNDS]}
            )
        }
        for key, (content, recipients) in DECLARED.items():
            op = operations.get(key)
            if op is not None and (op.content_params, op.recipient_params) != (content, recipients):
                op.content_params, op.recipient_params = content, recipients
                op.save(update_fields=["content_params", "recipient_params"])
        for key, (bound, records_key) in RESULT_BOUNDS.items():
            op = operations.get(key)
            if op is not None and op.result_max_records != bound:
                op.result_max_records, op.result_records_key = bound, records_key
                op.save(update_fields=["result_max_records", "result_records_key"])
        connectors = {c.slug: c for c in Connector.objects.filter(slug__in={"mail", "itsm"})}
        for name, detector, options, effect, connector in RULES:
            _, made = ContentRule.objects.get_or_create(
                name=name,
                defaults={
                    "detector": detector, "options": options, "effect": effect,
                    "connector": connectors.get(connector) if connector else None,
                },
            )  # fmt: skip
            created += made
    return {"content_rules": created}
