"""Reads of the fleet dashboard: activity over time, approval load (``approvals.load``),
risky agents, open flags and usage per business unit.

Activity comes from the per-minute ``ActivityRollup`` rows, so the cost follows the window,
not the number of actions ever recorded; the rest are small aggregates over indexed columns.
``dashboard`` runs a constant number of queries whatever the volume.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.apps import apps
from django.db.models import Count, F, Func, IntegerField, Max, Q, Sum, UUIDField
from django.utils import timezone

from agents.models import Agent, BusinessUnit
from agents.portal_roles import is_portal_person
from approvals.load import ApprovalLoad, approval_load
from autonomy.models import ActionRequest, ActivityRollup, Verdict

VERDICTS = [Verdict.ALLOW, Verdict.NEEDS_APPROVAL, Verdict.DENY]
TOP_AGENTS = 5


@dataclass
class Series:
    """Counts per bucket and verdict, oldest bucket first."""

    starts: list[datetime]
    bucket: timedelta
    counts: dict[str, list[int]]

    @property
    def totals(self) -> dict[str, int]:
        return {verdict: sum(values) for verdict, values in self.counts.items()}


@dataclass
class Dashboard:
    now: datetime
    last_hour: Series
    last_day: Series
    approvals: ApprovalLoad
    risky_agents: list[dict]
    open_flags: int
    units: list[dict] = field(default_factory=list)


def may_view_dashboard(*, user) -> bool:
    """People of the portal: superusers, and staff in any portal role. Agents never."""

    return is_portal_person(user)


def _floor(moment: datetime, bucket: timedelta) -> datetime:
    seconds = int(bucket.total_seconds())
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=moment.tzinfo)


def _series(rows: list[dict], *, until: datetime, bucket: timedelta, buckets: int) -> Series:
    last = _floor(until, bucket)
    first = last - bucket * (buckets - 1)
    counts = {str(v): [0] * buckets for v in VERDICTS}
    size = bucket.total_seconds()
    for row in rows:
        index = int((row["minute"] - first).total_seconds() // size)
        if 0 <= index < buckets and row["verdict"] in counts:
            counts[row["verdict"]][index] += row["n"]
    return Series([first + bucket * i for i in range(buckets)], bucket, counts)


def activity_rows(*, since: datetime) -> list[dict]:
    """Actions per minute and verdict since ``since`` (one row per non-empty pair)."""
    return list(
        ActivityRollup.objects.filter(minute__gte=since)
        .order_by()
        .values("minute", "verdict")
        .annotate(n=Sum("count"))
    )


class _IndexBlind(Func):
    """The column, read so that SQLite's planner keeps off the column's own indexes."""

    template = "%(expressions)s"

    def as_sqlite(self, compiler, connection, **extra):
        return super().as_sql(compiler, connection, template="+%(expressions)s", **extra)


def risky_agents(*, since: datetime, limit: int = TOP_AGENTS) -> list[dict]:
    """The agents whose actions since ``since`` carried the most risk, with their counts.

    Reads the ``created_at`` index range only. Grouped by a plain ``agent_id``, SQLite would
    rather walk the whole (agent, created_at, ...) index, every action ever recorded, to
    spare itself a sort; the index-blind key keeps it on the window."""

    ranked = list(
        ActionRequest.objects.filter(created_at__gte=since)
        .order_by()
        .annotate(agent_key=_IndexBlind(F("agent_id"), output_field=UUIDField()))
        .values("agent_key")
        .annotate(
            risk=Sum("risk_score"),
            peak=Max("risk_score"),
            actions=Count("pk"),
            denied=Count("pk", filter=Q(verdict=Verdict.DENY)),
        )
        .order_by("-risk")[:limit]
    )
    agents = Agent.objects.select_related("business_unit").in_bulk(
        [row["agent_key"] for row in ranked]
    )
    rows = []
    for row in ranked:
        agent = agents.get(row["agent_key"])
        if agent is not None:
            rows.append(
                row
                | {
                    "agent_id": agent.pk,
                    "agent__name": agent.name,
                    "agent__slug": agent.slug,
                    "agent__business_unit__name": agent.business_unit.name,
                }
            )
    return rows


def open_flags() -> int:
    """Open drift flags; 0 where the drift engine is not installed."""
    try:
        flag = apps.get_model("agents", "DriftFlag")
    except LookupError:
        return 0
    names = {f.name for f in flag._meta.get_fields()}
    if "status" in names:
        return flag.objects.filter(status="open").count()
    if "reviewed_at" in names:
        return flag.objects.filter(reviewed_at__isnull=True).count()
    return flag.objects.count()


def unit_usage(*, since: datetime) -> list[dict]:
    """Actions per business unit since ``since``, busiest first, split by verdict. Read
    from the rollups' minute range (an index-blind unit key, as for agents above)."""

    rows = list(
        ActivityRollup.objects.filter(minute__gte=since)
        .order_by()
        .annotate(unit_key=_IndexBlind(F("business_unit_id"), output_field=IntegerField()))
        .values("unit_key", "verdict")
        .annotate(n=Sum("count"), risk=Sum("risk_sum"))
    )
    names = dict(
        BusinessUnit.objects.filter(pk__in={r["unit_key"] for r in rows}).values_list("pk", "name")
    )
    units: dict[int, dict] = {}
    for row in rows:
        unit = units.setdefault(
            row["unit_key"],
            {"name": names.get(row["unit_key"], "?"), "total": 0, "risk": 0}
            | {str(v): 0 for v in VERDICTS},
        )
        unit[row["verdict"]] = unit.get(row["verdict"], 0) + row["n"]
        unit["total"] += row["n"]
        unit["risk"] += row["risk"] or 0
    for unit in units.values():
        unit["mean_risk"] = round(unit["risk"] / unit["total"]) if unit["total"] else 0
    return sorted(units.values(), key=lambda u: (-u["total"], u["name"]))


def dashboard(
    *,
    now: datetime | None = None,
    business_unit: str | None = None,
    approver_group: int | None = None,
) -> Dashboard:
    """Everything the dashboard shows, in a constant number of queries (sixteen); the
    approval load of one business unit and/or approver group when they are given."""
    now = now or timezone.now()
    day_ago = now - timedelta(hours=24)
    rows = activity_rows(since=_floor(day_ago, timedelta(minutes=30)))
    hour_ago = now - timedelta(minutes=59)
    return Dashboard(
        now=now,
        last_hour=_series(
            [r for r in rows if r["minute"] >= hour_ago.replace(second=0, microsecond=0)],
            until=now,
            bucket=timedelta(minutes=1),
            buckets=60,
        ),
        last_day=_series(rows, until=now, bucket=timedelta(minutes=30), buckets=48),
        approvals=approval_load(
            now=now, business_unit=business_unit, approver_group=approver_group
        ),
        risky_agents=risky_agents(since=day_ago),
        open_flags=open_flags(),
        units=unit_usage(since=day_ago),
    )
