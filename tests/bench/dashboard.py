"""Dashboard benchmark (run by `make bench` in its own process and a throwaway SQLite).

Fills ``--rows`` action records (default 1,000,000) straight into the table (``executemany``
in chunks, one transaction: the gate is not what is measured here), builds the per-minute
rollups with ``rollup_rebuild``, then times ``observability.dashboard.dashboard()`` — every
number the dashboard page shows — p50 over ``--calls`` calls. The same is measured first at
10,000 rows as the same-run baseline.

The actions are spread evenly over ``--days`` (default 30) before now, as a fleet's history
is; the dashboard reads the last 24 hours, from rollups (activity, business units) and from
the ``created_at`` index range (risky agents). ``dashboard_window_rows`` says how many of
the records fall in that window.

Figures: dashboard_rows, dashboard_ms_p50, dashboard_ms_p50_10k, dashboard_ratio,
dashboard_queries, dashboard_window_rows, dashboard_fill_s, rollup_rebuild_s.
"""

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, timedelta

from tests.bench import common
from tests.bench.common import Figures

REQUIRED = [
    "dashboard_rows",
    "dashboard_ms_p50",
    "dashboard_ms_p50_10k",
    "dashboard_ratio",
    "dashboard_queries",
    "dashboard_window_rows",
]
BASELINE_ROWS = 10_000
CHUNK = 20_000
FIGURES = Figures()
emit = FIGURES.emit


def note(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


def setup_django(data_dir: str) -> None:
    common.setup_django(
        data_dir, env={"CELERY_BROKER_URL": None, "OTEL_EXPORTER_OTLP_ENDPOINT": None},
        quiet="django",
    )  # fmt: skip


def fleet():
    """Five business units, fifty agents, ten operations."""
    from autonomy.models import Connector, Operation
    from tests.factories import BusinessUnitFactory, make_agent

    units = [BusinessUnitFactory(slug=f"unit-{u}", name=f"Unit {u}") for u in range(5)]
    agents = [make_agent(slug=f"bench-{a}", business_unit=units[a % 5]) for a in range(50)]
    erp = Connector.objects.create(slug="erp", name="ERP", kind="erp")
    operations = [
        Operation.objects.create(connector=erp, slug=f"op-{o}", name=f"Op {o}") for o in range(10)
    ]
    return agents, operations


def fill(*, start: int, stop: int, total: int, agents, operations, now, days: float) -> None:
    """Rows ``start``..``stop`` of ``total`` evenly spread over ``days`` before ``now``."""
    from django.db import connection, transaction

    from autonomy.models import ActionRequest

    meta = ActionRequest._meta
    fields = [f for f in meta.concrete_fields]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    sql = (
        f"INSERT INTO {connection.ops.quote_name(meta.db_table)} ({columns}) "
        f"VALUES ({', '.join(['%s'] * len(fields))})"
    )
    constant = {
        "credential": None, "params": "{}", "reason": "", "idempotency_key": None,
        "request_hash": "", "risk_factors": "[]", "reasons": "[]", "policy_ids": "{}",
        "amount": None, "request_id": "", "trace_id": "", "started_at": None, "finished_at": None,
        "attempts": 0, "worker": "", "outcome": None, "error": None,
        "autonomy_level": "guarded", "template_key": "", "human_decision": "",
    }  # fmt: skip
    verdicts = [("allow", "succeeded")] * 7 + [("needs_approval", "pending_approval")] * 2
    verdicts += [("deny", "denied")]
    agent_ids = [a.pk.hex for a in agents]
    operation_ids = [o.pk for o in operations]
    step = timedelta(days=days) / total
    naive_now = now.astimezone(UTC).replace(tzinfo=None)
    rng = random.Random(start)
    template = [constant.get(f.name) for f in fields]
    at = {f.name: n for n, f in enumerate(fields)}
    i_id, i_agent, i_op, i_verdict, i_status, i_risk, i_created, i_decided = (
        at[name]
        for name in (
            "id", "agent", "operation", "verdict", "status", "risk_score", "created_at",
            "decided_at",
        )
    )  # fmt: skip
    with transaction.atomic(), connection.cursor() as cursor:
        for chunk in range(start, stop, CHUNK):
            rows = []
            for i in range(chunk, min(chunk + CHUNK, stop)):
                row = template.copy()
                created = str(naive_now - step * (total - i))
                row[i_id] = f"{rng.getrandbits(128):032x}"
                row[i_agent] = agent_ids[i % len(agent_ids)]
                row[i_op] = operation_ids[(i // 7) % len(operation_ids)]
                row[i_verdict], row[i_status] = verdicts[i % len(verdicts)]
                row[i_risk] = rng.randrange(0, 100)
                row[i_created] = row[i_decided] = created
                rows.append(row)
            cursor.executemany(sql, rows)


def time_dashboard(calls: int) -> tuple[float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from portal.dashboard import dashboard

    dashboard()  # warm
    times = common.timed_ms(calls, lambda: dashboard())
    with CaptureQueriesContext(connection) as queries:
        dashboard()
    return statistics.median(times), len(queries.captured_queries)


def bench(*, rows: int, calls: int, days: float) -> None:
    from django.utils import timezone

    from autonomy.models import ActionRequest
    from autonomy.observability.rollup import rollup_rebuild

    agents, operations = fleet()
    now = timezone.now()
    spread = {"total": rows, "agents": agents, "operations": operations, "now": now, "days": days}
    baseline = min(BASELINE_ROWS, rows)

    # The baseline: the first 10,000 rows of the same history — the newest ones, so the
    # dashboard's window is as full as it will be at full size (rows fill oldest-last).
    fill(start=rows - baseline, stop=rows, **spread)
    rollup_rebuild()
    small_ms, _ = time_dashboard(calls)

    started = time.perf_counter()
    fill(start=0, stop=rows - baseline, **spread)
    fill_s = time.perf_counter() - started
    started = time.perf_counter()
    rollup_rebuild()
    rebuild_s = time.perf_counter() - started
    assert ActionRequest.objects.count() == rows
    large_ms, queries = time_dashboard(calls)
    window = ActionRequest.objects.filter(created_at__gte=now - timedelta(hours=24)).count()

    emit("dashboard_rows", rows)
    emit("dashboard_window_rows", window)
    emit("dashboard_ms_p50", round(large_ms, 2))
    emit("dashboard_ms_p50_10k", round(small_ms, 2))
    emit("dashboard_ratio", round(large_ms / small_ms, 2))
    emit("dashboard_queries", queries)
    emit("dashboard_fill_s", round(fill_s, 2))
    emit("rollup_rebuild_s", round(rebuild_s, 2))
    note(
        f"{rows} actions over {days:g} days ({window} in the dashboard's 24 h); "
        f"the baseline holds the newest {baseline} of them"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_DASHBOARD_ROWS",
                        "1000000")))  # fmt: skip
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as data_dir:
        setup_django(data_dir)
        bench(rows=args.rows, calls=args.calls, days=args.days)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(FIGURES, out, indent=2, sort_keys=True)


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    main()
