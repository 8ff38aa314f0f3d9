"""Approval load benchmark (run by `make bench` in its own process and a throwaway SQLite).

Fills ``--rows`` approval requests (default 100,000) straight into the tables, spread over
the last ``--hours`` (default 24, so every one of them is in the figures' window: the worst
case, the issue's demo rate of 50 a minute kept up for a day is 72,000): a tenth waiting
(granted to their approver group), seven tenths approved with a person's decision, the rest
expired or cancelled. Then times ``approvals.load.approval_load`` — every figure of the
dashboard's panel and of ``/metrics`` — and the inbox strip's lighter reading, p50 over
``--calls`` calls. The same is measured first at 10,000 rows as the same-run baseline.

Figures: approval_load_rows, approval_load_ms_p50, approval_load_ms_p50_10k,
approval_load_ratio, approval_load_queries, approval_load_strip_ms_p50.
"""

import argparse
import logging
import os
import statistics
import sys
import tempfile
import uuid
from datetime import UTC, timedelta

from tests.bench import common
from tests.bench.common import Figures

REQUIRED = [
    "approval_load_rows",
    "approval_load_ms_p50",
    "approval_load_ms_p50_10k",
    "approval_load_ratio",
    "approval_load_queries",
    "approval_load_strip_ms_p50",
]
BASELINE_ROWS = 10_000
CHUNK = 20_000
APPROVERS = 20
FIGURES = Figures()
emit = FIGURES.emit


def note(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


def setup_django(data_dir: str) -> None:
    from tests.bench.dashboard import setup_django as setup

    setup(data_dir)


def people():
    """Five units (fleet of the dashboard bench), two approver groups of ten people."""
    from django.contrib.auth.models import Group

    from tests.bench.dashboard import fleet
    from tests.factories import UserFactory

    agents, operations = fleet()
    groups = [Group.objects.create(name=f"Bench approvers {g}") for g in range(2)]
    users = []
    for n in range(APPROVERS):
        user = UserFactory(username=f"approver-{n}")
        user.groups.add(groups[n % 2])
        users.append(user)
    return agents, operations, groups, users


def _insert(model, rows: list[dict]) -> None:
    from django.db import connection

    meta = model._meta
    fields = [f for f in meta.concrete_fields if f.column in rows[0] or f.attname in rows[0]]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    sql = (
        f"INSERT INTO {connection.ops.quote_name(meta.db_table)} ({columns}) "
        f"VALUES ({', '.join(['%s'] * len(fields))})"
    )
    with connection.cursor() as cursor:
        for start in range(0, len(rows), CHUNK):
            cursor.executemany(
                sql, [[row[f.attname] for f in fields] for row in rows[start : start + CHUNK]]
            )


def fill(*, start: int, stop: int, total: int, world, now, hours: float) -> None:
    """Requests ``start``..``stop`` of ``total`` evenly spread over ``hours`` before ``now``,
    each on an action of its own, with its decision or grant."""
    from django.db import transaction
    from guardian.shortcuts import assign_perm

    from approvals.models import ApprovalRequest, Decision
    from approvals.selectors import DECIDE
    from autonomy.models import ActionRequest
    from tests.bench import dashboard

    agents, operations, groups, users = world
    dashboard.fill(start=start, stop=stop, total=total, agents=agents, operations=operations,
                   now=now, days=hours / 24)  # fmt: skip
    actions = list(
        ActionRequest.objects.filter(approval__isnull=True)
        .order_by("created_at")
        .values_list("pk", "agent_id", "agent__business_unit_id", "created_at")
    )
    step = timedelta(hours=hours) / total
    naive_now = now.astimezone(UTC).replace(tzinfo=None)
    requests, decisions, waiting = [], [], {g.pk: [] for g in groups}
    for i, (action_id, agent_id, unit_id, _) in zip(range(start, stop), actions, strict=False):
        created = naive_now - step * (total - i)
        kind = i % 10  # 0 waiting, 1-7 approved, 8 expired, 9 cancelled
        group = groups[i % 2]
        decided = None if kind == 0 else min(naive_now, created + timedelta(minutes=1 + i % 90))
        pk = uuid.uuid4()
        requests.append({
            "id": pk.hex, "action_id": action_id.hex, "promotion_id": None,
            "agent_id": agent_id.hex, "business_unit_id": unit_id, "requested_by_id": None,
            "subject": f"request {i}", "risk_score": i % 100, "approver_group_id": group.pk,
            "escalation_group_id": None, "quorum": 1, "approvals": int(1 <= kind <= 7),
            "status": ["pending", *["approved"] * 7, "expired", "cancelled"][kind],
            "expires_at": str(created + timedelta(hours=24)), "expiry_outcome": "deny",
            "escalate_at": None, "escalated_at": None, "reminded_at": None,
            "created_at": str(created), "decided_at": decided and str(decided),
            "expired_undecided": kind == 8, "route_id": None, "route_label": "", "stage": 1,
            "stages": 1, "stage_name": "", "remind_at": None, "escalation_user_id": None,
        })  # fmt: skip
        if kind == 0:
            waiting[group.pk].append(pk)
        elif kind <= 7:
            decisions.append({
                "request_id": pk.hex, "approver_id": users[(i // 2) % APPROVERS].pk,
                "verdict": "approve", "comment": "", "channel": "inbox", "params": None,
                "redirected_to_id": None, "created_at": str(decided), "stage": 1,
            })  # fmt: skip
    with transaction.atomic():
        _insert(ApprovalRequest, requests)
        _insert(Decision, decisions)
        for group in groups:
            assign_perm(DECIDE, group, ApprovalRequest.objects.filter(pk__in=waiting[group.pk]))


def time_load(calls: int, **kwargs) -> tuple[float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from approvals.load import approval_load

    approval_load(**kwargs)  # warm
    times = common.timed_ms(calls, lambda: approval_load(**kwargs))
    with CaptureQueriesContext(connection) as queries:
        approval_load(**kwargs)
    return statistics.median(times), len(queries.captured_queries)


def bench(*, rows: int, calls: int, hours: float) -> None:
    from django.utils import timezone

    from approvals.load import approval_load

    world = people()
    now = timezone.now()
    baseline = min(BASELINE_ROWS, rows)
    fill(start=rows - baseline, stop=rows, total=rows, world=world, now=now, hours=hours)
    small_ms, _ = time_load(calls)
    fill(start=0, stop=rows - baseline, total=rows, world=world, now=now, hours=hours)
    large_ms, queries = time_load(calls)
    strip_ms, _ = time_load(calls, top_approvers=0, hourly=False)
    load = approval_load()
    assert load.arrivals_24h + load.expired_24h >= rows * 0.9, load.arrivals_24h

    emit("approval_load_rows", rows)
    emit("approval_load_ms_p50", round(large_ms, 2))
    emit("approval_load_ms_p50_10k", round(small_ms, 2))
    emit("approval_load_ratio", round(large_ms / small_ms, 2))
    emit("approval_load_queries", queries)
    emit("approval_load_strip_ms_p50", round(strip_ms, 2))
    note(f"{rows} approval requests over {hours:g} h: backlog {load.backlog}, "
         f"{load.decided_24h} decided, {load.expired_24h} expired")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_APPROVAL_ROWS",
                        "100000")))  # fmt: skip
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-approval-load-") as data_dir:
        setup_django(data_dir)
        bench(rows=args.rows, calls=args.calls, hours=args.hours)
    sys.exit(FIGURES.finish(json_path=args.json, required=REQUIRED))


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main()
