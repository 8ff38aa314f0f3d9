"""Reads the gate needs, each a constant number of queries whatever the registry's size."""

import copy
import functools
import operator
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import Q

from agents.models import DriftFlag
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


def operation_ids(*, keys) -> dict[str, int]:
    """The ids of the operations ``keys`` name (``<connector>.<operation>``), by key; a key
    no operation has is left out. One query: the one lookup of every list that narrows
    something to operations (autonomy settings, rollout plans)."""
    pairs = {tuple(key.split(".", 1)) for key in keys if "." in key}
    if not pairs:
        return {}
    named = functools.reduce(
        operator.or_, (Q(connector__slug=connector, slug=slug) for connector, slug in pairs)
    )
    rows = Operation.objects.filter(named).values_list("pk", "connector__slug", "slug")
    return {f"{connector}.{slug}": pk for pk, connector, slug in rows}


def copy_operation(operation: Operation) -> Operation:
    """A copy of a cached operation and its connector, for one request to set things on."""
    copied = copy.copy(operation)
    copied.connector = copy.copy(operation.connector)
    return copied


@functools.cache
def _facts_sql(alias: str) -> str:
    quote = connection.ops.quote_name
    usage_table = quote(AgentUsage._meta.db_table)
    kinds = (
        "string_agg(kind, ',')" if connection.vendor == "postgresql" else "GROUP_CONCAT(kind, ',')"
    )
    rule = grants.grant_path_sql(operation="%(operation)s", connector="%(connector)s")
    return (
        f"SELECT {rule} AS grant_path,"
        f" (SELECT actions FROM {usage_table} WHERE agent_id = %(agent)s"
        f"  AND minute = %(this_minute)s) AS this_minute,"
        f" (SELECT actions FROM {usage_table} WHERE agent_id = %(agent)s"
        f"  AND minute = %(last_minute)s) AS last_minute,"
        f" (SELECT SUM(denials) FROM {usage_table} WHERE agent_id = %(agent)s"
        f"  AND minute >= %(hour)s) AS denials,"
        f" (SELECT SUM(spend) FROM {usage_table} WHERE agent_id = %(agent)s"
        f"  AND minute >= %(day)s) AS spend,"
        f" (SELECT {kinds} FROM {quote(DriftFlag._meta.db_table)} WHERE agent_id = %(agent)s"
        f"  AND status = 'open') AS flags,"
        f" (SELECT version FROM {quote(PolicyStoreState._meta.db_table)} WHERE id = 1)"
        f" AS version"
    )


def gate_facts(*, agent, operation: Operation, at: datetime) -> tuple[dict | None, Behaviour, int]:
    """Grant (``autonomy.grants``' rule), recent behaviour and the policy-store version in
    ONE round trip, whatever the agent's history: behaviour comes from its minute counters
    (``autonomy.usage``). Raw SQL through Django's cursor, built once per database: this runs
    on every decision, and building the ORM's equivalent cost ~100x running it (measured).
    The version is returned as this read saw it, so a caller that guessed it can check
    (``gate.decide``). Run after ``usage.hold`` when the decision is recorded, so no
    concurrent decision of the agent's slips between this read and its write."""
    bounds = usage.window_bounds(at)
    minute = AgentUsage._meta.get_field("minute")
    agent_key = AgentUsage._meta.get_field("agent").target_field
    params = {
        **grants.grant_params(agent=agent),
        "operation": str(operation.pk),
        "connector": str(operation.connector_id),
        "agent": agent_key.get_db_prep_value(agent.pk, connection),
        "this_minute": minute.get_db_prep_value(bounds["this_minute"], connection),
        "last_minute": minute.get_db_prep_value(bounds["last_minute"], connection),
        "hour": minute.get_db_prep_value(bounds["hour_start"], connection),
        "day": minute.get_db_prep_value(bounds["day_start"], connection),
    }
    with connection.cursor() as cursor:
        cursor.execute(_facts_sql(connection.alias), params)
        path, this_minute, last_minute, denials, spend, flags, version = cursor.fetchone()
    behaviour = Behaviour(
        actions_last_minute=usage.actions_last_minute(
            at=at, this_minute=this_minute or 0, last_minute=last_minute or 0
        ),
        denials_last_hour=denials or 0,
        spend_today=Decimal(str(spend or 0)).quantize(CENTS),
        open_flags=tuple(sorted(flags.split(","))) if flags else (),
    )
    return grants.grant_named(agent, path), behaviour, version or 0


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


def actions_by_id(*, ids) -> dict:
    """Actions by id with their operation, in one query: what audit records name, for
    masking their payloads (``autonomy.masking.payload_for``)."""
    ids = {i for i in ids if i}
    if not ids:
        return {}
    return {a.pk: a for a in ActionRequest.objects.filter(pk__in=ids).select_related("operation")}
