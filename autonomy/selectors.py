"""Reads the gate needs, each a constant number of queries whatever the registry's size."""

import copy
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import Aggregate, CharField, Q, Subquery, Sum

from agents.models import DriftFlag, FlagStatus
from autonomy import grants, usage
from autonomy.models import (
    ActionRequest,
    ActionStatus,
    AgentUsage,
    Operation,
    PolicyStoreState,
    WorkerBeat,
)
from autonomy.risk import Behaviour

CENTS = Decimal("0.01")
_operations: tuple[int | None, dict[str, Operation]] = (None, {})


def operation_by_key(*, key: str, version: int | None = None) -> Operation | None:
    """The operation (with its connector) agents call ``key``.

    With the policy-store ``version`` read for this request, found operations are kept in a
    process-local cache for that version: every change to an operation or a connector moves
    the version (``autonomy.policy.receivers``), so a cached row never outlives its content.
    The version must have been read in the same transaction state as this call.
    Callers get their own copies, so nothing they set leaks into the next request.
    """
    connector_slug, _, slug = key.partition(".")
    if not connector_slug or not slug:
        return None
    cached_version, cache = _operations
    if version and cached_version == version and key in cache:
        return copy_operation(cache[key])
    operation = (
        Operation.objects.select_related("connector")
        .filter(connector__slug=connector_slug, slug=slug)
        .first()
    )
    # Only a committed version is never issued again (a rolled-back bump can be), and outside
    # a transaction only committed versions are read: remember only what was read there.
    # Version 0 is a database without its store row (a flushed test database): it never
    # moves, so nothing read there may be kept.
    if operation is not None and version and not connection.in_atomic_block:
        _remember(version, key, operation)
        return copy_operation(operation)
    return operation


def _remember(version: int, key: str, operation: Operation) -> None:
    global _operations
    cached_version, cache = _operations
    if cached_version != version:
        cache = {}  # one version at a time: a new version starts empty
        _operations = (version, cache)
    cache[key] = operation


def operations_forget() -> None:
    """Drop the cached operations (see ``compiled_forget`` in the policy engine: only a
    database whose versions start again needs it)."""
    global _operations
    _operations = (None, {})


def copy_operation(operation: Operation) -> Operation:
    """A copy of a cached operation and its connector, for one request to set things on."""
    copied = copy.copy(operation)
    copied.connector = copy.copy(operation.connector)
    return copied


class _KindsJoined(Aggregate):
    """The open drift flags' kinds, comma-joined: ``string_agg`` on PostgreSQL,
    ``group_concat`` on SQLite (Django 5.2 has no portable string aggregate)."""

    function = "GROUP_CONCAT"
    template = "%(function)s(%(expressions)s, ',')"
    output_field = CharField()

    def as_postgresql(self, compiler, connection, **extra_context):
        return super().as_sql(compiler, connection, function="STRING_AGG", **extra_context)


def _usage_total(agent_id, column: str, **window):
    """One aggregate over an agent's minute rows, as a scalar subquery."""
    minutes = AgentUsage.objects.filter(agent_id=agent_id, **window).order_by()
    return Subquery(minutes.values("agent_id").annotate(total=Sum(column)).values("total")[:1])


def gate_facts(*, agent, operation: Operation, at: datetime) -> tuple[dict | None, Behaviour, int]:
    """Grant (``autonomy.grants``, the one rule), recent behaviour and the policy-store version
    in ONE round trip, whatever the agent's history: behaviour comes from its minute counters
    (``autonomy.usage``). The version is returned as this read saw it, so a caller that
    guessed it can check (``gate.decide``). Run after ``usage.hold`` when the decision is
    recorded, so no concurrent decision of the agent's can slip between read and write."""
    bounds = usage.window_bounds(at)
    minute = AgentUsage.objects.filter(agent_id=agent.pk).order_by()
    flags = (
        DriftFlag.objects.filter(agent_id=agent.pk, status=FlagStatus.OPEN)
        .order_by()
        .values("agent_id")
        .annotate(kinds=_KindsJoined("kind"))
        .values("kinds")[:1]
    )
    row = (
        Operation.objects.filter(pk=operation.pk)
        .annotate(**grants.agent_grant_paths(agent))
        .annotate(
            this_minute=Subquery(minute.filter(minute=bounds["this_minute"]).values("actions")),
            last_minute=Subquery(minute.filter(minute=bounds["last_minute"]).values("actions")),
            denials=_usage_total(agent.pk, "denials", minute__gte=bounds["hour_start"]),
            spend=_usage_total(agent.pk, "spend", minute__gte=bounds["day_start"]),
            flags=Subquery(flags),
            version=Subquery(PolicyStoreState.objects.filter(pk=1).values("version")),
        )
        .values(
            *grants.PATHS, "this_minute", "last_minute", "denials", "spend", "flags", "version"
        )  # fmt: skip
        .first()
    ) or {}
    behaviour = Behaviour(
        actions_last_minute=usage.actions_last_minute(
            at=at,
            this_minute=row.get("this_minute") or 0,
            last_minute=row.get("last_minute") or 0,
        ),
        denials_last_hour=row.get("denials") or 0,
        spend_today=Decimal(str(row.get("spend") or 0)).quantize(CENTS),
        open_flags=tuple(sorted(row["flags"].split(","))) if row.get("flags") else (),
    )
    return grants.grant_named(agent, row), behaviour, row.get("version") or 0


def cached_version() -> int | None:
    """The policy-store version the operation cache holds (a committed one), or None: a
    guess a request may start from, confirmed by ``gate_facts``'s read."""
    return _operations[0]


def actions_not_started(*, decided_before: datetime, limit: int = 1000) -> list:
    """Ids of approved actions decided before ``decided_before`` that no worker has started,
    oldest first (a bounded batch: the next sweep takes the rest)."""
    return list(
        ActionRequest.objects.filter(
            status=ActionStatus.APPROVED, started_at__isnull=True, decided_at__lt=decided_before
        )
        .order_by("decided_at")
        .values_list("pk", flat=True)[:limit]
    )


def actions_stalled(*, now: datetime, lease: timedelta, alive: set[str], limit: int = 1000) -> list:
    """Ids of executing actions whose worker died with the message (a killed process; a
    broker that does not redeliver, as the filesystem one, or not for an hour, as Redis),
    oldest first: those whose worker (``autonomy.liveness``) is not in ``alive``, and those
    naming none that have executed longer than ``lease`` for each execution they had (one
    re-send per lease per execution, so a slow connector call is not piled on every sweep).
    """
    rows = (
        ActionRequest.objects.filter(status=ActionStatus.EXECUTING)
        .filter(Q(started_at__lt=now - lease) | (~Q(worker="") & ~Q(worker__in=alive)))
        .order_by("started_at")
        .values_list("pk", "started_at", "attempts", "worker")[:limit]
    )
    return [
        pk
        for pk, started, tries, worker in rows
        if (worker and worker not in alive) or started < now - lease * max(tries, 1)
    ]


def live_workers(*, since: datetime) -> list[str]:
    """Names of the worker processes that beat after ``since`` (``autonomy.liveness``)."""
    return list(WorkerBeat.objects.filter(beat_at__gt=since).values_list("name", flat=True))
