"""Grouped inbox benchmark (run by `make bench` in its own process and a throwaway SQLite).

- inbox_grouped_10k_p50_ms: the /inbox/groups/ page with ``--rows`` (default 10,000) waiting
  requests the approver may decide, spread over 5 units, 4 roles, 8 operations and every
  risk band (``inbox_grouped_groups`` groups); inbox_grouped_10k_queries its statements.
- group_decide_1000_ms: one approver decides a group of ``--group`` (default 1,000) waiting
  invoice postings in one call (``approvals_decide_group``): each member its own decision,
  audit record and release through the gate; group_decide_1000_queries its statements.

Waiting requests are written set-based (``bulk_create``; one bulk grant); the gate is not
what is measured in the first figure.
"""

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta

from tests.bench import common
from tests.bench.common import Figures

REQUIRED = ["inbox_grouped_10k_p50_ms", "group_decide_1000_ms"]
FIGURES = Figures()
emit = FIGURES.emit
DECIDE = "approvals.decide_approvalrequest"


def note(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


def setup_django(data_dir: str) -> None:
    common.setup_django(
        data_dir, env={"CELERY_BROKER_URL": None, "OTEL_EXPORTER_OTLP_ENDPOINT": None},
        quiet="django",
    )  # fmt: skip


def waiting(*, agents, operations, group, count: int, risk, params) -> None:
    """``count`` waiting requests, bulk-inserted, granted to ``group`` in one statement."""
    from django.utils import timezone
    from guardian.shortcuts import assign_perm

    from approvals.models import ApprovalRequest
    from autonomy.models import ActionRequest

    now = timezone.now()
    rng = random.Random(count)
    actions = ActionRequest.objects.bulk_create(
        [
            ActionRequest(
                agent=agents[i % len(agents)], operation=operations[(i // 7) % len(operations)],
                params=params(i), verdict="needs_approval", status="pending_approval",
                risk_score=risk(rng), created_at=now - timedelta(seconds=count - i),
            )
            for i in range(count)
        ],
        batch_size=2000,
    )  # fmt: skip
    requests = ApprovalRequest.objects.bulk_create(
        [
            ApprovalRequest(
                action=a, agent=a.agent, business_unit=a.agent.business_unit,
                subject=f"{a.agent.name}: {a.operation.slug}", risk_score=a.risk_score,
                approver_group=group, expires_at=now + timedelta(days=1),
            )
            for a in actions
        ],
        batch_size=2000,
    )  # fmt: skip
    assign_perm(DECIDE, group, ApprovalRequest.objects.filter(pk__in=[r.pk for r in requests]))


def bench_grouped(*, rows: int, calls: int, person, group) -> None:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from approvals import groups
    from autonomy.models import Connector, Operation
    from tests.factories import BusinessUnitFactory, make_agent, make_role

    units = [BusinessUnitFactory(slug=f"unit-{u}", name=f"Unit {u}") for u in range(5)]
    roles = [make_role(f"role-{r}") for r in range(4)]
    agents = [
        make_agent(slug=f"bench-{a}", business_unit=units[a % 5], role=roles[(a // 5) % 4])
        for a in range(20)
    ]
    hris = Connector.objects.create(slug="hris", name="HRIS", kind="http")
    operations = [
        Operation.objects.create(connector=hris, slug=f"op-{o}", name=f"Op {o}") for o in range(8)
    ]
    waiting(
        agents=agents, operations=operations, group=group, count=rows,
        risk=lambda rng: rng.randrange(0, 100), params=lambda i: {"employee_id": f"E-{i}"},
    )  # fmt: skip
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(person)
    response = client.get("/inbox/groups/")
    assert response.status_code == 200
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        assert client.get("/inbox/groups/").status_code == 200
        times.append((time.perf_counter() - started) * 1000)
    with CaptureQueriesContext(connection) as queries:
        client.get("/inbox/groups/")
    emit("inbox_grouped_rows", rows)
    emit("inbox_grouped_groups", len(groups.inbox_groups(user=person).groups))
    emit("inbox_grouped_10k_p50_ms", round(statistics.median(times), 1))
    emit("inbox_grouped_10k_queries", len(queries.captured_queries))


def bench_decide(*, members: int, person, group) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from agents.models import Agent
    from approvals import groups, services
    from approvals.models import ApprovalRequest, Channel
    from tests.autonomy.gate_fixtures import build_registry

    registry = build_registry()
    Agent.objects.filter(pk=registry.agent.pk).update(max_actions_per_minute=1_000_000)
    agent = Agent.objects.select_related("business_unit", "role").get(pk=registry.agent.pk)
    waiting(
        agents=[agent], operations=[registry.post], group=group, count=members,
        risk=lambda rng: rng.randrange(20, 40),
        params=lambda i: {"invoice_id": f"INV-{i}", "amount": 10 + i % 50},
    )  # fmt: skip
    first = ApprovalRequest.objects.filter(agent=agent).select_related("action", "agent").first()
    key = groups.GroupKey(registry.post.pk, agent.role_id, agent.business_unit_id, "low")
    assert groups.group_members(user=person, key=key).count() == members
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        outcome = services.approvals_decide_group(
            approver=person, key=str(key), verdict="approve", channel=Channel.API,
            until=timezone.now(), comment="bench",
        )  # fmt: skip
        took = (time.perf_counter() - started) * 1000
    assert outcome.settled == members, (outcome, first)
    emit("group_decide_members", members)
    emit("group_decide_1000_ms", round(took, 1))
    emit("group_decide_1000_queries", len(queries.captured_queries))
    emit("group_decide_ms_per_member", round(took / members, 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_GROUPED_ROWS",
                        "10000")))  # fmt: skip
    parser.add_argument("--group", type=int, default=int(os.environ.get("BENCH_GROUP_MEMBERS",
                        "1000")))  # fmt: skip
    parser.add_argument("--calls", type=int, default=15)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-groups-") as data_dir:
        setup_django(data_dir)
        from django.contrib.auth.models import Group

        from tests.factories import UserFactory

        person = UserFactory(username="group-reader", is_staff=True)
        group = Group.objects.get_or_create(name="Portal: Approver")[0]
        person.groups.add(group)
        bench_grouped(rows=args.rows, calls=args.calls, person=person, group=group)
        bench_decide(members=args.group, person=person, group=group)
    sys.exit(FIGURES.finish(json_path=args.json, required=REQUIRED))


if __name__ == "__main__":
    main()
