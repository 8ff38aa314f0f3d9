"""Reads of log-only trials (``autonomy.policy.trials``): the list, and one trial's difference
from the live policies: counts by agent, operation and business unit, the decisions seen in
its window, readable lines per operation and the latest examples. A constant number of
queries, whatever the traffic."""

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Count, QuerySet
from django.utils import timezone

from agents.models import Agent, BusinessUnit
from autonomy.models import (
    ActionRequest,
    Operation,
    Policy,
    PolicyTrial,
    TrialDifference,
    Verdict,
)

EXAMPLES = 10
# What the draft would have done, as a line reads: "would have denied 3% of ...".
WOULD = {
    Verdict.DENY: "would have denied",
    Verdict.NEEDS_APPROVAL: "would have sent to a person",
    Verdict.ALLOW: "would have allowed",
}


def trial_list() -> QuerySet[PolicyTrial]:
    """Every trial, newest first, with its difference count."""
    return PolicyTrial.objects.select_related("replaces", "started_by", "promoted_by").annotate(
        difference_count=Count("differences")
    )


def trial_by_id(*, trial_id: int) -> PolicyTrial | None:
    return (
        PolicyTrial.objects.select_related("replaces", "started_by", "promoted_by")
        .filter(pk=trial_id)
        .first()
    )


def policy_choices() -> QuerySet[Policy]:
    """The enabled policies a draft may replace."""
    return Policy.objects.filter(enabled=True).only("pk", "name").order_by("name")


@dataclass
class GroupCount:
    """One group's differences: ``label`` (an agent, operation or unit) and how many."""

    label: str
    differences: int
    decisions: int | None = None


@dataclass
class TrialSummary:
    trial: PolicyTrial
    since: datetime
    until: datetime
    decisions: int
    differences: int
    lines: list[str] = field(default_factory=list)
    by_agent: list[GroupCount] = field(default_factory=list)
    by_operation: list[GroupCount] = field(default_factory=list)
    by_unit: list[GroupCount] = field(default_factory=list)
    examples: list[TrialDifference] = field(default_factory=list)


def _percent(part: int, whole: int) -> str:
    if not whole:
        return "—"
    share = 100 * part / whole
    return f"{share:.0f}%" if share >= 10 or share == 0 else f"{share:.1f}%"


def trial_window(trial: PolicyTrial, now: datetime | None = None) -> tuple[datetime, datetime]:
    """From its start to its stop (or now, while it runs)."""
    return trial.started_at, trial.stopped_at or now or timezone.now()


def decisions_in_window(*, since: datetime, until: datetime) -> dict[tuple[int, int], int]:
    """Decided actions in the window, per (operation, business unit): one grouped query."""
    rows = (
        ActionRequest.objects.filter(created_at__gte=since, created_at__lte=until)
        .values_list("operation_id", "agent__business_unit_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {(op, unit): n for op, unit, n in rows}


def trial_summary(*, trial: PolicyTrial, now: datetime | None = None) -> TrialSummary:
    """What the trial's draft would have changed: eight queries, whatever the traffic."""
    since, until = trial_window(trial, now)
    differences = TrialDifference.objects.filter(trial=trial).order_by()
    totals = decisions_in_window(since=since, until=until)
    per_operation: dict[int, int] = {}
    per_unit: dict[int, int] = {}
    for (op, unit), n in totals.items():
        per_operation[op] = per_operation.get(op, 0) + n
        per_unit[unit] = per_unit.get(unit, 0) + n

    by_verdict = list(
        differences.values_list("operation_id", "draft_verdict")
        .annotate(n=Count("id"))
        .order_by("operation_id", "draft_verdict")
    )
    by_agent = list(differences.values_list("agent_id").annotate(n=Count("id")).order_by("-n"))
    by_unit = list(
        differences.values_list("business_unit_id").annotate(n=Count("id")).order_by("-n")
    )
    operations = {
        o.pk: o
        for o in Operation.objects.select_related("connector").filter(
            pk__in={op for op, _, _ in by_verdict}
        )
    }
    agents = dict(Agent.objects.filter(pk__in=[a for a, _ in by_agent]).values_list("pk", "name"))
    units = dict(
        BusinessUnit.objects.filter(pk__in=[u for u, _ in by_unit]).values_list("pk", "name")
    )

    lines, op_counts = [], {}
    for op, verdict, n in by_verdict:
        whole = per_operation.get(op, 0)
        name = operations[op].name
        lines.append(f"{WOULD[verdict]} {_percent(n, whole)} of {name} ({n:,} of {whole:,})")
        op_counts[op] = op_counts.get(op, 0) + n
    examples = list(
        differences.select_related(
            "agent", "operation__connector", "business_unit", "action"
        ).order_by("-created_at")[:EXAMPLES]
    )
    return TrialSummary(
        trial=trial,
        since=since,
        until=until,
        decisions=sum(totals.values()),
        differences=sum(op_counts.values()),
        lines=lines,
        by_agent=[GroupCount(agents.get(a, str(a)), n) for a, n in by_agent],
        by_operation=sorted(
            (
                GroupCount(
                    f"{operations[op].name} ({operations[op].key})", n, per_operation.get(op)
                )
                for op, n in op_counts.items()
            ),
            key=lambda c: -c.differences,
        ),
        by_unit=[GroupCount(units.get(u, str(u)), n, per_unit.get(u)) for u, n in by_unit],
        examples=examples,
    )
