"""Reads the gate needs, each a constant number of queries whatever the registry's size."""

from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from guardian.models import GroupObjectPermission, UserObjectPermission

from autonomy.models import ActionRequest, Operation
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


def _sql_names() -> dict[str, str]:
    quote = connection.ops.quote_name
    return {
        "uop": quote(UserObjectPermission._meta.db_table),
        "gop": quote(GroupObjectPermission._meta.db_table),
        "perm": quote(Permission._meta.db_table),
        "ct": quote(ContentType._meta.db_table),
        "act": quote(ActionRequest._meta.db_table),
    }


def _grant_on(model: str, codename: str) -> str:
    """A guardian row granting ``codename`` on the object (bound as %s) of ``model``."""
    return (
        f"(g.content_type_id = (SELECT id FROM {{ct}} WHERE app_label = 'autonomy'"
        f" AND model = '{model}') AND g.object_pk = %s AND g.permission_id ="
        f" (SELECT p.id FROM {{perm}} p JOIN {{ct}} c ON p.content_type_id = c.id"
        f" WHERE c.app_label = 'autonomy' AND c.model = '{model}' AND p.codename = '{codename}'))"
    )


_GRANT_TARGET = (
    f"({_grant_on('operation', 'execute_operation')}"
    f" OR {_grant_on('connector', 'execute_connector')})"
)
_FACTS_SQL = (
    "SELECT"
    " (SELECT c.model FROM {uop} g JOIN {ct} c ON g.content_type_id = c.id"
    "  WHERE g.user_id = %s AND " + _GRANT_TARGET + " ORDER BY c.model DESC LIMIT 1),"
    " (SELECT c.model FROM {gop} g JOIN {ct} c ON g.content_type_id = c.id"
    "  WHERE g.group_id = %s AND " + _GRANT_TARGET + " ORDER BY c.model DESC LIMIT 1),"
    " (SELECT COUNT(*) FROM {act} WHERE agent_id = %s AND created_at >= %s"
    "  AND verdict IN ('allow', 'needs_approval')),"
    " (SELECT COUNT(*) FROM {act} WHERE agent_id = %s AND created_at >= %s AND verdict = 'deny'),"
    " (SELECT SUM(amount) FROM {act} WHERE agent_id = %s AND created_at >= %s"
    "  AND verdict = 'allow')"
)


def gate_facts(*, agent, operation: Operation, at: datetime) -> tuple[dict | None, Behaviour]:
    """Grant and recent behaviour in ONE round trip: what ``grant_for`` and
    ``agent_behaviour`` answer, in raw SQL because this runs on every decision and building
    the ORM's five queries cost more than running them (measured with ``make bench``)."""
    ops = connection.ops
    agent_id = ActionRequest._meta.get_field("agent").target_field.get_db_prep_value(
        agent.pk, connection
    )
    day_start = at.replace(hour=0, minute=0, second=0, microsecond=0)

    def when(value):
        return ops.adapt_datetimefield_value(value)

    target = [str(operation.pk), str(operation.connector_id)]
    params = [
        agent.service_user_id, *target,
        agent.role.group_id, *target,
        agent_id, when(at - timedelta(minutes=1)),
        agent_id, when(at - timedelta(hours=1)),
        agent_id, when(day_start),
    ]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(_FACTS_SQL.format(**_sql_names()), params)
        direct, via_role, last_minute, denials, spend = cursor.fetchone()
    grant = None
    if direct is not None:
        grant = {"to": "agent", "on": direct}
    elif via_role is not None:
        grant = {"to": f"role:{agent.role.slug}", "on": via_role}
    behaviour = Behaviour(
        actions_last_minute=last_minute or 0,
        denials_last_hour=denials or 0,
        spend_today=Decimal(str(spend)) if spend is not None else Decimal(0),
    )
    return grant, behaviour
