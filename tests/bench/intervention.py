"""Intervention benchmark (run by `make bench` in its own process and database).

- kill_to_deny_ms / kill_to_deny_p99_ms: ``agent_kill`` committed → the first refused answer
  to that agent's next ``POST /api/v1/actions/`` (its token, valid a moment before), over
  ``--kills`` agents, each killed once. The request goes through the whole Django stack
  (test client, same process), so the figure is "the kill is in force" plus one request.
- kill_deny_baseline_ms: the same POST with a token that never existed, measured the same
  way: the cost of any refused request, the floor the kill figure is read against.

A throwaway SQLite database and filesystem broker of its own (the owners' notices are
published there and never consumed); no action is allowed, so nothing executes.

    python -m tests.bench.intervention [--kills 50] [--json PATH]
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

from tests.bench import common
from tests.bench.common import Figures, pct

REQUIRED = ("kill_to_deny_ms", "kill_to_deny_p99_ms", "kill_deny_baseline_ms")
FIGURES = Figures()
emit = FIGURES.emit
BODY = json.dumps({"operation": "erp.read-invoice", "params": {}})


def setup_django(data_dir: str) -> None:
    # A filesystem broker in the data folder. The baseline is the cost of refusing a token
    # that matches no credential, asked again and again from one address: the guessing
    # limit (429 after 20) must not cut it short; those 401s are the point, not noise.
    common.setup_django(data_dir, env={
        "CELERY_BROKER_URL": None,
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "AUTONOMY_TOKEN_FAILURE_LIMIT": str(10**9),
    }, quiet="django.request")  # fmt: skip


def bench(kills: int) -> None:
    from django.test import Client

    from agents import services as agent_services
    from interventions import services as intervention
    from tests.autonomy.gate_fixtures import build_registry
    from tests.factories import UserFactory

    registry = build_registry()
    boss = UserFactory(username="bench-boss", is_staff=True, is_superuser=True)
    first = registry.agent
    agents = [(first, registry.token)]
    for i in range(1, kills):
        agent = agent_services.agent_register(
            approved=True, name=f"Bench {i}", slug=f"bench-{i}", owner=first.owner,
            business_unit=first.business_unit, role=first.role,
        )  # fmt: skip
        agents.append((agent, agent_services.credential_issue(agent=agent)[1]))
    client = Client(HTTP_HOST="127.0.0.1")

    def post(token: str):
        return client.post(
            "/api/v1/actions/", BODY, content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )  # fmt: skip

    baseline = []
    for i in range(kills):
        started = time.perf_counter()
        assert post(f"aos_000000{i:06d}_none").status_code == 401
        baseline.append((time.perf_counter() - started) * 1000)

    latencies = []
    for agent, token in agents:
        assert post(token).status_code == 201  # the token works; the path is warm
        intervention.agent_kill(agent=agent, by=boss, reason="bench")
        committed = time.perf_counter()  # agent_kill's transaction has committed on return
        response = post(token)
        latencies.append((time.perf_counter() - committed) * 1000)
        if response.status_code not in (401, 403):
            raise RuntimeError(f"a killed agent was answered {response.status_code}")
    emit("kill_to_deny_ms", round(statistics.median(latencies), 2))
    emit("kill_to_deny_p99_ms", round(pct(latencies, 0.99), 2))
    emit("kill_deny_baseline_ms", round(statistics.median(baseline), 2))
    emit("kill_rounds", len(latencies))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=int(os.environ.get("BENCH_KILLS", "50")))
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="autonomy-intervention-bench-")
    try:
        setup_django(tmp)
        bench(args.kills)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return FIGURES.finish(json_path=args.json, required=REQUIRED)


if __name__ == "__main__":
    sys.exit(main())
