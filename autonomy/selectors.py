"""Reads the gate needs, each a constant number of queries whatever the registry's size."""

import functools
from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection, connections
from django.db.models import Q
from guardian.models import GroupObjectPermission, UserObjectPermission

from agents.models import DriftFlag
from autonomy import rows, usage
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


def copy_operation(operation: Operation) -> Operation:
    """A copy of a cached operation and its connector, for one request to set things on."""
    copied = rows.copy_model(operation)
    copied.connector = rows.copy_model(operation.connector)
    return copied


def _sql_names(alias: str) -> dict[str, str]:
    ops = connections[alias].ops
    quote = ops.quote_name
    return {
        "uop": quote(UserObjectPermission._meta.db_table),
        "gop": quote(GroupObjectPermission._meta.db_table),
        "perm": quote(Permission._meta.db_table),
        "ct": quote(ContentType._meta.db_table),
        "usage": quote(AgentUsage._meta.db_table),
        "state": quote(PolicyStoreState._meta.db_table),
        "flag": quote(DriftFlag._meta.db_table),
        # The open flags' kinds, comma-joined, in the same round trip.
        "kinds": "string_agg(kind, ',')"
        if connections[alias].vendor == "postgresql"
        else "GROUP_CONCAT(kind, ',')",
    }


def _grant_on(model: str, codename: str, pk: str) -> str:
    """A guardian row granting ``codename`` on the object ``%(pk)s`` of ``model``."""
    return (
        f"(g.content_type_id = (SELECT id FROM {{ct}} WHERE app_label = 'autonomy'"
        f" AND model = '{model}') AND g.object_pk = %({pk})s AND g.permission_id ="
        f" (SELECT p.id FROM {{perm}} p JOIN {{ct}} c ON p.content_type_id = c.id"
        f" WHERE c.app_label = 'autonomy' AND c.model = '{model}' AND p.codename = '{codename}'))"
    )


_GRANT_TARGET = (
    f"({_grant_on('operation', 'execute_operation', 'operation')}"
    f" OR {_grant_on('connector', 'execute_connector', 'connector')})"
)
# Named parameters and a short name for every column: on SQLite, Django turns positional
# ``%s`` into ``?`` with a regular expression over the whole statement on every call, and
# the driver builds each unnamed column's name from its expression's text; both cost more
# than running this query (measured: 200 -> 70 us per call).
_FACTS_SQL = (
    "SELECT"
    " (SELECT c.model FROM {uop} g JOIN {ct} c ON g.content_type_id = c.id"
    "  WHERE g.user_id = %(user)s AND " + _GRANT_TARGET + " ORDER BY c.model DESC LIMIT 1)"
    " AS direct,"
    " (SELECT c.model FROM {gop} g JOIN {ct} c ON g.content_type_id = c.id"
    "  WHERE g.group_id = %(group)s AND " + _GRANT_TARGET + " ORDER BY c.model DESC LIMIT 1)"
    " AS via_role,"
    " (SELECT actions FROM {usage} WHERE agent_id = %(agent)s AND minute = %(this_minute)s)"
    " AS this_minute,"
    " (SELECT actions FROM {usage} WHERE agent_id = %(agent)s AND minute = %(last_minute)s)"
    " AS last_minute,"
    " (SELECT SUM(denials) FROM {usage} WHERE agent_id = %(agent)s AND minute >= %(hour)s)"
    " AS denials,"
    " (SELECT SUM(spend) FROM {usage} WHERE agent_id = %(agent)s AND minute >= %(day)s)"
    " AS spend,"
    " (SELECT {kinds} FROM {flag} WHERE agent_id = %(agent)s AND status = 'open') AS flags,"
    " (SELECT version FROM {state} WHERE id = 1) AS version"
)


@functools.cache
def _facts_sql(alias: str) -> str:
    return _FACTS_SQL.format(**_sql_names(alias))


def gate_facts(*, agent, operation: Operation, at: datetime) -> tuple[dict | None, Behaviour, int]:
    """Grant and recent behaviour in ONE round trip, in raw SQL because this runs on every
    decision and building the ORM's queries cost more than running them (measured with
    ``make bench``). Behaviour comes from the agent's minute counters (``autonomy.usage``):
    a few small rows, however many actions the agent asked for. Also returns the policy-store
    version as this read saw it, so a caller that guessed it can check (``gate.decide``)."""
    connection = rows.db()
    bounds = usage.window_bounds(at)
    params = {
        "user": agent.service_user_id,
        "group": agent.role.group_id,
        "operation": str(operation.pk),
        "connector": str(operation.connector_id),
        "agent": AGENT_KEY.get_db_prep_value(agent.pk, connection),
        "this_minute": rows.datetime_value(bounds["this_minute"], connection),
        "last_minute": rows.datetime_value(bounds["last_minute"], connection),
        "hour": rows.datetime_value(bounds["hour_start"], connection),
        "day": rows.datetime_value(bounds["day_start"], connection),
    }
    with rows.cursor(connection) as cursor:
        cursor.execute(_facts_sql(connection.alias), params)
        row = cursor.fetchone()
    direct, via_role, this_minute, last_minute, denials, spend, flags, version = row
    grant = None
    if direct is not None:
        grant = {"to": "agent", "on": direct}
    elif via_role is not None:
        grant = {"to": f"role:{agent.role.slug}", "on": via_role}
    behaviour = Behaviour(
        actions_last_minute=usage.actions_last_minute(
            at=at, this_minute=this_minute or 0, last_minute=last_minute or 0
        ),
        denials_last_hour=denials or 0,
        spend_today=Decimal(str(spend or 0)).quantize(CENTS),
        open_flags=tuple(sorted(flags.split(","))) if flags else (),
    )
    return grant, behaviour, version or 0


# How an agent id goes into the raw SQL of the gate's reads (also ``services._replay``).
AGENT_KEY = ActionRequest._meta.get_field("agent").target_field


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


def operations_granted(*, agent) -> list[Operation]:
    """The enabled operations ``agent`` may ask for: granted on the operation or on its
    connector, to its service user or to its role's group. Three queries, whatever the
    number of grants or operations."""
    from django.db.models import Q

    from autonomy.models import Connector

    targets = {
        ContentType.objects.get_for_model(Operation): "execute_operation",
        ContentType.objects.get_for_model(Connector): "execute_connector",
    }
    wanted = Q()
    for content_type, codename in targets.items():
        wanted |= Q(content_type=content_type, permission__codename=codename)
    rows = [
        *UserObjectPermission.objects.filter(wanted, user_id=agent.service_user_id).values_list(
            "content_type__model", "object_pk"
        ),
        *GroupObjectPermission.objects.filter(wanted, group_id=agent.role.group_id).values_list(
            "content_type__model", "object_pk"
        ),
    ]
    operation_ids = {int(pk) for model, pk in rows if model == "operation"}
    connector_ids = {int(pk) for model, pk in rows if model == "connector"}
    if not operation_ids and not connector_ids:
        return []
    return list(
        Operation.objects.select_related("connector")
        .filter(Q(pk__in=operation_ids) | Q(connector_id__in=connector_ids))
        .filter(enabled=True, connector__enabled=True)
        .order_by("connector__slug", "slug")
    )
