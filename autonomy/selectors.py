"""Reads the gate needs, each a constant number of queries whatever the registry's size."""

from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.contenttypes.models import ContentType
from django.db.models import Count, Q, Sum
from guardian.models import GroupObjectPermission, UserObjectPermission

from autonomy.models import ActionRequest, Connector, Operation, Verdict
from autonomy.risk import Behaviour


def operation_by_key(*, key: str) -> Operation | None:
    connector_slug, _, slug = key.partition(".")
    if not connector_slug or not slug:
        return None
    return (
        Operation.objects.select_related("connector")
        .filter(connector__slug=connector_slug, slug=slug)
        .first()
    )


def grant_for(*, agent, operation: Operation) -> dict | None:
    """How the agent may run this operation (a guardian object permission on the operation or
    its connector, to the agent's own principal or to its role), or None. Two queries."""
    op_ct = ContentType.objects.get_for_model(Operation)
    conn_ct = ContentType.objects.get_for_model(Connector)
    target = Q(
        content_type=op_ct,
        object_pk=str(operation.pk),
        permission__codename="execute_operation",
    ) | Q(
        content_type=conn_ct,
        object_pk=str(operation.connector_id),
        permission__codename="execute_connector",
    )
    direct = (
        UserObjectPermission.objects.filter(target, user_id=agent.service_user_id)
        .values_list("content_type_id", flat=True)
        .first()
    )
    if direct is not None:
        return {"to": "agent", "on": "operation" if direct == op_ct.pk else "connector"}
    via_role = (
        GroupObjectPermission.objects.filter(target, group_id=agent.role.group_id)
        .values_list("content_type_id", flat=True)
        .first()
    )
    if via_role is not None:
        return {
            "to": f"role:{agent.role.slug}",
            "on": "operation" if via_role == op_ct.pk else "connector",
        }
    return None


def agent_behaviour(*, agent, at: datetime) -> Behaviour:
    """Recent activity for rate limits, budgets and risk, in one aggregate query."""
    day_start = at.replace(hour=0, minute=0, second=0, microsecond=0)
    since = min(day_start, at - timedelta(hours=1))
    counted = Q(verdict__in=[Verdict.ALLOW, Verdict.NEEDS_APPROVAL])
    row = ActionRequest.objects.filter(agent=agent, created_at__gte=since).aggregate(
        last_minute=Count("pk", filter=Q(created_at__gte=at - timedelta(minutes=1)) & counted),
        denials=Count(
            "pk", filter=Q(created_at__gte=at - timedelta(hours=1), verdict=Verdict.DENY)
        ),
        spend=Sum("amount", filter=Q(created_at__gte=day_start, verdict=Verdict.ALLOW)),
    )
    return Behaviour(
        actions_last_minute=row["last_minute"] or 0,
        denials_last_hour=row["denials"] or 0,
        spend_today=row["spend"] or Decimal(0),
    )
