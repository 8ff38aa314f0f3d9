"""Shared-memory benchmark (run by `make bench` in its own process and database).

- memory_read_p50_us / memory_read_p99_us: one ``memory.read`` through the gate, as an agent
  asks it: ``POST /api/v1/actions/`` through the whole Django stack (test client, same
  process), token authentication, the gate's decision, its audit record, and the read
  executed in the transaction that records the decision, the value in the answer.
- memory_gate_baseline_p50_us: the same POST for an allowed read of another connector (the
  gate and its records, executed later by a worker): what the memory read costs beyond the
  gate is the difference.
- memory_lookup_p50_us: the scoped lookup alone (``autonomy.memory.selectors``).

A throwaway SQLite database of its own, ``--entries`` entries in the agent's unit and as many
in another unit; Celery's in-process ``memory://`` broker, so no publish is charged.

    python -m tests.bench.memory [--rounds 300] [--entries 1000] [--json PATH]
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta

from tests.bench import common
from tests.bench.common import Figures, pct

REQUIRED = ("memory_read_p50_us", "memory_gate_baseline_p50_us", "memory_lookup_p50_us")
FIGURES = Figures()
emit = FIGURES.emit


def setup_django(data_dir: str) -> None:
    common.setup_django(data_dir, env={
        "CELERY_BROKER_URL": os.environ.get("BENCH_CELERY_BROKER_URL", "memory://"),
        "AUTONOMY_DEFAULT_ACTIONS_PER_MINUTE": str(10**9),
    })  # fmt: skip


def bench(rounds: int, entries: int) -> None:
    from django.test import Client
    from django.utils import timezone

    from autonomy import grants
    from autonomy.memory import selectors
    from autonomy.models import Connector, MemoryEntry
    from tests.autonomy.gate_fixtures import build_registry
    from tests.factories import BusinessUnitFactory

    registry = build_registry()
    agent = registry.agent
    grants.grant(target=Connector.objects.get(slug="memory"), to=agent.role)
    grants.grant(target=registry.read, to=agent.role)
    other = BusinessUnitFactory(slug="elsewhere", name="Elsewhere")
    now = timezone.now()
    MemoryEntry.objects.bulk_create(
        MemoryEntry(
            business_unit_id=unit, key=f"customer:{i}:contact", value={"prefers": "e-mail"},
            agent=agent, created_at=now, updated_at=now, expires_at=now + timedelta(days=30),
        )
        for unit in (agent.business_unit_id, other.pk)
        for i in range(entries)
    )  # fmt: skip
    client = Client(HTTP_HOST="127.0.0.1")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {registry.token}"}

    def post(body: str) -> float:
        started = time.perf_counter()
        response = client.post("/api/v1/actions/", body, content_type="application/json", **auth)
        took = (time.perf_counter() - started) * 1_000_000
        if response.status_code != 201:
            raise RuntimeError(f"{response.status_code}: {response.content[:300]!r}")
        return took, response.json()

    def memory_body(i: int) -> str:
        key = f"customer:{i % entries}:contact"
        return json.dumps({"operation": "memory.read", "params": {"key": key}})

    baseline_body = json.dumps({"operation": "erp.read-invoice", "params": {}})
    for i in range(20):  # warm both paths
        post(memory_body(i))
        post(baseline_body)
    reads, gate = [], []
    for i in range(rounds):  # alternating, so a burst of load elsewhere lands in both
        took, answer = post(memory_body(i))
        if answer["outcome"] != {**answer["outcome"], "found": True}:
            raise RuntimeError(f"the read did not answer its value: {answer}")
        reads.append(took)
        took, answer = post(baseline_body)
        if answer["decision"] != "allow":
            raise RuntimeError(f"the baseline was not allowed: {answer['reasons']}")
        gate.append(took)
    reader = selectors.Reader(agent.pk, agent.business_unit_id, agent.role_id)
    lookups = []
    for i in range(rounds):
        started = time.perf_counter()
        selectors.memory_lookup(reader=reader, key=f"customer:{i % entries}:contact")
        lookups.append((time.perf_counter() - started) * 1_000_000)
    emit("memory_read_p50_us", round(statistics.median(reads)))
    emit("memory_read_p99_us", round(pct(reads, 0.99)))
    emit("memory_gate_baseline_p50_us", round(statistics.median(gate)))
    emit("memory_lookup_p50_us", round(statistics.median(lookups)))
    emit("memory_bench_entries", entries * 2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "300")))
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="autonomy-memory-bench-")
    try:
        setup_django(tmp)
        bench(args.rounds, args.entries)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return FIGURES.finish(json_path=args.json, required=REQUIRED)


if __name__ == "__main__":
    sys.exit(main())
