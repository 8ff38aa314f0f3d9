"""Workflow analytics benchmark (run by `make bench` in its own process and a throwaway
SQLite).

Seeds the rollups of a four-step template in two versions straight into their tables (one
``bulk_create`` per model, as the services would have left them after ``--runs`` runs of each
version spread over 30 days: an hour's row per step, phase and hour), then times the
template's analytics page (``/workflows/analytics/<key>/?window=30d``: both versions side by
side, every step's percentiles, the bottleneck, the charts) through Django's test client,
p50 over ``--calls`` requests. The same is measured first with 10 runs as the same-run
baseline.

Figures: analytics_100k_p50_ms, analytics_10_p50_ms, analytics_ratio, analytics_queries,
analytics_rollup_rows.
"""

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta

from tests.bench.common import Figures
from tests.bench.dashboard import note, setup_django

REQUIRED = ["analytics_100k_p50_ms", "analytics_10_p50_ms", "analytics_ratio", "analytics_queries"]
HOURS = 30 * 24
FIGURES = Figures()
emit = FIGURES.emit


def templates():
    """Two published versions of a four-step workflow (a task, a person's approval, two
    operations)."""
    from workflows.models import Step, StepKind, Template, TemplateStatus

    versions = []
    for version in (1, 2):
        template = Template.objects.create(
            key="bench-onboarding", version=version, name="Bench onboarding",
            status=TemplateStatus.PUBLISHED,
        )  # fmt: skip
        for position, key in enumerate(("gather", "verify", "update", "welcome")):
            Step.objects.create(
                template=template, key=key, name=key.title(), position=position,
                kind=StepKind.TASK if key == "gather" else StepKind.OPERATION,
            )  # fmt: skip
        versions.append(template)
    return versions


def seed(template, runs: int) -> int:
    """Rollup rows for ``runs`` runs of ``template`` spread over the last 30 days, in bulk."""
    from workflows.models import Phase, RunRollup, StepRollup, StepTimeRollup
    from workflows.services.rollup import hour_of

    for model in (RunRollup, StepRollup, StepTimeRollup):
        model.objects.filter(template=template).delete()
    now = hour_of(datetime.now(UTC))
    hours = [now - timedelta(hours=h) for h in range(HOURS)]
    per_hour = [runs // HOURS + (1 if h < runs % HOURS else 0) for h in range(HOURS)]
    steps = list(template.steps.all())
    RunRollup.objects.bulk_create(
        RunRollup(hour=hour, template=template, started=n, succeeded=n, count=n,
                  total_ms=n * 600_000, h09=n)
        for hour, n in zip(hours, per_hour, strict=True) if n
    )  # fmt: skip
    StepRollup.objects.bulk_create(
        StepRollup(hour=hour, template=template, step=s, started=n, succeeded=n)
        for hour, n in zip(hours, per_hour, strict=True) if n
        for s in steps
    )  # fmt: skip
    StepTimeRollup.objects.bulk_create(
        (
            StepTimeRollup(hour=hour, template=template, step=s, phase=p, count=n,
                           total_ms=n * 3_000, h05=n)
            for hour, n in zip(hours, per_hour, strict=True) if n
            for s in steps
            for p in Phase.values
        ),
        batch_size=5000,
    )  # fmt: skip
    return sum(model.objects.filter(template=template).count()
               for model in (RunRollup, StepRollup, StepTimeRollup))  # fmt: skip


def time_page(client, url: str, calls: int) -> tuple[float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    assert client.get(url).status_code == 200  # warm
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    return statistics.median(times), len(queries.captured_queries)


def bench(*, runs: int, calls: int) -> None:
    from django.test import Client
    from django.test.utils import setup_test_environment

    from tests.factories import UserFactory

    setup_test_environment()  # the test client's host is allowed
    v1, v2 = templates()
    client = Client()
    client.force_login(UserFactory(username="bench-reader", is_staff=True, is_superuser=True))
    url = f"/workflows/analytics/{v2.key}/?window=30d&v=2&vs=1"
    for template in (v1, v2):
        seed(template, 10)
    small_ms, _ = time_page(client, url, calls)
    rows = sum(seed(template, runs) for template in (v1, v2))
    large_ms, queries = time_page(client, url, calls)
    body = client.get(url).content.decode()
    assert "is the bottleneck" in body and f">{runs}<" in body, "the page shows the runs"
    emit("analytics_100k_p50_ms", round(large_ms, 2))
    emit("analytics_10_p50_ms", round(small_ms, 2))
    emit("analytics_ratio", round(large_ms / small_ms, 2))
    emit("analytics_queries", queries)
    emit("analytics_rollup_rows", rows)
    note(f"{runs} runs of each of two versions over 30 days, as {rows} rollup rows")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-analytics-") as data_dir:
        setup_django(data_dir)
        bench(runs=args.runs, calls=args.calls)


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:
        print(f"# analytics bench failed: {exc!r}", file=sys.stderr)
        raise
