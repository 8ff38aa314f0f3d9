"""The one rule for "which operations may this agent call", and its writes.

An operation may be called by an agent when a django-guardian object permission grants
``execute_operation`` on the operation, or ``execute_connector`` on its connector, to the
agent's service user or to its role's group. Everything that asks (the gate, the MCP tool
list, ``GET /api/v1/operations/``, workflow authoring, the agent page) asks here:
``grant_paths`` is the rule as four ``Exists`` expressions over an ``Operation`` queryset, and
the readers below are built on it.
"""

from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import CharField, Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Cast
from guardian.models import GroupObjectPermission, UserObjectPermission
from guardian.shortcuts import assign_perm, remove_perm

from agents.models import Agent, Role
from autonomy import audit
from autonomy.models import Connector, Operation

OPERATION_PERM = "execute_operation"
CONNECTOR_PERM = "execute_connector"
# The order a grant is named in when several reach one operation (the trace names one).
PATHS = ("agent_operation", "agent_connector", "role_operation", "role_connector")


def _held(model, holder: dict, target, codename: str, outer: str):
    """Guardian rows of ``model`` (user or group) granting ``codename`` on the object the
    outer ``Operation`` row names by ``outer`` (its own pk, or its connector's)."""
    return model.objects.filter(
        **holder,
        content_type=ContentType.objects.get_for_model(target),
        permission__codename=codename,
        object_pk=Cast(OuterRef(outer), CharField()),
    )


def grant_paths(*, user_id: int | None, group_id: int | None) -> dict[str, Exists]:
    """The rule: each way a grant can reach an operation, as an ``Exists`` over ``Operation``
    rows. An operation is granted when any of them holds."""
    paths = {}
    if user_id is not None:
        user = {"user_id": user_id}
        paths["agent_operation"] = Exists(
            _held(UserObjectPermission, user, Operation, OPERATION_PERM, "pk")
        )
        paths["agent_connector"] = Exists(
            _held(UserObjectPermission, user, Connector, CONNECTOR_PERM, "connector_id")
        )
    if group_id is not None:
        group = {"group_id": group_id}
        paths["role_operation"] = Exists(
            _held(GroupObjectPermission, group, Operation, OPERATION_PERM, "pk")
        )
        paths["role_connector"] = Exists(
            _held(GroupObjectPermission, group, Connector, CONNECTOR_PERM, "connector_id")
        )
    return paths


def _principals(agent=None, role=None) -> tuple[int | None, int | None]:
    if agent is not None:
        return agent.service_user_id, agent.role.group_id
    if role is not None:
        return None, role.group_id
    raise TypeError("ask for an agent or a role")


def agent_grant_paths(agent) -> dict[str, Exists]:
    """``grant_paths`` for an agent: its service user and its role's group."""
    user_id, group_id = _principals(agent=agent)
    return grant_paths(user_id=user_id, group_id=group_id)


def grant_named(agent, row: dict) -> dict | None:
    """How a grant reached the operation, for the trace (``{"to", "on"}``), from a row
    annotated with ``agent_grant_paths``; None when none did."""
    for path in PATHS:
        if row.get(path):
            holder, target = path.split("_")
            return {"to": "agent" if holder == "agent" else f"role:{agent.role.slug}", "on": target}
    return None


def operations_granted(*, agent=None, role=None) -> QuerySet[Operation]:
    """Every operation the agent (directly or through its role), or the role, is granted,
    enabled or not, with its connector: one query."""
    user_id, group_id = _principals(agent, role)
    granted = Q()
    for path in grant_paths(user_id=user_id, group_id=group_id).values():
        granted |= Q(path)
    return Operation.objects.select_related("connector").filter(granted)


def operations_callable(*, agent=None, role=None) -> QuerySet[Operation]:
    """What the agent or role may call now: granted, and enabled with its connector. The MCP
    tool list and ``GET /api/v1/operations/`` show exactly these."""
    return (
        operations_granted(agent=agent, role=role)
        .filter(enabled=True, connector__enabled=True)
        .order_by("connector__slug", "slug")
    )


def is_granted(*, operation: Operation, agent=None, role=None) -> bool:
    return operations_granted(agent=agent, role=role).filter(pk=operation.pk).exists()


def grants_listed(*, agent) -> list[dict]:
    """The agent's grants as the agent page lists them: who holds each (the agent or its role),
    on what, with the operation's data class and sensitivity. Four queries."""
    rows = []
    holders = (
        ("agent", UserObjectPermission.objects.filter(user_id=agent.service_user_id)),
        (
            f"role:{agent.role.slug}",
            GroupObjectPermission.objects.filter(group_id=agent.role.group_id),
        ),
    )
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


def grant(*, target: Operation | Connector, to, by=None) -> None:
    perm = _perm(target)
    with transaction.atomic():
        assign_perm(f"autonomy.{perm}", _principal(to), target)
        audit.append(
            kind="grant",
            actor=getattr(by, "username", ""),
            payload={"target": str(target), "to": str(to), "perm": perm, "granted": True},
        )


def revoke_grant(*, target: Operation | Connector, to, by=None) -> None:
    perm = _perm(target)
    with transaction.atomic():
        remove_perm(f"autonomy.{perm}", _principal(to), target)
        audit.append(
            kind="grant",
            actor=getattr(by, "username", ""),
            payload={"target": str(target), "to": str(to), "perm": perm, "granted": False},
        )
