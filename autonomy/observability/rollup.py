"""Actions per minute by business unit, operation and verdict, kept current as they happen.

The dashboard and ``/metrics`` read ``ActivityRollup`` rows instead of scanning every action:
``rollup_record`` adds one action in the transaction that records it (a single upsert, so the
count can never drift from the actions committed), ``rollup_rebuild`` recomputes history.
"""

from datetime import datetime

from django.db import connection, transaction
from django.db.models import Count, Sum
from django.db.models.functions import TruncMinute

from autonomy import counters
from autonomy.counters import minute_of
from autonomy.models import ActionRequest, ActivityRollup

_KEYS = ("minute", "business_unit", "operation", "verdict")
_ADDS = ("count", "risk_sum")


def rollup_record(*, action: ActionRequest) -> None:
    """Count one decided action in its minute's row: one statement, in the caller's
    transaction."""
    minute = ActivityRollup._meta.get_field("minute").get_db_prep_value(
        minute_of(action.created_at), connection
    )
    with connection.cursor() as cursor:
        cursor.execute(
            counters.add_sql(ActivityRollup, _KEYS, _ADDS),
            {
                "minute": minute,
                "business_unit": action.agent.business_unit_id,
                "operation": action.operation_id,
                "verdict": action.verdict,
                "count": 1,
                "risk_sum": action.risk_score,
            },
        )


def rollup_rebuild(*, since: datetime | None = None) -> int:
    """Recompute the rows from ``since`` (its whole minute; everything when None) from the
    actions themselves, in one ``INSERT ... SELECT ... GROUP BY``. Returns the rows written."""
    actions = ActionRequest.objects.all()
    rollups = ActivityRollup.objects.all()
    if since is not None:
        since = minute_of(since)
        actions = actions.filter(created_at__gte=since)
        rollups = rollups.filter(minute__gte=since)
    groups = (
        actions.order_by()
        .annotate(minute=TruncMinute("created_at"))
        .values("minute", "agent__business_unit_id", "operation_id", "verdict")
        .annotate(count=Count("pk"), risk_sum=Sum("risk_score"))
    )
    select_sql, params = groups.query.sql_with_params()
    meta, q = ActivityRollup._meta, connection.ops.quote_name
    # Read the grouped rows by their aliases, whatever order the SELECT lists them in.
    aliases = {
        "minute": "minute",
        "business_unit": "agent__business_unit_id",
        "operation": "operation_id",
        "verdict": "verdict",
        "count": "count",
        "risk_sum": "risk_sum",
    }
    columns = ", ".join(q(meta.get_field(name).column) for name in aliases)
    picked = ", ".join(f"g.{q(alias)}" for alias in aliases.values())
    insert = f"INSERT INTO {q(meta.db_table)} ({columns}) SELECT {picked} FROM ({select_sql}) g"
    with transaction.atomic(), connection.cursor() as cursor:
        rollups.delete()
        cursor.execute(insert, params)
        return cursor.rowcount
