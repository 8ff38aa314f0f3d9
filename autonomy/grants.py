"""The one rule for "which operations may this agent call", and its writes.

An operation may be called by an agent when a django-guardian object permission grants
``execute_operation`` on the operation, or ``execute_connector`` on its connector, to the
agent's service user or to its role's group. Everything that asks (the gate, the MCP tool
list, ``GET /api/v1/operations/``, workflow authoring, the agent page) asks here:
``grant_paths`` is the rule as four ``Exists`` expressions over an ``Operation`` queryset, and
the readers below are built on it.
"""

import functools

from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from guardian.models import GroupObjectPermission, UserObjectPermission
from guardian.shortcuts import assign_perm, get_perms, remove_perm

from agents.models import Agent, Role
from autonomy import audit
from autonomy.models import Connector, Operation

OPERATION_PERM = "execute_operation"
CONNECTOR_PERM = "execute_connector"
# How a grant reaches an operation, in the order the trace names one when several do.
PATHS = ("agent_operation", "agent_connector", "role_operation", "role_connector")


def _held(table: str, holder: str, model: str, codename: str, target: str, who: str) -> str:
    """SQL: a guardian row of ``table`` whose ``holder`` column is the SQL expression ``who``,
    granting ``codename`` on the ``model`` object whose id is ``target``."""
    return (
        f"EXISTS (SELECT 1 FROM {table} g WHERE g.{holder} = {who}"
        f" AND g.content_type_id = (SELECT id FROM {{ct}} WHERE app_label = 'autonomy'"
        f" AND model = '{model}') AND g.object_pk = CAST({target} AS {{text}})"
        f" AND g.permission_id = (SELECT p.id FROM {{perm}} p JOIN {{ct}} c"
        f" ON p.content_type_id = c.id WHERE c.app_label = 'autonomy' AND c.model = '{model}'"
        f" AND p.codename = '{codename}'))"
    )


@functools.cache
def _rule(
    alias: str,
    operation: str,
    connector: str,
    user: str = "%(user_id)s",
    group: str = "%(group_id)s",
) -> str:
    quote = connection.ops.quote_name
    names = {
        "uop": quote(UserObjectPermission._meta.db_table),
        "gop": quote(GroupObjectPermission._meta.db_table),
        "perm": quote(Permission._meta.db_table),
        "ct": quote(ContentType._meta.db_table),
        "text": "text" if connection.vendor == "postgresql" else "TEXT",
    }
    ways = {
        "agent_operation": _held("{uop}", "user_id", "operation", OPERATION_PERM, operation, user),
        "agent_connector": _held("{uop}", "user_id", "connector", CONNECTOR_PERM, connector, user),
        "role_operation": _held("{gop}", "group_id", "operation", OPERATION_PERM, operation, group),
        "role_connector": _held("{gop}", "group_id", "connector", CONNECTOR_PERM, connector, group),
    }
    cases = " ".join(f"WHEN {ways[path]} THEN '{path}'" for path in PATHS)
    return f"(CASE {cases} END)".format(**names)


def grant_path_sql(*, operation: str, connector: str) -> str:
    """THE RULE, as one SQL expression for the current database: how a grant reaches the
    operation whose id and connector id are the SQL expressions ``operation`` and
    ``connector`` (one of ``PATHS``), or NULL when none does. It reads the named parameters
    ``%(user_id)s`` (the agent's service user; NULL for a role alone) and ``%(group_id)s``
    (its role's group). The gate embeds it in its one read; the listings below run it over
    the operations table. Raw SQL through Django's cursor, built once per database: it runs
    on every decision, where building the ORM's equivalent cost ~100x running it."""
    return _rule(connection.alias, operation, connector)


def grants_of_agents(*, agents: QuerySet[Agent]) -> list[tuple]:
    """THE RULE over many agents at once: ``(agent_id, operation_id, path)`` for every
    operation each agent of ``agents`` is granted (``path`` as ``grant_path_sql`` names the
    first grant that reaches it). One query, whatever the number of agents: the access
    review lists every grant of a business unit with it."""
    q = connection.ops.quote_name
    rule = _rule(
        connection.alias,
        "o.id",
        "o.connector_id",
        user="a.service_user_id",
        group="r.group_id",
    )
    chosen, chosen_params = agents.values("pk").query.sql_with_params()
    sql = (
        f"SELECT agent_id, operation_id, path FROM (SELECT a.id AS agent_id,"
        f" o.id AS operation_id, {rule} AS path"
        f" FROM {q(Agent._meta.db_table)} a JOIN {q(Role._meta.db_table)} r ON r.id = a.role_id"
        f" CROSS JOIN {q(Operation._meta.db_table)} o WHERE a.id IN ({chosen})) granted"
        f" WHERE path IS NOT NULL"
    )
    # The rule's own SQL holds no parameter here (its holders are columns), so the chosen
    # agents' parameters are the only ones: positional, as Django compiled them.
    with connection.cursor() as cursor:
        cursor.execute(sql, chosen_params)
        rows = cursor.fetchall()
    field = Agent._meta.pk
    return [(field.to_python(a), o, path) for a, o, path in rows]


def grant_params(*, agent=None, role=None) -> dict:
    if agent is not None:
        return {"user_id": agent.service_user_id, "group_id": agent.role.group_id}
    if role is not None:
        return {"user_id": None, "group_id": role.group_id}
    raise TypeError("ask for an agent or a role")


def grant_named(agent, path: str | None) -> dict | None:
    """How a grant reached the operation, for the trace: ``{"to", "on"}``, or None."""
    if path is None:
        return None
    holder, target = path.split("_")
    return {"to": "agent" if holder == "agent" else f"role:{agent.role.slug}", "on": target}


def _granted_ids(params: dict, *, operation_id=None) -> list[int]:
    table = connection.ops.quote_name(Operation._meta.db_table)
    rule = grant_path_sql(operation="o.id", connector="o.connector_id")
    sql = f"SELECT o.id FROM {table} o WHERE {rule} IS NOT NULL"
    if operation_id is not None:
        sql += " AND o.id = %(operation_id)s"
        params = {**params, "operation_id": operation_id}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def operations_granted(*, agent=None, role=None) -> QuerySet[Operation]:
    """Every operation the agent (directly or through its role), or the role, is granted,
    enabled or not, with its connector: two queries."""
    ids = _granted_ids(grant_params(agent=agent, role=role))
    return Operation.objects.select_related("connector").filter(pk__in=ids)


def operations_callable(*, agent=None, role=None) -> QuerySet[Operation]:
    """What the agent or role may call now: granted, and enabled with its connector. The MCP
    tool list and ``GET /api/v1/operations/`` show exactly these."""
    return (
        operations_granted(agent=agent, role=role)
        .filter(enabled=True, connector__enabled=True)
        .order_by("connector__slug", "slug")
    )


def is_granted(*, operation: Operation, agent=None, role=None) -> bool:
    return bool(_granted_ids(grant_params(agent=agent, role=role), operation_id=operation.pk))


def grants_listed(*, agent) -> list[dict]:
    """The agent's grants as the agent page lists them: who holds each (the agent or its role),
    on what, with the operation's data class and sensitivity. Four queries."""
    return _described(
        (
            ("agent", UserObjectPermission.objects.filter(user_id=agent.service_user_id)),
            (
                f"role:{agent.role.slug}",
                GroupObjectPermission.objects.filter(group_id=agent.role.group_id),
            ),
        )
    )


def grants_of_role(*, role) -> list[dict]:
    """The grants a role holds itself, listed as ``grants_listed`` does (``target`` is an
    operation key, or ``<connector>.*`` for a whole connector). Three queries."""
    return _described(
        ((f"role:{role.slug}", GroupObjectPermission.objects.filter(group_id=role.group_id)),)
    )


def _described(holders) -> list[dict]:
    rows = []
    wanted = Q(
        content_type=ContentType.objects.get_for_model(Operation),
        permission__codename=OPERATION_PERM,
    ) | Q(
        content_type=ContentType.objects.get_for_model(Connector),
        permission__codename=CONNECTOR_PERM,
    )
    for holder, held in holders:
        for model, pk, codename in held.filter(wanted).values_list(
            "content_type__model", "object_pk", "permission__codename"
        ):
            rows.append({"to": holder, "model": model, "pk": pk, "permission": codename})
    ids = {m: [r["pk"] for r in rows if r["model"] == m] for m in ("operation", "connector")}
    names = {}
    if ids["operation"]:
        for op in Operation.objects.select_related("connector").filter(pk__in=ids["operation"]):
            names[("operation", str(op.pk))] = (op.key, op.get_data_class_display(), op.sensitivity)
    if ids["connector"]:
        for conn in Connector.objects.filter(pk__in=ids["connector"]):
            names[("connector", str(conn.pk))] = (f"{conn.slug}.*", "", None)
    for row in rows:
        row["target"], row["data_class"], row["sensitivity"] = names.get(
            (row["model"], row["pk"]), (f"{row['model']} #{row['pk']} (gone)", "", None)
        )
    return sorted(rows, key=lambda r: (r["to"], r["target"]))


# --- grants by name: how bundles and the admin API name holders and targets ----------------


def holder_name(holder: Agent | Role) -> str:
    """``role:<slug>`` or ``agent:<slug>``."""
    return f"{'agent' if isinstance(holder, Agent) else 'role'}:{holder.slug}"


def target_name(target: Operation | Connector) -> str:
    """An operation's key (``erp.pay-invoice``), or ``<connector>.*`` for a whole connector."""
    return target.key if isinstance(target, Operation) else f"{target.slug}.*"


def holder_named(name: str) -> Agent | Role | None:
    kind, _, slug = str(name).partition(":")
    if kind == "role":
        return Role.objects.select_related("group").filter(slug=slug).first()
    if kind == "agent":
        return Agent.objects.select_related("service_user", "role").filter(slug=slug).first()
    return None


def target_named(name: str) -> Operation | Connector | None:
    connector, _, operation = str(name).partition(".")
    if operation == "*":
        return Connector.objects.filter(slug=connector).first()
    return (
        Operation.objects.select_related("connector")
        .filter(connector__slug=connector, slug=operation)
        .first()
    )


def grants_table() -> list[dict]:
    """Every grant held by a role or an agent, by name, sorted: ``{"id", "to", "target"}``,
    where ``id`` is ``r<row>`` (a role's guardian row) or ``a<row>`` (an agent's). Six
    queries whatever the number of grants: the registry's export and ``/api/v1/grants/``."""
    op_ct = ContentType.objects.get_for_model(Operation)
    conn_ct = ContentType.objects.get_for_model(Connector)
    wanted = Q(content_type=op_ct, permission__codename=OPERATION_PERM) | Q(
        content_type=conn_ct, permission__codename=CONNECTOR_PERM
    )
    roles = dict(Role.objects.values_list("group_id", "slug"))
    agents = dict(Agent.objects.values_list("service_user_id", "slug"))
    targets = {
        (op_ct.pk, str(pk)): f"{connector}.{slug}"
        for pk, connector, slug in Operation.objects.values_list("pk", "connector__slug", "slug")
    }
    targets.update(
        {
            (conn_ct.pk, str(pk)): f"{slug}.*"
            for pk, slug in Connector.objects.values_list("pk", "slug")
        }
    )
    rows = []
    held = (
        ("r", "role", roles, GroupObjectPermission.objects.filter(group_id__in=roles), "group_id"),
        ("a", "agent", agents, UserObjectPermission.objects.filter(user_id__in=agents), "user_id"),
    )
    for prefix, kind, names, queryset, column in held:
        for pk, holder, ct, object_pk in queryset.filter(wanted).values_list(
            "pk", column, "content_type_id", "object_pk"
        ):
            target = targets.get((ct, object_pk))
            if target is not None:
                rows.append(
                    {"id": f"{prefix}{pk}", "to": f"{kind}:{names[holder]}", "target": target}
                )
    return sorted(rows, key=lambda row: (row["to"], row["target"]))


def grant_row(grant_id: str) -> dict | None:
    """One row of ``grants_table`` by its id, or None."""
    return next((row for row in grants_table() if row["id"] == grant_id), None)


# --- writes ---------------------------------------------------------------------------------


def _principal(grantee):
    """Agents are granted through their service user, roles through their group."""
    if isinstance(grantee, Agent):
        return grantee.service_user
    if isinstance(grantee, Role):
        return grantee.group
    raise TypeError("grant to an Agent or a Role")


def _perm(target) -> str:
    return OPERATION_PERM if isinstance(target, Operation) else CONNECTOR_PERM


def grant_codename(target: Operation | Connector) -> str:
    """The object permission that is a grant on ``target`` (what the gate checks)."""
    return _perm(target)


def _set(*, target: Operation | Connector, to, by, granted: bool) -> None:
    perm = _perm(target)
    change = assign_perm if granted else remove_perm
    with transaction.atomic():
        change(f"autonomy.{perm}", _principal(to), target)
        audit.append(
            kind="grant",
            actor=getattr(by, "username", ""),
            payload={"target": str(target), "to": str(to), "perm": perm, "granted": granted},
        )


def is_held(*, target: Operation | Connector, to) -> bool:
    """Whether the role, or the agent (itself or through its role's group), already holds
    this very permission on ``target``: asking for it again widens nothing."""
    return _perm(target) in get_perms(_principal(to), target)


def grant(*, target: Operation | Connector, to, by=None) -> None:
    """Grant at once. People ask through ``agents.services.grant_request``, which waits for
    approval and calls this when granted; trusted internal callers (the demo seed, fixtures)
    call it directly."""
    _set(target=target, to=to, by=by, granted=True)


def revoke_grant(*, target: Operation | Connector, to, by=None) -> None:
    """Narrowing never waits: revoking takes effect at once."""
    _set(target=target, to=to, by=by, granted=False)
