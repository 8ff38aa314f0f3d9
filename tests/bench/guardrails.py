"""Output-guardrail benchmark (run by `make bench` in its own process and database).

- guardrail_overhead: the p99 of ``gate.decide`` for an e-mail operation whose subject and
  body are declared content, with 20 enabled content rules (every detector, forbidden and
  required terms, a recipient allow-list) on a 5 KB body, divided by the p99 of the same
  decision with no rule enabled. Goal ≤ 1.5.
- guardrail_p99_ms / guardrail_baseline_p99_ms: the two p99s, in ms.

The body is an ordinary customer reply with a quoted earlier message (order numbers, dates,
amounts, three phone numbers), so the decision is an allow, as most are. Rules on and off alternate in series (each switch
moves the policy-store version, as an admin change does), so a burst of load elsewhere on
the machine lands on both sides. A throwaway SQLite database of its own.

    python -m tests.bench.guardrails [--rounds 400 --series 5] [--json PATH]
"""

import argparse
import os
import sys

from tests.bench import common
from tests.bench.common import Figures

REQUIRED = ("guardrail_overhead", "guardrail_p99_ms", "guardrail_baseline_p99_ms")
FIGURES = Figures()
emit = FIGURES.emit
# An ordinary customer e-mail with a quoted earlier message: order numbers, dates, amounts
# and three phone numbers, nothing any rule stops.
BODY = """Dear Ms Silva,

Thank you for your order 48213 placed on 3 December. Your parcel left our warehouse in
Leeds this morning and should reach you within three working days. The courier will text
you a delivery window on the morning of delivery; if nobody is at home they will leave a
card and try again the next working day.

If anything is missing or damaged, reply to this message or call our service desk on
020 7946 0958 between 8:00 and 18:00, Monday to Friday. Outside those hours you can leave
a message and we will call you back the next morning.

The invoice total of 1,240.50 EUR will be collected as agreed, in two instalments of
620.25 EUR on 15 December and 15 January. You will find the invoice attached as a PDF and
in your account under Orders, where you can also download earlier invoices.

About the questions in your last message:

1. The extended warranty covers parts and labour for 36 months from delivery. It does not
cover accidental damage, which our partner insurer covers separately.
2. The mounting kit (article 7731-B) ships separately from our supplier and should arrive
within a week of the main parcel.
3. Your account manager, Tom Reyes, is back from leave on 8 December; his direct line is
020 7946 0321.

We have also noted your new delivery address for future orders and your preference to be
contacted by e-mail rather than by phone. You can change either at any time in your
account settings, or by writing to us.

For installation, our partner Fitwell Services offers a fixed price of 95 EUR within 30 km
of the city centre. They can be reached on 0113 496 0777 and will need your order number
when you call. Installation usually takes about two hours, and they will take the
packaging away with them.

If you would like to return any item, you have 30 days from delivery. Returns are free
for orders above 500 EUR; please use the prepaid label in the box and keep the receipt
from the drop-off point until the refund reaches your account, usually within 5 working
days of the item arriving back with us.

Kind regards,
Accounts team

-----Original message-----
From: Ana Silva
Sent: 2 December, 16:42
Subject: Order questions

Hello,

before I confirm the order I have three questions. How long is the extended warranty,
and does it cover accidental damage? When will the mounting kit arrive, since it was
listed as shipping separately? And could my account manager call me next week about the
second site, where we would need the same set-up in January?

I would also like future deliveries to go to our new address at the business park, unit
14, and I prefer e-mail to phone calls during the day as I am mostly in meetings.

Thanks in advance,
Ana
"""


def setup_django(data_dir: str) -> None:
    common.setup_django(data_dir, env={"CELERY_BROKER_URL": None})


def rules() -> list[dict]:
    from autonomy.models import ContentEffect, Detector

    block, ask, redact, log = (
        ContentEffect.BLOCK,
        ContentEffect.NEEDS_APPROVAL,
        ContentEffect.REDACT,
        ContentEffect.LOG,
    )
    found = [
        (Detector.CARD, block, {}),
        (Detector.IBAN, block, {}),
        (Detector.NATIONAL_ID, block, {}),
        (Detector.SECRET, redact, {}),
        (Detector.EMAIL, log, {}),
        (Detector.PHONE, log, {"region": "GB"}),
        (Detector.REQUIRED_TERMS, ask, {"terms": ["Kind regards"]}),
        (Detector.RECIPIENT_DOMAINS, block, {"domains": ["customer.example", "corp.example"]}),
    ]
    terms = [
        ["guaranteed"], ["risk-free"], ["cheapest"], ["no questions asked"], ["100% safe"],
        ["free money"], ["act now"], ["winner"], ["miracle"], ["lowest price ever"],
        ["unbeatable"], ["once in a lifetime"],
    ]  # fmt: skip
    found += [(Detector.FORBIDDEN_TERMS, ask, {"terms": t}) for t in terms]
    assert len(found) == 20
    return [
        {"name": f"bench rule {i}", "detector": d, "effect": e, "options": o}
        for i, (d, e, o) in enumerate(found)
    ]


def bench(rounds: int, series: int) -> None:
    from autonomy import gate, grants
    from autonomy.models import Connector, ConnectorKind, ContentRule, Effect, Operation
    from autonomy.policy import services as policy_services
    from tests.autonomy.gate_fixtures import build_registry

    registry = build_registry()
    connector = Connector.objects.create(slug="mail", name="Mail", kind=ConnectorKind.EMAIL)
    send = Operation.objects.create(
        connector=connector, slug="send-email", name="Send", effect=Effect.WRITE,
        params_schema={"type": "object"}, content_params=["subject", "body"],
        recipient_params=["to"],
    )  # fmt: skip
    grants.grant(target=send, to=registry.agent.role)
    ContentRule.objects.bulk_create(ContentRule(enabled=False, **r) for r in rules())
    policy_services.registry_changed()
    body = BODY * (5000 // len(BODY)) + BODY[: 5000 % len(BODY)]
    assert len(body.encode()) == 5000
    params = {"to": "ana.silva@customer.example", "subject": "Your order", "body": body}
    agent = registry.agent

    def measure(enabled: bool) -> list[float]:
        ContentRule.objects.update(enabled=enabled)
        policy_services.registry_changed()
        decision = gate.decide(agent=agent, operation=send, params=params)
        assert decision.verdict == "allow", decision.reasons
        assert enabled == any(r["code"].startswith("content_") for r in decision.reasons)
        return common.timed_ms(
            rounds, lambda: gate.decide(agent=agent, operation=send, params=params)
        )

    on, off = common.alternate(series, measure)
    common.emit_overhead(
        FIGURES, prefix="guardrail", ratio="guardrail_overhead", on=on, off=off,
        what="with 20 rules",
    )  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    env = os.environ.get
    parser.add_argument("--rounds", type=int, default=int(env("BENCH_GUARDRAIL_ROUNDS", "400")))
    parser.add_argument("--series", type=int, default=int(env("BENCH_GUARDRAIL_SERIES", "5")))
    parser.add_argument("--json")
    args = parser.parse_args(argv)

    def run(tmp: str) -> None:
        setup_django(tmp)
        bench(args.rounds, args.series)

    return common.run_in_temp(
        name="guardrail", figures=FIGURES, required=REQUIRED, json_path=args.json, bench=run
    )


if __name__ == "__main__":
    sys.exit(main())
