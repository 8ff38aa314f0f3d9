"""Workflow and agent analytics: rollups kept by the real services match a recount from the
raw rows, the pages read only rollups (as many queries for 10 runs as for 100,000), only
people of the portal see them, and ``/metrics`` carries the same figures."""

import math
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.db import connection
from django.db.models import Sum

from agents.portal_roles import PortalRole, group_name
from approvals import services as approvals
from autonomy import connectors, grants
from autonomy.models import ActionRequest, ActionStatus, Verdict
from tests.approvals.conftest import approver
from tests.factories import UserFactory
from tests.workflows.fixtures import build_world, published, step
from tests.workflows.test_retry_and_cancel import cancel, undone_by_void
from workflows import analytics, services
from workflows.models import (
    HISTOGRAM_BOUNDS_MS,
    AgentRollup,
    Phase,
    RunEvent,
    RunRollup,
    RunStatus,
    StepRollup,
    StepRun,
    StepStatus,
    StepTimeRollup,
    Template,
)
from workflows.services.rollup import analytics_backfill, analytics_rebuild, bucket_of, hour_of

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TASK_WAIT, TASK_WORK, HUMAN_WAIT = 40, 150, 900  # seconds


def onboarding():
    """A task for an agent, an operation that a person approves above 10,000 (and whose
    effect is undone if a later step fails), and a notification."""
    return published(
        "onboard",
        [
            step("gather", None, timeout_seconds=3600),
            step("post", "post-invoice", after=["gather"], input_map={"amount": "$.amount"},
                 approval="when", approval_when="amount > 10000", max_retries=2,
                 retry_backoff_seconds=0, compensation_operation="erp.void-invoice",
                 compensation_input_map={"amount": "$.amount"}),
            step("notify", "notify", after=["post"]),
        ],
    )  # fmt: skip


@pytest.fixture
def flaky(monkeypatch):
    """The ERP fails the calls whose numbers are in ``fail``."""
    calls = {"n": 0, "fail": set()}
    ledger = connectors.EXECUTORS["erp"]

    def erp(**kwargs):
        calls["n"] += 1
        if calls["n"] in calls["fail"]:
            raise connectors.ConnectorError("ERP answered 503")
        return ledger(**kwargs)

    monkeypatch.setitem(connectors.EXECUTORS, "erp", erp)
    return calls


def play(world, clock, template, *, amount: int, verdict: str | None = None) -> None:
    """One run: the task waits ``TASK_WAIT`` s for an agent who works ``TASK_WORK`` s on it;
    a large amount waits ``HUMAN_WAIT`` s for a person's ``verdict``."""
    run = services.run_start(template=template, context={"amount": amount})
    clock.shift(TASK_WAIT)
    clerk = world.agents[0]
    task = services.task_next(agent=clerk)
    assert task is not None and task.run_id == run.pk
    clock.shift(TASK_WORK)
    services.task_complete(agent=clerk, step_run_id=task.pk, output={"ok": True})
    post = StepRun.objects.select_related("action").get(run=run, step__key="post")
    if post.status == StepStatus.WAITING_APPROVAL:
        clock.shift(HUMAN_WAIT)
        approvals.approval_decide(request_id=post.action.approval.pk, approver=world.boss,
                                  verdict=verdict or "approve", channel="inbox")  # fmt: skip
    clock.shift(60)


@pytest.fixture
def seeded(eager, world, flaky):
    """Runs of two versions through the real services, on a clock that moves: successes,
    approvals, a rejection, a retried step, and a failure that compensates."""
    world.boss = approver("boss")
    with time_machine.travel(START, tick=False) as clock:
        v1 = onboarding()
        for amount in (100, 200, 300):
            play(world, clock, v1, amount=amount)
        play(world, clock, v1, amount=20_000)  # a person approves
        play(world, clock, v1, amount=30_000, verdict="reject")  # post fails: the run fails
        flaky["fail"] = {flaky["n"] + 1}  # the next post fails once, then is retried
        play(world, clock, v1, amount=400)
        clock.shift(3600)  # the next hour
        v2 = onboarding()
        play(world, clock, v2, amount=500)
        grants.revoke_grant(target=world.ops["notify"], to=world.clerks)
        play(world, clock, v2, amount=600)  # notify is denied: post is compensated
    return v1, v2


def raw_step_counts(template: Template) -> dict[str, dict[str, int]]:
    """The step counters recounted from step runs and run events."""
    out = {}
    for s in template.steps.all():
        runs = StepRun.objects.filter(step=s)
        events = RunEvent.objects.filter(step_run__step=s)
        out[s.key] = {
            "started": runs.filter(ready_at__isnull=False).count(),
            "succeeded": runs.filter(
                status__in=[StepStatus.SUCCEEDED, StepStatus.COMPENSATED]
            ).count(),
            "failed": runs.filter(status=StepStatus.FAILED).count(),
            "retried": events.filter(kind="retry_scheduled").count(),
            "compensated": runs.filter(status=StepStatus.COMPENSATED).count(),
            "skipped": runs.filter(status=StepStatus.SKIPPED).count(),
        }
    return out


def test_step_counters_match_a_recount_of_the_step_runs(seeded):
    v1, v2 = seeded
    since = START - timedelta(days=1)
    for template in (v1, v2):
        figures = analytics.version_figures(template=template, since=since)
        assert {s.step.key: s.counts for s in figures.steps} == raw_step_counts(template)
    one = {s.step.key: s for s in analytics.version_figures(template=v1, since=since).steps}
    assert one["post"].counts["retried"] == 1 and one["post"].counts["failed"] == 1
    two = {s.step.key: s for s in analytics.version_figures(template=v2, since=since).steps}
    assert two["post"].counts["compensated"] == 1 and two["notify"].counts["failed"] == 1


def test_run_counters_and_durations_match_the_runs(seeded):
    v1, _ = seeded
    figures = analytics.version_figures(template=v1, since=START - timedelta(days=1))
    runs = v1.runs.all()
    assert figures.runs == {
        "started": runs.count(),
        "succeeded": runs.filter(status=RunStatus.SUCCEEDED).count(),
        "failed": runs.filter(status=RunStatus.FAILED).count(),
        "cancelled": runs.filter(status=RunStatus.CANCELLED).count(),
    }
    durations = [(r.finished_at - r.created_at).total_seconds() * 1000 for r in runs]
    assert figures.run_time.count == len(durations) == 6
    assert figures.run_time.total_ms == round(sum(durations))


def exact_percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def test_phase_percentiles_are_the_buckets_of_the_raw_durations(seeded):
    """Waits and work recounted from step runs and their actions: each percentile is the
    bound of the bucket the exact one falls in, and each total is the exact sum."""
    v1, _ = seeded
    figures = analytics.version_figures(template=v1, since=START - timedelta(days=1))
    by_key = {s.step.key: s for s in figures.steps}
    finished = [StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.COMPENSATED]

    def ms(later, earlier):
        return (later - earlier).total_seconds() * 1000

    gather = StepRun.objects.filter(step__template=v1, step__key="gather", status__in=finished)
    waits = [ms(sr.started_at, sr.ready_at) for sr in gather]
    assert set(waits) == {TASK_WAIT * 1000}
    posts = StepRun.objects.filter(step__template=v1, step__key="post", status__in=finished)
    human = [
        ms(sr.action.started_at or sr.action.finished_at, sr.action.created_at)
        if sr.action.verdict == Verdict.NEEDS_APPROVAL
        else 0
        for sr in posts.select_related("action")
    ]
    assert sorted(human)[-2:] == [HUMAN_WAIT * 1000] * 2
    connector = [
        ms(sr.action.finished_at, sr.action.started_at) if sr.action.started_at else 0
        for sr in posts.select_related("action")
    ]
    for s, phase, raw in [
        (by_key["gather"], Phase.WAIT_AGENT, waits),
        (by_key["post"], Phase.WAIT_HUMAN, human),
        (by_key["post"], Phase.CONNECTOR, connector),
    ]:
        figure = s.phases[phase]
        assert figure.count == len(raw) and figure.total_ms == round(sum(raw))
        for q, reported in ((0.5, figure.p50), (0.9, figure.p90)):
            bucket = bucket_of(round(exact_percentile(raw, q)))
            assert reported == HISTOGRAM_BOUNDS_MS[bucket]
    assert by_key["gather"].phases[Phase.RUNNING].p50 == HISTOGRAM_BOUNDS_MS[bucket_of(150_000)]


def test_the_bottleneck_names_the_step_and_where_its_time_goes(seeded):
    v1, _ = seeded
    figures = analytics.version_figures(template=v1, since=START - timedelta(days=1))
    found = figures.bottleneck
    # The task takes 190 s every run; the post waits 900 s for a person on two runs of six.
    assert found.step.step.key == "post"
    assert found.sentence.startswith("Step 'post' is the bottleneck")
    assert found.sentence.endswith("it spends 100% of its time waiting for a person.")
    assert found.notes == []  # one failure and one retry in six: under the 20% that is named


def test_agent_figures_match_a_recount_of_the_actions(seeded):
    since = START - timedelta(days=1)
    rows = {row["agent__slug"]: row for row in analytics.agent_figures(since=since)}
    for slug, row in rows.items():
        actions = ActionRequest.objects.filter(agent__slug=slug)
        ended = actions.exclude(status=ActionStatus.DENIED, verdict=Verdict.DENY)
        assert row["succeeded"] == actions.filter(status=ActionStatus.SUCCEEDED).count()
        assert row["failed"] == actions.filter(status=ActionStatus.FAILED).count()
        assert row["denied"] == ended.filter(status=ActionStatus.DENIED).count()
        assert row["approvals_needed"] == actions.filter(verdict=Verdict.NEEDS_APPROVAL).count()
        assert (
            row["overridden"] == actions.filter(human_decision__in=["changed", "rejected"]).count()
        )
        spend = actions.filter(status=ActionStatus.SUCCEEDED).aggregate(s=Sum("amount"))["s"]
        assert row["spend"] == (spend or Decimal(0))
    clerk = rows["clerk-0"]
    assert clerk["approvals_needed"] == 2 and clerk["overridden"] == 1 and clerk["answered"] == 2
    roles = {row["agent__role__slug"]: row for row in analytics.role_figures(since=since)}
    assert roles["wf-clerk"]["settled"] == sum(
        r["settled"] for r in rows.values() if r["agent__role__slug"] == "wf-clerk"
    )


def rollup_rows() -> dict:
    def rows(model, *keys):
        fields = [f.name for f in model._meta.concrete_fields if f.name != "id"]
        return sorted(tuple(r[f] for f in fields) for r in model.objects.values(*fields))

    return {m.__name__: rows(m) for m in (StepRollup, StepTimeRollup, RunRollup, AgentRollup)}


def test_rebuilding_from_history_gives_the_rows_kept_live(seeded):
    live = rollup_rows()
    assert all(live.values())
    analytics_rebuild()
    assert rollup_rows() == live


def test_a_step_a_person_fails_counts_the_same_live_and_rebuilt(eager, world):
    """A step the gate denies waits for a person, who fails it: its last action's times count
    as the rebuild counts them."""
    template = published(
        "deny", [step("a", "notify", escalate_to_human=True), step("b", after=["a"])]
    )
    grants.revoke_grant(target=world.ops["notify"], to=world.clerks)
    with time_machine.travel(START, tick=False) as clock:
        run = services.run_start(template=template, by=world.officer)
        a = StepRun.objects.get(run=run, step__key="a")
        assert a.status == StepStatus.ESCALATED
        clock.shift(600)
        services.step_fail(step_run=a, by=world.officer, reason="no grant")
    live = rollup_rows()
    (figures,) = [s for s in analytics.version_figures(template=template, since=START).steps
                  if s.step.key == "a"]  # fmt: skip
    assert figures.counts["failed"] == 1 and figures.phases[Phase.CONNECTOR].count == 1
    analytics_rebuild()
    assert rollup_rows() == live


def test_a_step_undone_after_its_run_was_cancelled_counts_the_same_live_and_rebuilt(
    eager, world, during_call
):
    """The cancel came while the step's action executed: the step never succeeded as a step,
    its effect was undone; the run counts as cancelled."""
    during_call["post-invoice"] = cancel(world)
    with time_machine.travel(START, tick=False):
        run = services.run_start(template=undone_by_void(), context={"amount": 70})
    assert StepRun.objects.get(run=run, step__key="post").status == StepStatus.COMPENSATED
    live = rollup_rows()
    figures = analytics.version_figures(template=run.template, since=START)
    post = next(s for s in figures.steps if s.step.key == "post")
    assert post.counts["compensated"] == 1 and post.counts["succeeded"] == 0
    assert figures.runs["cancelled"] == 1
    analytics_rebuild()
    assert rollup_rows() == live


def test_backfill_fills_empty_rollups_from_history_and_leaves_kept_ones(seeded):
    live = rollup_rows()
    assert analytics_backfill() == 0  # kept live already: left as they are
    for model in (StepRollup, StepTimeRollup, RunRollup, AgentRollup):
        model.objects.all().delete()
    assert analytics_backfill() > 0
    assert rollup_rows() == live


# --- the pages ------------------------------------------------------------------------------

# Session and user (2), portal person (2), nav permissions (2), then the page's own reads:
# index: templates, run rollups, step times (bottlenecks), agents, roles; a template: its versions, then per version
# shown steps, step rollups, time rollups and run rollups (two versions), and the chart.
INDEX_MAX_QUERIES = 11
TEMPLATE_MAX_QUERIES = 16


def person(username: str, role: PortalRole = PortalRole.VIEWER):
    user = UserFactory(username=username, is_staff=True)
    user.groups.add(Group.objects.get(name=group_name(role)))
    return user


def bulk_history(template: Template, runs: int) -> None:
    """``runs`` runs of ``template`` over the last week straight into the rollups, in bulk:
    an hour's row per step, phase and hour, as the services would have left them."""
    now = hour_of(datetime.now(UTC))
    hours = [now - timedelta(hours=h) for h in range(24 * 7)]
    per_hour = runs // len(hours) + 1
    steps = list(template.steps.all())
    RunRollup.objects.bulk_create(
        RunRollup(hour=h, template=template, started=per_hour, succeeded=per_hour - 1, failed=1,
                  count=per_hour, total_ms=per_hour * 60_000, h07=per_hour - 1, h09=1)
        for h in hours
    )  # fmt: skip
    StepRollup.objects.bulk_create(
        StepRollup(hour=h, template=template, step=s, started=per_hour, succeeded=per_hour)
        for h in hours
        for s in steps
    )
    StepTimeRollup.objects.bulk_create(
        StepTimeRollup(hour=h, template=template, step=s, phase=p, count=per_hour,
                       total_ms=per_hour * 2_000, h05=per_hour)
        for h in hours
        for s in steps
        for p in Phase.values
    )  # fmt: skip


@pytest.mark.parametrize("runs", [10, 100_000])
def test_pages_cost_the_same_queries_for_10_and_100_000_runs(
    world, client, django_assert_max_num_queries, runs
):
    v1 = onboarding()
    v2 = onboarding()
    bulk_history(v1, runs)
    bulk_history(v2, runs)
    client.force_login(person("reader"))
    with django_assert_max_num_queries(INDEX_MAX_QUERIES):
        index = client.get("/workflows/analytics/")
    with django_assert_max_num_queries(TEMPLATE_MAX_QUERIES):
        page = client.get("/workflows/analytics/onboard/?window=7d")
    assert index.status_code == page.status_code == 200
    assert sum(r.started for r in RunRollup.objects.filter(template=v2)) >= runs
    body = page.content.decode()
    assert "is the bottleneck" in body and "v2 and v1 side by side" in body


def test_the_template_page_shows_the_bottleneck_and_both_versions(seeded, client):
    client.force_login(person("reader"))
    body = client.get("/workflows/analytics/onboard/?window=30d&v=1&vs=2").content.decode()
    assert "Step &#x27;post&#x27; is the bottleneck" in body
    assert 'data-step="gather"' in body and "v1 and v2 side by side" in body
    index = client.get("/workflows/analytics/?window=30d").content.decode()
    assert 'data-template="onboard"' in index and "clerk-0" in index
    # v2's runs never waited for a person: its task is its bottleneck.
    assert '<span class="bottleneck-cell" data-step="gather">gather</span>' in index
    assert "(v2)" in index


@pytest.mark.parametrize("path", ["/workflows/analytics/", "/workflows/analytics/onboard/"])
def test_only_people_of_the_portal_read_analytics(world, client, path):
    onboarding()
    assert client.get(path).status_code == 302  # nobody signed in: to sign-in
    client.force_login(UserFactory(username="staff-no-role", is_staff=True))
    assert client.get(path).status_code == 403
    client.force_login(world.agents[0].service_user)
    assert client.get(path).status_code in (302, 403)  # an agent never reads them
    client.force_login(person("viewer"))
    assert client.get(path).status_code == 200


def test_bad_parameters_fall_back_to_the_defaults(world, client):
    onboarding()
    client.force_login(person("viewer"))
    for query in ("window=forever", "v=abc&vs=-1", "v=99&vs=1", "v=1&vs=1", "window=<script>"):
        response = client.get(f"/workflows/analytics/onboard/?{query}")
        assert response.status_code == 200, query
        assert b"<script>" not in response.content
    assert client.get("/workflows/analytics/?window=%00").status_code == 200


def test_an_unknown_workflow_is_not_found(world, client):
    client.force_login(person("viewer"))
    assert client.get("/workflows/analytics/nope/").status_code == 404


def test_metrics_carry_the_step_figures(seeded, client, settings):
    settings.DEBUG = True
    with time_machine.travel(START + timedelta(hours=3), tick=False):
        text = client.get("/metrics").content.decode()
    started = StepRun.objects.filter(step__template__version=1, step__key="post").count()
    assert (
        'autonomy_workflow_steps_last_24h{outcome="started",step="post",template="onboard",'
        f'version="1"}} {float(started)}' in text
    )
    # Two of six posts waited 900 s for a person: p90 is in the bucket up to 1,000 s.
    assert (
        'autonomy_workflow_step_seconds_last_24h{phase="wait_human",quantile="0.9",'
        'step="post",template="onboard",version="1"} 1000.0' in text
    )
    assert (
        'autonomy_workflow_runs_last_24h{outcome="failed",template="onboard",version="1"} 1.0'
        in text
    )
    assert 'autonomy_role_actions_last_24h{figure="overridden",role="wf-clerk"} 1.0' in text


# --- concurrency on PostgreSQL ------------------------------------------------------------------


def test_steps_finishing_at_once_are_all_counted_and_never_deadlock(postgres, transactional_db):
    """Twelve agents finish the same step of twelve runs at the same moment: each transaction
    adds to the same rollup rows (the step's counters and times, the version's runs), and
    none is lost or waits on another crosswise."""
    agents = build_world(clerks=12).agents
    template = published("together", [step("only", None)])
    for _ in agents:
        services.run_start(template=template)
    tasks = [services.task_next(agent=agent) for agent in agents]
    barrier = threading.Barrier(len(agents))
    errors: list[BaseException] = []

    def finish(agent, task) -> None:
        try:
            barrier.wait(timeout=30)
            services.task_complete(agent=agent, step_run_id=task.pk, output={"ok": True})
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=finish, args=pair) for pair in zip(agents, tasks, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors, errors[:3]
    figures = analytics.version_figures(template=template, since=START - timedelta(days=400))
    (only,) = figures.steps
    assert only.counts["started"] == only.counts["succeeded"] == len(agents)
    assert only.phases[Phase.RUNNING].count == len(agents)
    assert figures.runs["started"] == figures.runs["succeeded"] == len(agents)
    assert figures.run_time.count == len(agents)
