"""Workflow and agent analytics, kept as work happens: hourly rollup rows per template version
and step (``StepRollup``, ``StepTimeRollup``), per template version (``RunRollup``) and per
agent (``AgentRollup``).

Each writer of a step's or a run's status adds to its hour's row in its own transaction (one
upsert per row at the transaction's end, ``RollupCounts``), so the figures can never drift
from the rows they count; the pages and
``/metrics`` read only these rows (``workflows.analytics``). ``step_times`` is the one
definition of where a step's time went; ``analytics_rebuild`` recomputes everything from
history with it (seeded data, or rows written before the rollups existed).
"""

from bisect import bisect_left
from collections import defaultdict
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from autonomy import counters
from autonomy.models import ActionRequest, ActionStatus, HumanDecision, Verdict
from workflows.models import (
    HISTOGRAM_BOUNDS_MS,
    HISTOGRAM_FIELDS,
    AgentRollup,
    Phase,
    Run,
    RunEvent,
    RunRollup,
    RunStatus,
    Step,
    StepRollup,
    StepRun,
    StepStatus,
    StepTimeRollup,
)

STEP_COUNTERS = ("started", "succeeded", "failed", "retried", "compensated", "skipped")
RUN_COUNTERS = ("started", "succeeded", "failed", "cancelled")
AGENT_COUNTERS = (
    "settled", "succeeded", "failed", "denied", "approvals_needed", "answered", "overridden",
)  # fmt: skip
TIME_ADDS = ("count", "total_ms", *HISTOGRAM_FIELDS)
# The run events that are a retry of a step: scheduled after a failed attempt, or a person's.
RETRY_EVENTS = ("retry_scheduled", "step_retried")
OVERRIDES = (HumanDecision.CHANGED, HumanDecision.REJECTED)
# What ``step_times`` reads of a step's action.
ACTION_TIMES = ("verdict", "created_at", "started_at", "finished_at")


def hour_of(moment: datetime) -> datetime:
    """The hour a rollup row for ``moment`` is kept under."""
    return moment.replace(minute=0, second=0, microsecond=0)


def bucket_of(ms: int) -> int:
    """The histogram bucket of a duration: the first whose upper bound it does not pass."""
    return bisect_left(HISTOGRAM_BOUNDS_MS, ms)


def _ms(later: datetime | None, earlier: datetime | None) -> int:
    if later is None or earlier is None:
        return 0
    return max(0, round((later - earlier).total_seconds() * 1000))


def step_times(*, step_run: StepRun, action: ActionRequest | None) -> dict[str, int]:
    """Where a finished step run's time went, in milliseconds, by ``Phase``: waiting for an
    agent (made ready until first taken), waiting for a person (its last action's approval),
    in the connector (its last action's call), and running (the rest of its time from first
    taken to finished). Empty for a step never taken. One definition for the live rollups
    and ``analytics_rebuild``."""
    if step_run.started_at is None or step_run.finished_at is None:
        return {}
    times = {Phase.WAIT_AGENT: _ms(step_run.started_at, step_run.ready_at)}
    human = connector = 0
    if action is not None:
        if action.verdict == Verdict.NEEDS_APPROVAL:
            human = _ms(action.started_at or action.finished_at, action.created_at)
        if action.started_at is not None:
            connector = _ms(action.finished_at, action.started_at)
        times[Phase.WAIT_HUMAN] = human
        times[Phase.CONNECTOR] = connector
    taken = _ms(step_run.finished_at, step_run.started_at)
    times[Phase.RUNNING] = max(0, taken - human - connector)
    return {str(phase): ms for phase, ms in times.items()}


def _prepared(model, keys: tuple, adds: tuple, values: dict) -> dict:
    params = dict.fromkeys(adds, 0) | values
    for key in keys:  # as the database takes them: an agent's uuid, an aware hour
        params[key] = model._meta.get_field(key).get_db_prep_value(params[key], connection)
    return params


def _upsert(model, keys: tuple, adds: tuple, values: dict) -> None:
    with connection.cursor() as cursor:
        cursor.execute(counters.add_sql(model, keys, adds), _prepared(model, keys, adds, values))


class RollupCounts:
    """What one transaction adds to rollup rows, merged per row and written at its end
    (``Outbox.write``), one statement per model: the rows stay locked only from then until
    the commit, not while the transaction does the rest of its work (the next step's
    claim), and rows are written in one order, so two transactions never wait on each
    other's rows crosswise."""

    def __init__(self) -> None:
        self.rows: dict = {}  # (model label, keys, key values) -> (model, adds, values)

    def add(self, model, keys: tuple, adds: tuple, values: dict) -> None:
        row_key = (model._meta.label, keys, tuple(str(values[k]) for k in keys))
        if row_key not in self.rows:
            self.rows[row_key] = (model, adds, {k: values[k] for k in keys})
        summed = self.rows[row_key][2]
        for name in adds:
            if name in values:
                summed[name] = summed.get(name, 0) + values[name]

    def write(self) -> None:
        by_model: dict = {}
        for row_key in sorted(self.rows):
            model, adds, values = self.rows[row_key]
            by_model.setdefault((model, row_key[1], adds), []).append(values)
        self.rows = {}
        for (model, keys, adds), rows in by_model.items():
            if len(rows) == 1:
                params = _prepared(model, keys, adds, rows[0])
            else:
                params = {
                    f"{name}_{i}": value
                    for i, row in enumerate(rows)
                    for name, value in _prepared(model, keys, adds, row).items()
                }
            sql = counters.add_sql(model, keys, adds, rows=len(rows))
            with connection.cursor() as cursor:
                cursor.execute(sql, params)


def step_counted(*, step: Step, counter: str, out, at: datetime | None = None) -> None:
    """Add one to a step's counter (``STEP_COUNTERS``) in its hour, written with ``out``
    (the transaction's ``Outbox``) at its end."""
    out.counts.add(
        StepRollup,
        ("hour", "template", "step"),
        STEP_COUNTERS,
        {"hour": hour_of(at or timezone.now()), "template": step.template_id, "step": step.pk,
         counter: 1},
    )  # fmt: skip


def step_finished(
    *, step: Step, step_run: StepRun, counter: str, out, action: ActionRequest | None = None
) -> None:
    """A step run ended (``succeeded`` or ``failed``): count it and add its times
    (``step_times``) to its hour's histograms. ``action``: its last action, when the caller
    holds it (else it is read: a person failed the step, or the sweep timed it out). Call
    with the step run's finish set."""
    if action is None and step_run.action_id is not None:
        action = ActionRequest.objects.only(*ACTION_TIMES).get(pk=step_run.action_id)
    at = step_run.finished_at or timezone.now()
    step_counted(step=step, counter=counter, at=at, out=out)
    for phase, ms in step_times(step_run=step_run, action=action).items():
        out.counts.add(
            StepTimeRollup,
            ("hour", "template", "step", "phase"),
            TIME_ADDS,
            {"hour": hour_of(at), "template": step.template_id, "step": step.pk, "phase": phase,
             "count": 1, "total_ms": ms, HISTOGRAM_FIELDS[bucket_of(ms)]: 1},
        )  # fmt: skip


def run_counted(*, run: Run, counter: str, out) -> None:
    """Add one to a run's counter (``RUN_COUNTERS``) in its hour; a finished run adds its
    duration too. Written with ``out`` at the transaction's end."""
    values = {"hour": hour_of(run.finished_at or timezone.now()), "template": run.template_id,
              counter: 1}  # fmt: skip
    if run.finished_at is not None:
        ms = _ms(run.finished_at, run.created_at)
        values |= {"count": 1, "total_ms": ms, HISTOGRAM_FIELDS[bucket_of(ms)]: 1}
    out.counts.add(RunRollup, ("hour", "template"), (*RUN_COUNTERS, *TIME_ADDS), values)


def agent_action_settled(*, action: ActionRequest) -> None:
    """An action reached its end (``autonomy.signals.action_settled``): count it for its
    agent, with what people answered when it waited for them and, when it succeeded, its
    amount as spend. One statement, in the transaction that settled it."""
    values = {
        "hour": hour_of(action.finished_at or timezone.now()),
        "agent": action.agent_id,
        "settled": 1,
        "succeeded": int(action.status == ActionStatus.SUCCEEDED),
        "failed": int(action.status == ActionStatus.FAILED),
        "denied": int(action.status == ActionStatus.DENIED),
        "answered": int(bool(action.human_decision)),
        "overridden": int(action.human_decision in OVERRIDES),
        "spend": (action.amount or 0) if action.status == ActionStatus.SUCCEEDED else 0,
    }
    _upsert(AgentRollup, ("hour", "agent"), (*AGENT_COUNTERS, "spend"), values)


def agent_action_needs_approval(*, action: ActionRequest) -> None:
    """An action went to people (``autonomy.signals.action_needs_approval``)."""
    _upsert(
        AgentRollup,
        ("hour", "agent"),
        (*AGENT_COUNTERS, "spend"),
        {"hour": hour_of(action.created_at), "agent": action.agent_id, "approvals_needed": 1},
    )


# --- history --------------------------------------------------------------------------------


def analytics_rebuild() -> dict[str, int]:
    """Recompute every analytics rollup from history: step runs and their last actions, run
    events (retries), runs and actions. For seeded history and rows written before the
    rollups existed; live work keeps them current. Returns the rows written per model."""
    steps: dict = defaultdict(lambda: dict.fromkeys(STEP_COUNTERS, 0))
    times: dict = defaultdict(lambda: dict.fromkeys(TIME_ADDS, 0))
    step_runs = StepRun.objects.select_related("step", "action").only(
        "status", "ready_at", "started_at", "finished_at", "step__template_id",
        *(f"action__{name}" for name in ACTION_TIMES),
    )  # fmt: skip
    from workflows.services.failure import AFTER_CANCEL

    # Cancelled while their action was executing, undone after: they never succeeded as a
    # step (only their compensation counts).
    undone_after_cancel = set(
        RunEvent.objects.filter(kind__in=AFTER_CANCEL).values_list("step_run_id", flat=True)
    )
    for step_run in step_runs.iterator(chunk_size=2000):
        step = step_run.step
        if step_run.ready_at is not None:
            steps[(hour_of(step_run.ready_at), step.template_id, step.pk)]["started"] += 1
        if step_run.pk in undone_after_cancel:
            continue
        ended = {
            StepStatus.SUCCEEDED: "succeeded",
            StepStatus.FAILED: "failed",
            StepStatus.COMPENSATED: "succeeded",  # it succeeded before it was undone
            StepStatus.SKIPPED: "skipped",
        }.get(step_run.status)
        if ended is None or step_run.finished_at is None:
            continue
        hour = hour_of(step_run.finished_at)
        steps[(hour, step.template_id, step.pk)][ended] += 1
        if ended == "skipped":
            continue
        for phase, ms in step_times(step_run=step_run, action=step_run.action).items():
            row = times[(hour, step.template_id, step.pk, phase)]
            row["count"] += 1
            row["total_ms"] += ms
            row[HISTOGRAM_FIELDS[bucket_of(ms)]] += 1
    retries = (
        RunEvent.objects.filter(kind__in=RETRY_EVENTS, step_run__isnull=False)
        .annotate(hour=TruncHour("created_at"))
        .values("hour", "step_run__step__template_id", "step_run__step_id")
        .annotate(n=Count("pk"))
    )
    for row in retries:
        key = (row["hour"], row["step_run__step__template_id"], row["step_run__step_id"])
        steps[key]["retried"] += row["n"]
    compensated = (
        RunEvent.objects.filter(kind="step_compensated", step_run__isnull=False)
        .annotate(hour=TruncHour("created_at"))
        .values("hour", "step_run__step__template_id", "step_run__step_id")
        .annotate(n=Count("pk"))
    )
    for row in compensated:
        key = (row["hour"], row["step_run__step__template_id"], row["step_run__step_id"])
        steps[key]["compensated"] += row["n"]
    runs: dict = defaultdict(lambda: dict.fromkeys((*RUN_COUNTERS, *TIME_ADDS), 0))
    for run in Run.objects.only("template_id", "status", "created_at", "finished_at").iterator(
        chunk_size=2000
    ):
        runs[(hour_of(run.created_at), run.template_id)]["started"] += 1
        ended = {RunStatus.SUCCEEDED: "succeeded", RunStatus.FAILED: "failed",
                 RunStatus.CANCELLED: "cancelled"}.get(run.status)  # fmt: skip
        if ended and run.finished_at is not None:
            row = runs[(hour_of(run.finished_at), run.template_id)]
            ms = _ms(run.finished_at, run.created_at)
            row[ended] += 1
            row["count"] += 1
            row["total_ms"] += ms
            row[HISTOGRAM_FIELDS[bucket_of(ms)]] += 1
    agents = _agent_rows()
    with transaction.atomic():
        for model in (StepRollup, StepTimeRollup, RunRollup, AgentRollup):
            model.objects.all().delete()
        StepRollup.objects.bulk_create(
            StepRollup(hour=h, template_id=t, step_id=s, **row) for (h, t, s), row in steps.items()
        )
        StepTimeRollup.objects.bulk_create(
            StepTimeRollup(hour=h, template_id=t, step_id=s, phase=p, **row)
            for (h, t, s, p), row in times.items()
        )
        RunRollup.objects.bulk_create(
            RunRollup(hour=h, template_id=t, **row) for (h, t), row in runs.items()
        )
        AgentRollup.objects.bulk_create(agents, batch_size=2000)
    return {"steps": len(steps), "times": len(times), "runs": len(runs), "agents": len(agents)}


def analytics_backfill() -> int:
    """``analytics_rebuild`` when runs exist and no run was counted yet (a database that had
    history before the rollups existed); otherwise nothing: live work keeps them. Returns
    the rows written."""
    if RunRollup.objects.exists() or not Run.objects.exists():
        return 0
    return sum(analytics_rebuild().values())


def _agent_rows() -> list[AgentRollup]:
    """``AgentRollup`` rows from the actions: the ended ones by the hour they ended, and
    those that went to people by the hour they were asked."""
    final = [ActionStatus.SUCCEEDED, ActionStatus.FAILED, ActionStatus.DENIED,
             ActionStatus.CANCELLED, ActionStatus.SHADOWED]  # fmt: skip
    rows: dict = defaultdict(lambda: dict.fromkeys(AGENT_COUNTERS, 0) | {"spend": Decimal(0)})
    settled = (
        ActionRequest.objects.filter(status__in=final, finished_at__isnull=False)
        # Denied by the gate on request: it never went to people nor settled (no signal).
        .exclude(status=ActionStatus.DENIED, verdict=Verdict.DENY)
        .annotate(hour=TruncHour("finished_at"))
        .values("hour", "agent_id")
        .annotate(
            settled=Count("pk"),
            succeeded=Count("pk", filter=Q(status=ActionStatus.SUCCEEDED)),
            failed=Count("pk", filter=Q(status=ActionStatus.FAILED)),
            denied=Count("pk", filter=Q(status=ActionStatus.DENIED)),
            answered=Count("pk", filter=~Q(human_decision="")),
            overridden=Count("pk", filter=Q(human_decision__in=OVERRIDES)),
            spend=Sum("amount", filter=Q(status=ActionStatus.SUCCEEDED), default=0),
        )
        .order_by()
    )
    for row in settled:
        key = (row.pop("hour"), row.pop("agent_id"))
        rows[key].update(row)
    asked = (
        ActionRequest.objects.filter(verdict=Verdict.NEEDS_APPROVAL)
        # Shadowed on request: recorded, never sent to people.
        .exclude(status=ActionStatus.SHADOWED, finished_at=F("decided_at"))
        .annotate(hour=TruncHour("created_at"))
        .values("hour", "agent_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in asked:
        rows[(row["hour"], row["agent_id"])]["approvals_needed"] += row["n"]
    return [AgentRollup(hour=h, agent_id=a, **row) for (h, a), row in rows.items()]
