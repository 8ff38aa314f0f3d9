"""Approval load: how much work reaches people and how fast it leaves, for the dashboard, the
inbox and ``/metrics`` alike.

Set-based reads over indexed columns (``created_at``, ``decided_at``, ``status``) and the
decisions of the last day, so ``approval_load`` costs a constant number of queries whatever
the volume. Every figure is taken at ``now`` (a parameter, so history can be read at a
frozen moment). A request leaves the backlog in one of four ways, its *outcome*: people
approve it or reject it (a *decision*), the clock closes it (*expired*, whatever its expiry
outcome) or the work goes away (*cancelled*).
"""

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.cache import cache
from django.db.models import (
    CharField,
    Count,
    F,
    FloatField,
    Func,
    Min,
    Q,
    QuerySet,
    Subquery,
    Value,
    Window,
)
from django.db.models.functions import Cast, Replace, RowNumber
from django.utils import timezone
from guardian.models import GroupObjectPermission, UserObjectPermission

from approvals.models import ApprovalRequest, ApprovalStatus, Decision

HOUR = timedelta(hours=1)
DAY = timedelta(hours=24)
HOURS = 24  # hourly buckets on the chart, the current (partial) hour last
OUTCOMES = ("approved", "rejected", "expired", "cancelled")
# The net rate is measured over the last hour, or since the first arrival of the day when
# that is later, but never over less than this (a few minutes of arrivals say little).
MIN_RATE_SPAN = timedelta(minutes=5)
TOP_APPROVERS = 10

# Decided by people: approved or rejected, not by the clock.
DECIDED = Q(status__in=[ApprovalStatus.APPROVED, ApprovalStatus.REJECTED], expired_undecided=False)
EXPIRED = Q(expired_undecided=True)
CANCELLED = Q(status=ApprovalStatus.CANCELLED)
PENDING = Q(status=ApprovalStatus.PENDING)


@dataclass
class ApprovalLoad:
    now: datetime
    hours: list[datetime]  # bucket starts, oldest first
    arrivals: list[int]  # per hour
    closed: dict[str, list[int]]  # per outcome, per hour
    backlog: int
    arrivals_1h: int
    closed_1h: dict[str, int]  # per outcome
    decided_24h: int  # by people
    expired_24h: int  # expired undecided
    arrivals_24h: int
    rate_per_hour: float  # net growth of the backlog (negative: it shrinks)
    rate_span_minutes: int  # what the rate was measured over
    forecast_1h: int
    median_seconds: float | None
    p90_seconds: float | None
    groups: list[dict] = field(default_factory=list)  # per business unit and approver group
    approvers: list[dict] = field(default_factory=list)

    @property
    def decided_1h(self) -> int:
        return self.closed_1h["approved"] + self.closed_1h["rejected"]

    @property
    def hours_to_clear(self) -> float | None:
        """At the current net rate, when the backlog reaches zero; None while it does not
        shrink."""
        if self.rate_per_hour >= 0:
            return None
        return self.backlog / -self.rate_per_hour


def scope(
    *, business_unit: str | None = None, approver_group: int | None = None, via: str = ""
) -> Q:
    """The requests the figures count: all, or one business unit's (slug) and/or one
    approver group's (id); ``via`` is the path to the request from another model
    (``"request__"`` for decisions)."""
    condition = Q()
    if business_unit:
        condition &= Q(**{f"{via}business_unit__slug": business_unit})
    if approver_group:
        condition &= Q(**{f"{via}approver_group_id": approver_group})
    return condition


def approval_load(
    *,
    now: datetime | None = None,
    business_unit: str | None = None,
    approver_group: int | None = None,
    top_approvers: int = TOP_APPROVERS,
    hourly: bool = True,
) -> ApprovalLoad:
    """Arrivals against outcomes per hour over the last day, the backlog and its forecast,
    time to decision and each approver's load; nine queries, three without the hourly
    series (``hourly``) and the approvers (``top_approvers=0``), as the inbox's strip reads."""
    now = now or timezone.now()
    filters = {"business_unit": business_unit, "approver_group": approver_group}
    requests = ApprovalRequest.objects.order_by().filter(scope(**filters))
    last = now.replace(minute=0, second=0, microsecond=0)
    hours = [last - HOUR * (HOURS - 1 - i) for i in range(HOURS)]
    day_ago, hour_ago = now - DAY, now - HOUR

    arrivals, closed = [0] * HOURS, {outcome: [0] * HOURS for outcome in OUTCOMES}
    if hourly:
        arrivals, closed = _hourly(requests, hours=hours, now=now)
    groups = _groups(requests, now=now, day_ago=day_ago, hour_ago=hour_ago)
    total = {key: sum(g[key] for g in groups) for key in _GROUP_FIGURES}
    first = min((g["first_arrival"] for g in groups if g["first_arrival"]), default=None)
    span = HOUR if first is None else min(HOUR, max(now - first, MIN_RATE_SPAN))
    closed_1h = {outcome: total[f"{outcome}_1h"] for outcome in OUTCOMES}
    net = total["arrivals_1h"] - sum(closed_1h.values())
    rate = net / (span / HOUR)
    backlog = total["backlog"]

    median, p90 = _time_to_decision(
        requests.filter(DECIDED, decided_at__gt=day_ago, decided_at__lte=now),
        n=total["decided_24h"],
    )
    return ApprovalLoad(
        now=now,
        hours=hours,
        arrivals=arrivals,
        closed=closed,
        backlog=backlog,
        arrivals_1h=total["arrivals_1h"],
        closed_1h=closed_1h,
        decided_24h=total["decided_24h"],
        expired_24h=total["expired_24h"],
        arrivals_24h=total["arrivals_24h"],
        rate_per_hour=rate,
        rate_span_minutes=round(span.total_seconds() / 60),
        forecast_1h=max(0, round(backlog + rate)),
        median_seconds=median,
        p90_seconds=p90,
        groups=groups,
        approvers=(
            _approvers(requests, filters, now=now, day_ago=day_ago, limit=top_approvers)
            if top_approvers
            else []
        ),
    )


STRIP_SECONDS = 30  # how stale the inbox's strip may be


STRIP_CACHE_KEY = "approvals:load:strip"


def strip_load() -> ApprovalLoad:
    """The figures of the strip over every inbox page (no hourly series, no approvers),
    computed at most once per ``STRIP_SECONDS`` for everyone: at 100,000 requests a day they
    cost seconds (``make bench``: ``approval_load_*``), which no page view should pay. The
    dashboard's panel reads ``approval_load`` fresh."""
    return cache.get_or_set(
        STRIP_CACHE_KEY, lambda: approval_load(top_approvers=0, hourly=False), STRIP_SECONDS
    )


def decisions_of(*, user, now: datetime | None = None) -> dict:
    """One person's own pace: their decisions in the last day and the median wait (arrival
    to their decision) of those; two queries."""
    now = now or timezone.now()
    mine = Decision.objects.filter(approver=user, created_at__gt=now - DAY, created_at__lte=now)
    n = mine.count()
    median = None
    if n:
        k = nearest_rank(0.5, n)
        waits = (
            mine.annotate(wait=Seconds("created_at", "request__created_at"))
            .order_by("wait")
            .values_list("wait", flat=True)[k : k + 1]
        )
        median = _seconds(waits[0]) if waits else None
    return {"decisions_24h": n, "median_seconds": median}


def _hourly(requests: QuerySet, *, hours: list[datetime], now: datetime):
    """Arrivals, and closings by outcome, per hour bucket; two queries. Counted with one
    filtered count per bucket over the indexed range, not grouped by a truncated time: that
    is a function per row (a Python one on SQLite), ten times slower at 100,000 rows."""

    def buckets(column: str) -> dict:
        ends = [*hours[1:], now + timedelta(microseconds=1)]
        return {
            f"h{i}": Count("pk", filter=Q(**{f"{column}__gte": start, f"{column}__lt": end}))
            for i, (start, end) in enumerate(zip(hours, ends, strict=True))
        }

    counted = requests.filter(created_at__gte=hours[0], created_at__lte=now).aggregate(
        **buckets("created_at")
    )
    arrivals = [counted[f"h{i}"] for i in range(len(hours))]
    closed = {outcome: [0] * len(hours) for outcome in OUTCOMES}
    rows = (
        requests.filter(decided_at__gte=hours[0], decided_at__lte=now)
        .values("status", "expired_undecided")
        .annotate(**buckets("decided_at"))
    )
    for row in rows:
        counts = closed[_outcome(row["status"], row["expired_undecided"])]
        for i in range(len(hours)):
            counts[i] += row[f"h{i}"]
    return arrivals, closed


class Seconds(Func):
    """Seconds from the second expression to the first, in the database's own arithmetic
    (SQLite's ``julianday``, PostgreSQL's epoch of an interval): subtracting the datetime
    fields themselves calls a Python function per row on SQLite."""

    output_field = FloatField()
    arg_joiner = " - "
    template = "EXTRACT(EPOCH FROM (%(expressions)s))::double precision"

    def as_sqlite(self, compiler, connection, **extra):
        return super().as_sql(
            compiler,
            connection,
            template="((julianday(%(expressions)s)) * 86400.0)",
            arg_joiner=") - julianday(",
            **extra,
        )


def _seconds(value) -> float | None:
    """A wait read back: to the millisecond (``julianday`` is exact to about 50 µs)."""
    return None if value is None else round(value, 3)


def _outcome(status: str, expired_undecided: bool) -> str:
    if expired_undecided:
        return "expired"
    return str(status)


_GROUP_FIGURES = (
    "backlog", "arrivals_1h", "arrivals_24h", "decided_24h", "expired_24h",
    *(f"{outcome}_1h" for outcome in OUTCOMES),
)  # fmt: skip


def _groups(requests: QuerySet, *, now, day_ago, hour_ago) -> list[dict]:
    """Per business unit and approver group: the backlog, arrivals and outcomes; one
    query over the requests that arrived or closed in the last day or still wait."""
    last_hour = Q(decided_at__gt=hour_ago, decided_at__lte=now)
    outcome_filters = {
        "approved": Q(status=ApprovalStatus.APPROVED, expired_undecided=False),
        "rejected": Q(status=ApprovalStatus.REJECTED),
        "expired": EXPIRED,
        "cancelled": CANCELLED,
    }
    arrived = Q(created_at__gt=day_ago, created_at__lte=now)
    rows = (
        requests.filter(
            Q(created_at__gt=day_ago) | Q(decided_at__gt=day_ago) | PENDING,
            created_at__lte=now,
        )
        .values(
            "business_unit__slug",
            "business_unit__name",
            "approver_group_id",
            "approver_group__name",
        )  # fmt: skip
        .annotate(
            # Waiting at ``now``: pending still, or closed only after it.
            backlog=Count("pk", filter=PENDING | Q(decided_at__gt=now)),
            arrivals_1h=Count("pk", filter=Q(created_at__gt=hour_ago, created_at__lte=now)),
            arrivals_24h=Count("pk", filter=arrived),
            first_arrival=Min("created_at", filter=arrived),
            decided_24h=Count(
                "pk", filter=DECIDED & Q(decided_at__gt=day_ago, decided_at__lte=now)
            ),
            expired_24h=Count(
                "pk", filter=EXPIRED & Q(decided_at__gt=day_ago, decided_at__lte=now)
            ),
            **{
                f"{outcome}_1h": Count("pk", filter=condition & last_hour)
                for outcome, condition in outcome_filters.items()
            },
        )
    )
    groups = [
        {
            "unit": row["business_unit__name"] or "—",
            "unit_slug": row["business_unit__slug"] or "",
            "group": row["approver_group__name"],
            "group_id": row["approver_group_id"],
            **{key: row[key] for key in _GROUP_FIGURES},
            "first_arrival": row["first_arrival"],
        }
        for row in rows
    ]
    return sorted(groups, key=lambda g: (-g["backlog"], -g["arrivals_24h"], g["unit"], g["group"]))


def nearest_rank(quantile: float, n: int) -> int:
    """The 0-based position of a quantile among ``n`` sorted values (nearest-rank method:
    the smallest value with at least that share of values at or below it)."""
    return max(0, math.ceil(quantile * n) - 1)


def _time_to_decision(decided: QuerySet, *, n: int) -> tuple[float | None, float | None]:
    """Median and p90 of arrival-to-decision times, read one row each by position in the
    sorted waits: the same on SQLite and PostgreSQL, no rows fetched but the two."""
    if not n:
        return None, None
    waits = decided.annotate(wait=Seconds("decided_at", "created_at")).order_by("wait")
    values = []
    for quantile in (0.5, 0.9):
        k = nearest_rank(quantile, n)
        wait = waits.values_list("wait", flat=True)[k : k + 1]
        values.append(_seconds(wait[0]) if wait else None)
    return values[0], values[1]


def _approvers(requests: QuerySet, filters: dict, *, now, day_ago, limit: int) -> list[dict]:
    """Each approver's load: decisions in the last day with their median wait (arrival to
    their decision), and the requests waiting that they may decide (guardian grants to them
    or their groups, the rule the inbox reads). Busiest first, at most ``limit``."""
    # One row per approver: the decision at their median position (nearest rank), with
    # how many they made; the database ranks, only one row per person comes back.
    per_approver = {"partition_by": [F("approver_id")]}
    ranked = (
        Decision.objects.filter(
            scope(**filters, via="request__"), created_at__gt=day_ago, created_at__lte=now
        )
        .annotate(
            wait=Seconds("created_at", "request__created_at"),
            n=Window(Count("pk"), **per_approver),
            rank=Window(
                RowNumber(),
                **per_approver,
                order_by=[Seconds("created_at", "request__created_at").asc(), F("pk").asc()],
            ),
        )
        .filter(rank=(F("n") + 1) / 2)
        .values_list("approver_id", "n", "wait")
    )
    decisions = {pk: (n, _seconds(wait)) for pk, n, wait in ranked}
    pending = _pending_per_person(requests.filter(PENDING, created_at__lte=now))
    people = sorted(
        set(decisions) | set(pending),
        key=lambda pk: (-decisions.get(pk, (0, None))[0], -pending.get(pk, 0), pk),
    )[:limit]
    users = get_user_model().objects.only("username", "first_name", "last_name").in_bulk(people)
    load = []
    for pk in people:
        user = users.get(pk)
        if user is None:
            continue
        n, median = decisions.get(pk, (0, None))
        load.append(
            {
                "id": pk,
                "username": user.get_username(),
                "name": user.get_full_name() or user.get_username(),
                "decisions_24h": n,
                "pending": pending.get(pk, 0),
                "median_seconds": median,
            }
        )
    return load


def _pending_per_person(waiting: QuerySet) -> dict[int, int]:
    """Per person, how many of ``waiting`` they may decide: through their groups' grants,
    plus direct grants (a request granted both ways counts twice; grants are made to groups)."""
    ct = ContentType.objects.get_for_model(ApprovalRequest)

    def bare(expression):  # guardian keeps ids as text; see selectors.inbox_for_user
        return Replace(expression, Value("-"), Value(""))

    ids = waiting.annotate(pk_text=bare(Cast("pk", CharField()))).values("pk_text")
    counts: dict[int, int] = {}
    for model, person in ((GroupObjectPermission, "group__user"), (UserObjectPermission, "user")):
        rows = (
            model.objects.filter(content_type=ct, permission__codename="decide_approvalrequest")
            .annotate(bare_pk=bare("object_pk"))
            .filter(bare_pk__in=Subquery(ids), **{f"{person}__isnull": False})
            .values(person)
            .annotate(n=Count("object_pk", distinct=True))
            .values_list(person, "n")
        )
        for pk, n in rows:
            counts[pk] = counts.get(pk, 0) + n
    return counts


def wait_words(seconds: float | None) -> str:
    """A wait for a tile or a table: seconds, minutes or hours; "—" for none."""
    if seconds is None:
        return "—"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def forecast_sentence(load: ApprovalLoad) -> str:
    """The backlog and where it goes in the next hour, in words."""
    rate = round(load.rate_per_hour)
    head = f"Backlog {load.backlog:,}"
    if rate > 0:
        return f"{head}, growing by {rate:,}/h — at this rate {load.forecast_1h:,} in an hour."
    if rate < 0 and load.backlog:
        hours = load.hours_to_clear or 0
        when = f"{hours * 60:.0f} min" if hours < 1.5 else f"{hours:.1f} h"
        return f"{head}, shrinking by {-rate:,}/h — at this rate clear in about {when}."
    return f"{head}, steady."


FORECAST_METHOD = (
    "Forecast: the arrivals of the last hour minus the requests that left the backlog "
    "(decided, expired or cancelled), per hour, carried forward one hour. Measured since "
    "the first arrival when that is less than an hour ago."
)
