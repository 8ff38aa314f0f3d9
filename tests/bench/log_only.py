"""Log-only trial benchmark (run by `make bench` in its own process and database).

- log_only_overhead: the p99 of a decision as ``action_request`` asks for it
  (``gate.decide(trials=True)``) with one running trial of a stricter draft, divided by the
  p99 of the same decision with no trial. Goal ≤ 1.5: a trial costs one more Cedar
  evaluation and the verdict rule again, nothing read per decision.
- log_only_p99_ms / log_only_baseline_p99_ms: the two p99s, in ms.

The draft forbids the request's invoice posting, so every measured decision differs from the
live one (the worst case: a difference for every decision). The two sides alternate in
series (each switch starts or stops the trial and so moves the policy-store version), so a
burst of load elsewhere lands on both. A throwaway SQLite database of its own.

    python -m tests.bench.log_only [--rounds 400 --series 5] [--json PATH]
"""

import argparse
import os
import sys
import time

from tests.bench import common
from tests.bench.common import Figures
from tests.bench.guardrails import setup_django

REQUIRED = ("log_only_overhead", "log_only_p99_ms", "log_only_baseline_p99_ms")
FIGURES = Figures()
emit = FIGURES.emit
STRICTER = (
    'forbid (principal, action, resource == Operation::"erp.post-invoice") '
    "when { context has amount && context.amount > 5000 };"
)


def bench(rounds: int, series: int) -> None:
    from django.contrib.auth.models import Group

    from agents.portal_roles import PortalRole, group_name
    from autonomy import gate
    from autonomy.models import PolicyTrial, TrialStatus
    from autonomy.policy import trials
    from tests.autonomy.gate_fixtures import build_registry
    from tests.factories import UserFactory

    registry = build_registry()
    agent, operation = registry.agent, registry.post
    officer = UserFactory(username="bench-risk-officer", is_staff=True)
    officer.groups.add(Group.objects.get(name=group_name(PortalRole.RISK_OFFICER)))
    params = {"invoice_id": "1", "amount": 9_000}

    def measure(with_trial: bool) -> list[float]:
        for trial in PolicyTrial.objects.filter(status=TrialStatus.RUNNING):
            trials.trial_stop(trial=trial, by=officer)
        if with_trial:
            trials.trial_start(name=f"bench {time.time_ns()}", text=STRICTER, by=officer)
        decision = gate.decide(agent=agent, operation=operation, params=params, trials=True)
        assert len(decision.trials) == (1 if with_trial else 0), decision.trials
        assert decision.verdict != "deny", decision.reasons
        return common.timed_ms(
            rounds,
            lambda: gate.decide(agent=agent, operation=operation, params=params, trials=True),
        )

    on, off = common.alternate(series, measure)
    common.emit_overhead(
        FIGURES, prefix="log_only", ratio="log_only_overhead", on=on, off=off,
        what="with a running trial",
    )  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    env = os.environ.get
    parser.add_argument("--rounds", type=int, default=int(env("BENCH_LOG_ONLY_ROUNDS", "400")))
    parser.add_argument("--series", type=int, default=int(env("BENCH_LOG_ONLY_SERIES", "5")))
    parser.add_argument("--json")
    args = parser.parse_args(argv)

    def run(tmp: str) -> None:
        setup_django(tmp)
        bench(args.rounds, args.series)

    return common.run_in_temp(
        name="log-only", figures=FIGURES, required=REQUIRED, json_path=args.json, bench=run
    )


if __name__ == "__main__":
    sys.exit(main())
