"""Workflow and agent analytics, read from the hourly rollups that ``workflows.services.rollup``
keeps as work happens: a page costs the same few aggregate queries for ten runs as for a
hundred thousand. Percentiles come from the rollups' histograms, so each is the upper bound
of the bucket it falls in (``HISTOGRAM_BOUNDS_MS``).
"""

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Sum
from django.utils import timezone

from workflows.models import (
    HISTOGRAM_BOUNDS_MS,
    HISTOGRAM_FIELDS,
    AgentRollup,
    Phase,
    RunRollup,
    Step,
    StepRollup,
    StepTimeRollup,
    Template,
)
from workflows.services.rollup import AGENT_COUNTERS, RUN_COUNTERS, STEP_COUNTERS, hour_of

# The windows a page may show, by the name its ``?window=`` takes.
WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
DEFAULT_WINDOW = "7d"
# A step is named for failing when at least this share of its finished runs failed.
FAILING_SHARE = 0.2


def window_start(name: str, *, now: datetime | None = None) -> datetime:
    """The first hour a window named ``name`` (``WINDOWS``) counts."""
    return hour_of((now or timezone.now()) - WINDOWS.get(name, WINDOWS[DEFAULT_WINDOW]))


def percentile(histogram: list[int], q: float) -> float | None:
    """The upper bound (ms) of the bucket holding the ``q`` quantile; ``math.inf`` for the
    open last bucket, None without data."""
    count = sum(histogram)
    if not count:
        return None
    rank, seen = math.ceil(q * count), 0
    for index, n in enumerate(histogram):
        seen += n
        if seen >= max(rank, 1):
            return HISTOGRAM_BOUNDS_MS[index] if index < len(HISTOGRAM_BOUNDS_MS) else math.inf
    return math.inf


def duration_label(ms: float | None, *, bound: bool = True) -> str:
    """A duration for people: a percentile as its bucket's bound (``≤ 300 ms``), a mean as
    it is (``1.7 min``); a dash without data."""
    if ms is None:
        return "–"
    if ms == math.inf:
        return f"> {duration_label(HISTOGRAM_BOUNDS_MS[-1], bound=False)}"
    if ms < 1000:
        text = f"{ms:.0f} ms"
    elif ms < 60_000:
        text = f"{ms / 1000:.3g} s"
    elif ms < 3_600_000:
        text = f"{ms / 60_000:.1f} min"
    else:
        text = f"{ms / 3_600_000:.1f} h"
    return f"≤ {text}" if bound else text


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass
class PhaseFigures:
    count: int = 0
    total_ms: int = 0
    histogram: list[int] = field(default_factory=lambda: [0] * len(HISTOGRAM_FIELDS))

    @property
    def mean_ms(self) -> float | None:
        return self.total_ms / self.count if self.count else None

    @property
    def p50(self) -> float | None:
        return percentile(self.histogram, 0.5)

    @property
    def p90(self) -> float | None:
        return percentile(self.histogram, 0.9)


@dataclass
class StepFigures:
    step: Step
    counts: dict[str, int]
    phases: dict[str, PhaseFigures]

    @property
    def finished(self) -> int:
        return self.counts["succeeded"] + self.counts["failed"]

    @property
    def success_rate(self) -> float | None:
        return _rate(self.counts["succeeded"], self.finished)

    @property
    def failure_rate(self) -> float | None:
        return _rate(self.counts["failed"], self.finished)

    @property
    def retry_rate(self) -> float | None:
        return _rate(self.counts["retried"], self.counts["started"])

    @property
    def compensation_rate(self) -> float | None:
        return _rate(self.counts["compensated"], self.counts["succeeded"])

    @property
    def total_ms(self) -> int:
        return sum(p.total_ms for p in self.phases.values())

    @property
    def mean_ms(self) -> float | None:
        timed = max((p.count for p in self.phases.values()), default=0)
        return self.total_ms / timed if timed else None

    def share(self, phase: str) -> float | None:
        return _rate(self.phases[phase].total_ms, self.total_ms)

    @property
    def shares(self) -> list[tuple[str, str, float]]:
        """(phase, label, share of the step's time) for each phase with time."""
        total = self.total_ms
        return [
            (phase, label, self.phases[phase].total_ms / total)
            for phase, label in Phase.choices
            if total and self.phases[phase].total_ms
        ]

    @property
    def phase_list(self) -> list[tuple[str, str, PhaseFigures]]:
        """(phase, label, figures) in ``Phase`` order, for tables."""
        return [(phase, label, self.phases[phase]) for phase, label in Phase.choices]

    @property
    def dominant(self) -> tuple[str, str, float] | None:
        return max(self.shares, key=lambda s: s[2], default=None)


@dataclass
class Bottleneck:
    step: StepFigures
    sentence: str
    notes: list[str]


@dataclass
class VersionFigures:
    template: Template
    runs: dict[str, int]
    run_time: PhaseFigures
    steps: list[StepFigures]

    @property
    def run_success_rate(self) -> float | None:
        return _rate(self.runs["succeeded"], self.runs["succeeded"] + self.runs["failed"])

    @property
    def bottleneck(self) -> Bottleneck | None:
        return bottleneck(self)


def _histogram(row: dict) -> list[int]:
    return [row[name] or 0 for name in HISTOGRAM_FIELDS]


def _time_sums() -> dict:
    return {name: Sum(name) for name in ("count", "total_ms", *HISTOGRAM_FIELDS)}


def version_figures(*, template: Template, since: datetime) -> VersionFigures:
    """Runs and per-step figures of one template version from ``since``: four queries."""
    steps = list(Step.objects.filter(template=template).order_by("position", "id"))
    counts = {
        row["step_id"]: row
        for row in StepRollup.objects.filter(template=template, hour__gte=since)
        .order_by()
        .values("step_id")
        .annotate(**{name: Sum(name) for name in STEP_COUNTERS})
    }
    times: dict = {}
    for row in (
        StepTimeRollup.objects.filter(template=template, hour__gte=since)
        .order_by()
        .values("step_id", "phase")
        .annotate(**_time_sums())
    ):
        times[(row["step_id"], row["phase"])] = PhaseFigures(
            count=row["count"] or 0, total_ms=row["total_ms"] or 0, histogram=_histogram(row)
        )
    runs = RunRollup.objects.filter(template=template, hour__gte=since).aggregate(
        **{name: Sum(name) for name in RUN_COUNTERS}, **_time_sums()
    )
    return VersionFigures(
        template=template,
        runs={name: runs[name] or 0 for name in RUN_COUNTERS},
        run_time=PhaseFigures(
            count=runs["count"] or 0,
            total_ms=runs["total_ms"] or 0,
            histogram=_histogram(runs),
        ),
        steps=[
            StepFigures(
                step=step,
                counts={name: (counts.get(step.pk) or {}).get(name) or 0 for name in STEP_COUNTERS},
                phases={
                    phase: times.get((step.pk, phase)) or PhaseFigures() for phase in Phase.values
                },
            )
            for step in steps
        ],
    )


def bottleneck(figures: VersionFigures) -> Bottleneck | None:
    """The step that takes the most time per step run, and why: the phase where most of its
    time goes; with notes on steps that fail or are retried often."""
    timed = [s for s in figures.steps if s.mean_ms]
    if not timed:
        return None
    slowest = max(timed, key=lambda s: s.mean_ms)
    share_of_run = _rate(slowest.total_ms, sum(s.total_ms for s in timed)) or 0
    phase, label, share = slowest.dominant
    sentence = (
        f"Step '{slowest.step.name}' is the bottleneck: {share_of_run:.0%} of the time spent "
        f"in steps; it spends {share:.0%} of its time {label}."
    )
    notes = []
    for s in figures.steps:
        if s.failure_rate is not None and s.failure_rate >= FAILING_SHARE:
            notes.append(f"Step '{s.step.name}' fails {s.failure_rate:.0%} of its runs.")
        if s.retry_rate is not None and s.retry_rate >= FAILING_SHARE:
            notes.append(f"Step '{s.step.name}' is retried in {s.retry_rate:.0%} of its runs.")
    return Bottleneck(step=slowest, sentence=sentence, notes=notes)


def template_versions(*, key: str) -> list[Template]:
    """Every version of a template, newest first."""
    return list(Template.objects.filter(key=key).order_by("-version"))


def newest_bottlenecks(*, since: datetime) -> dict[str, tuple[int, Bottleneck]]:
    """Per workflow key, the newest version with steps finished from ``since`` and its
    bottleneck (``bottleneck``, from the step times alone); one query."""
    steps: dict = {}
    versions: dict = {}
    for row in (
        StepTimeRollup.objects.filter(hour__gte=since)
        .order_by()
        .values("template_id", "template__key", "template__version", "step_id", "step__key",
                "step__name", "phase")
        .annotate(count=Sum("count"), total_ms=Sum("total_ms"))
    ):  # fmt: skip
        key, version = row["template__key"], row["template__version"]
        if version < versions.get(key, 0):
            continue
        if version > versions.get(key, 0):
            versions[key], steps[key] = version, {}
        figures = steps[key].get(row["step_id"])
        if figures is None:
            step = Step(pk=row["step_id"], key=row["step__key"], name=row["step__name"])
            figures = steps[key][row["step_id"]] = StepFigures(
                step=step,
                counts=dict.fromkeys(STEP_COUNTERS, 0),
                phases={phase: PhaseFigures() for phase in Phase.values},
            )
        figures.phases[row["phase"]] = PhaseFigures(count=row["count"], total_ms=row["total_ms"])
    found = {}
    for key, by_step in steps.items():
        version = VersionFigures(template=None, runs={}, run_time=PhaseFigures(),
                                 steps=list(by_step.values()))  # fmt: skip
        if (named := bottleneck(version)) is not None:
            found[key] = (versions[key], named)
    return found


def templates_overview(*, since: datetime) -> list[dict]:
    """Per workflow (all its versions): its name, latest version and runs from ``since``,
    and the bottleneck of its newest version that ran; three queries."""
    latest: dict = {}
    for template in Template.objects.order_by("key", "-version").only("key", "version", "name"):
        latest.setdefault(template.key, template)
    runs = {
        row["template__key"]: row
        for row in RunRollup.objects.filter(hour__gte=since)
        .order_by()
        .values("template__key")
        .annotate(
            **{name: Sum(name) for name in RUN_COUNTERS},
            total_ms=Sum("total_ms"),
            count=Sum("count"),
        )  # fmt: skip
    }
    bottlenecks = newest_bottlenecks(since=since)
    rows = []
    for key, template in latest.items():
        row = runs.get(key) or {}
        figures = {name: row.get(name) or 0 for name in RUN_COUNTERS}
        finished = figures["succeeded"] + figures["failed"]
        rows.append(
            {
                "key": key,
                "name": template.name,
                "version": template.version,
                **figures,
                "success_rate": _rate(figures["succeeded"], finished),
                "mean_ms": row["total_ms"] / row["count"] if row.get("count") else None,
                "bottleneck": bottlenecks.get(key),
            }
        )
    return sorted(rows, key=lambda r: (-r["started"], r["key"]))


def _agent_figures(row: dict) -> dict:
    row = {**row, **{name: row.get(name) or 0 for name in AGENT_COUNTERS}}
    row["spend"] = row.get("spend") or Decimal(0)
    ended = row["succeeded"] + row["failed"] + row["denied"]
    row["success_rate"] = _rate(row["succeeded"], ended)
    row["override_rate"] = _rate(row["overridden"], row["answered"])
    return row


def _agent_sums() -> dict:
    return {name: Sum(name) for name in (*AGENT_COUNTERS, "spend")}


def agent_figures(*, since: datetime, limit: int = 25) -> list[dict]:
    """The busiest agents from ``since``: success rate (of the actions that ended succeeded,
    failed or denied), spend (amounts of succeeded actions), approvals needed and overrides
    (people changed or rejected what the agent asked); one query."""
    rows = (
        AgentRollup.objects.filter(hour__gte=since)
        .order_by()
        .values("agent_id", "agent__slug", "agent__name", "agent__role__slug")
        .annotate(**_agent_sums())
        .order_by("-settled", "agent__slug")[:limit]
    )
    return [_agent_figures(row) for row in rows]


def role_figures(*, since: datetime) -> list[dict]:
    """The same figures per role (agents' present role); one query."""
    rows = (
        AgentRollup.objects.filter(hour__gte=since)
        .order_by()
        .values("agent__role__slug")
        .annotate(**_agent_sums())
        .order_by("-settled", "agent__role__slug")
    )
    return [_agent_figures(row) for row in rows]


def runs_over_time(*, template: Template, since: datetime, now: datetime, buckets: int) -> dict:
    """Runs that succeeded and failed per bucket of the window (``buckets`` of them, oldest
    first), from the hourly rows; one query."""
    span = (hour_of(now) + timedelta(hours=1) - since) / buckets
    starts = [since + span * i for i in range(buckets)]
    series = {"succeeded": [0] * buckets, "failed": [0] * buckets}
    for row in (
        RunRollup.objects.filter(template=template, hour__gte=since)
        .order_by()
        .values_list("hour", "succeeded", "failed")
    ):
        index = min(buckets - 1, int((row[0] - since) / span))
        series["succeeded"][index] += row[1]
        series["failed"][index] += row[2]
    return {"starts": starts, "bucket": span, "counts": series}


def fleet_figures(*, since: datetime) -> dict:
    """Every template version's runs, steps and step times from ``since``, and every role's
    actions, keyed for ``/metrics``: four aggregate queries, whatever the history."""
    runs = list(
        RunRollup.objects.filter(hour__gte=since)
        .order_by()
        .values("template__key", "template__version")
        .annotate(**{name: Sum(name) for name in RUN_COUNTERS})
    )
    steps = list(
        StepRollup.objects.filter(hour__gte=since)
        .order_by()
        .values("template__key", "template__version", "step__key")
        .annotate(**{name: Sum(name) for name in STEP_COUNTERS})
    )
    times = []
    for row in (
        StepTimeRollup.objects.filter(hour__gte=since)
        .order_by()
        .values("template__key", "template__version", "step__key", "phase")
        .annotate(**_time_sums())
    ):
        histogram = _histogram(row)
        times.append({**row, "p50": percentile(histogram, 0.5), "p90": percentile(histogram, 0.9)})
    return {"runs": runs, "steps": steps, "times": times, "roles": role_figures(since=since)}
