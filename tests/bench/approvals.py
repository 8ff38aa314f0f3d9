"""Approvals benchmark (run by `make bench` in its own process and database).

- approval_resume_p50_ms / _p99_ms: decision committed → the waiting action starts
  executing on a real Celery worker (its ``started_at``), over BENCH_APPROVALS approvals.
- inbox_10k_p50_ms / inbox_10k_queries: the /inbox/ page with 10,000 pending requests the
  approver may decide, beside inbox_10_p50_ms (10 pending) as the same-run baseline.

Broker: CELERY_BROKER_URL if set (CI: Redis), else the embedded filesystem broker.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bench import common
from tests.bench.common import pct

ROOT = Path(__file__).resolve().parents[2]
APPROVALS = int(os.environ.get("BENCH_APPROVALS", "200"))
INBOX_ROWS = int(os.environ.get("BENCH_INBOX_ROWS", "10000"))


def emit(name: str, value) -> None:
    print(f"{name}: {value}", flush=True)


def setup_django(data_dir: str) -> None:
    common.setup_django(
        data_dir, env={"CELERY_TASK_DEFAULT_QUEUE": f"bench-approvals-{os.getpid()}"}
    )


def start_worker(data_dir: str) -> subprocess.Popen:
    from django.conf import settings

    env = {
        **os.environ,
        "AUTONOMY_DATA_DIR": data_dir,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_TASK_DEFAULT_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
    }
    log = open(Path(data_dir) / "worker.log", "w")  # noqa: SIM115 (kept open for the worker)
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo",
         "-Q", settings.CELERY_TASK_DEFAULT_QUEUE, "--without-gossip", "--without-mingle",
         "--without-heartbeat", "--loglevel=WARNING"],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    time.sleep(3)  # the worker connects; the first measured approval also waits if it has not
    return proc


def bench_resume() -> None:
    from django.contrib.auth.models import Group

    from approvals import services as approvals
    from approvals.models import ApprovalRequest, Channel
    from autonomy import actions
    from autonomy.models import ActionRequest
    from tests.autonomy.gate_fixtures import build_registry
    from tests.factories import UserFactory

    registry = build_registry()
    unit = registry.agent.business_unit
    unit.approval_threshold = 0
    unit.save()
    type(registry.agent).objects.filter(pk=registry.agent.pk).update(max_actions_per_minute=100000)
    agent = (
        type(registry.agent)
        .objects.select_related("role__group", "business_unit", "service_user")
        .get(pk=registry.agent.pk)
    )
    approver = UserFactory(username="bench-approver")
    approver.groups.add(Group.objects.get_or_create(name="Portal: Approver")[0])
    pending = []
    for i in range(APPROVALS):
        action, _ = actions.action_request(
            agent=agent,
            operation_key="erp.post-invoice",
            params={"invoice_id": f"B-{i}", "amount": 10},
        )
        pending.append(ApprovalRequest.objects.get(action=action).pk)
    latencies = []
    for request_id in pending:
        approvals.approval_decide(
            request_id=request_id, approver=approver, verdict="approve", channel=Channel.API
        )
        committed = time.time()
        action_id = ApprovalRequest.objects.values_list("action_id", flat=True).get(pk=request_id)
        deadline = committed + 30
        while time.time() < deadline:
            started = ActionRequest.objects.values_list("started_at", flat=True).get(pk=action_id)
            if started:
                latencies.append(max(0.0, (started.timestamp() - committed) * 1000))
                break
            time.sleep(0.002)
        else:
            raise RuntimeError("an approved action did not start within 30 s")
    emit("approval_resume_p50_ms", round(statistics.median(latencies), 1))
    emit("approval_resume_p99_ms", round(pct(latencies, 0.99), 1))


def bench_inbox() -> None:
    from django.contrib.auth.models import Group
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone
    from guardian.shortcuts import assign_perm

    from agents.models import Agent
    from approvals.models import ApprovalRequest
    from autonomy.models import ActionRequest, Operation
    from tests.factories import UserFactory

    agent = Agent.objects.select_related("business_unit").first()
    operation = Operation.objects.get(slug="post-invoice")
    group = Group.objects.get(name="Portal: Approver")
    person = UserFactory(username="inbox-reader", is_staff=True)
    person.groups.add(group)
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(person)

    def fill(total: int) -> None:
        now = timezone.now()
        have = ApprovalRequest.objects.filter(status="pending").count()
        actions = ActionRequest.objects.bulk_create(
            ActionRequest(agent=agent, operation=operation, params={"invoice_id": f"I-{i}", "amount": i},
                          verdict="needs_approval", status="pending_approval", risk_score=i % 100,
                          created_at=now)
            for i in range(have, total)
        )  # fmt: skip
        requests = ApprovalRequest.objects.bulk_create(
            ApprovalRequest(action=a, agent=agent, business_unit=agent.business_unit,
                            subject=f"{agent.name}: {operation.key}", risk_score=a.risk_score,
                            approver_group=group, expires_at=now + timezone.timedelta(days=1))
            for a in actions
        )  # fmt: skip
        assign_perm(
            "approvals.decide_approvalrequest",
            group,
            ApprovalRequest.objects.filter(pk__in=[r.pk for r in requests]),
        )

    def page_ms() -> tuple[float, int]:
        client.get("/inbox/")
        times = []
        for _ in range(15):
            started = time.perf_counter()
            assert client.get("/inbox/").status_code == 200
            times.append((time.perf_counter() - started) * 1000)
        with CaptureQueriesContext(connection) as ctx:
            client.get("/inbox/")
        return statistics.median(times), len(ctx.captured_queries)

    ApprovalRequest.objects.filter(status="pending").delete()
    fill(10)
    small_ms, small_q = page_ms()
    fill(INBOX_ROWS)
    big_ms, big_q = page_ms()
    emit("inbox_10_p50_ms", round(small_ms, 1))
    emit(f"inbox_{INBOX_ROWS // 1000}k_p50_ms", round(big_ms, 1))
    emit(f"inbox_{INBOX_ROWS // 1000}k_queries", big_q)
    emit("inbox_query_growth", big_q - small_q)
    emit("inbox_time_ratio_vs_10", round(big_ms / small_ms, 2))


def main() -> None:
    data_dir = tempfile.mkdtemp(prefix="bench-approvals-")
    setup_django(data_dir)
    worker = start_worker(data_dir)
    try:
        bench_resume()
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    bench_inbox()


if __name__ == "__main__":
    main()
