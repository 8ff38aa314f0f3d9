"""Standing-approval benchmark (run by `make bench` in its own process and database).

- standing_approval_decision_overhead: the p99 of ``gate.decide`` for a big invoice (risk
  above the unit's approval threshold) with 1,000 live standing approvals — spread over 50
  other roles, other units and another operation, 5 of them matching the agent (by agent,
  role and unit, role, unit) — divided by the p99 of the same decision with none. Goal
  ≤ 1.2.
- standing_approval_p99_ms / standing_approval_baseline_p99_ms: the two p99s, in ms.

With them the decision is an allow by a standing approval, without them it asks a person:
the same request, the same reads. The two sides alternate in series (each switch deletes or
bulk-creates the rows and moves the policy-store version, as a grant does), so a burst of
load elsewhere lands on both. A throwaway SQLite database of its own.

    python -m tests.bench.standing [--rounds 400 --series 5] [--json PATH]
"""

import argparse
import os
import sys
from datetime import timedelta

from tests.bench import common
from tests.bench.common import Figures
from tests.bench.guardrails import setup_django

REQUIRED = (
    "standing_approval_decision_overhead",
    "standing_approval_p99_ms",
    "standing_approval_baseline_p99_ms",
)
FIGURES = Figures()
emit = FIGURES.emit
TOTAL = 1000


def bench(rounds: int, series: int) -> None:
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from autonomy import gate
    from autonomy.models import StandingApproval
    from autonomy.policy import services as policy_services
    from tests.autonomy.gate_fixtures import build_registry
    from tests.factories import BusinessUnitFactory, make_role

    registry = build_registry()
    agent = registry.agent
    unit = agent.business_unit
    unit.approval_threshold = 30
    unit.save()
    grantor = get_user_model().objects.create(username="bench-risk-officer")
    roles = [make_role(f"bench-role-{i}") for i in range(50)]
    units = [BusinessUnitFactory(slug=f"bench-unit-{i}") for i in range(10)]
    now = timezone.now()

    def row(i: int, **scope) -> StandingApproval:
        return StandingApproval(
            max_risk=80, starts_at=now, expires_at=now + timedelta(days=7 + i % 30),
            granted_by=grantor, reason="bench", **scope,
        )  # fmt: skip

    matching = [
        row(0, operation=registry.post, agent=agent),
        row(1, operation=registry.post, role=agent.role, business_unit=unit),
        row(2, operation=registry.post, role=agent.role),
        row(3, operation=registry.post, business_unit=unit),
        row(4, operation=registry.post, role=agent.role, max_amount=10),  # amount above it
    ]
    others = [
        row(i, operation=registry.read if i % 3 else registry.post, role=roles[i % 50],
            business_unit=units[i % 10] if i % 2 else None)
        for i in range(TOTAL - len(matching))
    ]  # fmt: skip
    params = {"invoice_id": "1", "amount": 200_000}

    def measure(with_standing: bool) -> list[float]:
        StandingApproval.objects.all().delete()
        if with_standing:
            for standing in matching + others:
                standing.pk = None
            StandingApproval.objects.bulk_create(matching + others)
        policy_services.registry_changed()  # bulk writes send no signal
        decision = gate.decide(agent=agent, operation=registry.post, params=params)
        expected = "allow" if with_standing else "needs_approval"
        assert decision.verdict == expected, decision.reasons
        return common.timed_ms(
            rounds, lambda: gate.decide(agent=agent, operation=registry.post, params=params)
        )

    on, off = common.alternate(series, measure)
    assert StandingApproval.objects.count() == TOTAL
    common.emit_overhead(
        FIGURES, prefix="standing_approval", ratio="standing_approval_decision_overhead",
        on=on, off=off, what=f"with {TOTAL} standing approvals",
    )  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    env = os.environ.get
    parser.add_argument("--rounds", type=int, default=int(env("BENCH_STANDING_ROUNDS", "400")))
    parser.add_argument("--series", type=int, default=int(env("BENCH_STANDING_SERIES", "5")))
    parser.add_argument("--json")
    args = parser.parse_args(argv)

    def run(tmp: str) -> None:
        setup_django(tmp)
        bench(args.rounds, args.series)

    return common.run_in_temp(
        name="standing", figures=FIGURES, required=REQUIRED, json_path=args.json, bench=run
    )


if __name__ == "__main__":
    sys.exit(main())
