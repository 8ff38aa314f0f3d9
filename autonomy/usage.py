"""Per-agent minute counters: what the gate's rate limit, denial count and daily budget read.

Each decided action adds itself to its agent's row for the minute (``usage_record``: one
upsert, in the transaction that records the action, so a counter can never disagree with the
actions committed). The gate then reads at most a day of minute rows per agent instead of
summing the agent's actions, so a decision costs the same for an agent's 100,000th action of
the day as for its first (measured: summing the actions made the gate's one read six times
slower after 3,000 actions of one agent).

The windows read from minute rows (``window_bounds``):

- *actions in the last minute* (the rate limit, and the ``recent_rate`` risk factor): the
  sliding-window estimate rate limiters commonly use, this minute's count plus the last
  minute's weighted by the share of it still inside the 60-second window, rounded up. It
  never lets an agent past its limit within one calendar minute (UTC); a burst at the very
  end of one minute is only partly counted against the next (``actions_last_minute``);
- *denials in the last hour*: the current minute and the 59 before it;
- *spend today*: allowed amounts since 00:00 UTC (a shadowed action's never counts).
"""

import math
import zlib
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from autonomy import counters
from autonomy.counters import minute_of
from autonomy.models import ActionRequest, ActionStatus, AgentUsage, Verdict

_KEYS = ("agent", "minute")
_ADDS = ("actions", "denials", "spend")
# The first key of the PostgreSQL advisory locks that serialise one agent's limit checks.
LIMITS_LOCK_SPACE = 0x6C696D  # "lim"


def hold(*, agent_id) -> None:
    """Serialise ``agent_id``'s limit checks until the caller's transaction ends, so that a
    decision reads every counter its agent's earlier decisions wrote, and N concurrent
    requests against a limit of 3 let exactly 3 through. On PostgreSQL a transaction-scoped
    advisory lock on the agent (nothing else takes it, so it can't deadlock with the row
    locks of a kill or a workflow step); on SQLite the transaction already holds the
    database's write lock from its start (``transaction_mode: IMMEDIATE`` in the settings)."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise RuntimeError("usage.hold() must run inside the transaction that records usage")
    if connection.vendor == "postgresql":
        key = zlib.crc32(str(agent_id).encode()) - 2**31  # PostgreSQL's int4 range
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LIMITS_LOCK_SPACE, key])


def usage_record(*, action: ActionRequest) -> None:
    """Count one decided action in its agent's minute: one statement, in the caller's
    transaction (after ``hold``)."""
    denied = action.verdict == Verdict.DENY
    # A shadowed action counts as asked (the rate limit) but spends nothing: it never runs.
    spends = action.verdict == Verdict.ALLOW and action.status != ActionStatus.SHADOWED
    spend = action.amount if spends and action.amount else Decimal(0)
    _add(
        agent_id=action.agent_id,
        minute=minute_of(action.created_at),
        actions=0 if denied else 1,
        denials=1 if denied else 0,
        spend=spend,
    )


def spend_record(*, agent_id, amount: Decimal | None, at: datetime) -> None:
    """Count the amount of an action released after approval against its agent's budget
    (its action was counted when it was asked for)."""
    if amount:
        _add(agent_id=agent_id, minute=minute_of(at), actions=0, denials=0, spend=amount)


def _add(*, agent_id, minute: datetime, actions: int, denials: int, spend: Decimal) -> None:
    connection = transaction.get_connection()
    ops = connection.ops
    field = AgentUsage._meta.get_field
    with connection.cursor() as cursor:
        cursor.execute(
            counters.add_sql(AgentUsage, _KEYS, _ADDS),
            {
                "agent": field("agent").target_field.get_db_prep_value(agent_id, connection),
                "minute": field("minute").get_db_prep_value(minute, connection),
                "actions": actions,
                "denials": denials,
                "spend": ops.adapt_decimalfield_value(spend, 20, 2),
            },
        )


def window_bounds(at: datetime) -> dict[str, datetime]:
    """The minute rows each window reads, by their ``minute``."""
    this_minute = minute_of(at)
    return {
        "this_minute": this_minute,
        "last_minute": this_minute - timedelta(minutes=1),
        "hour_start": this_minute - timedelta(minutes=59),
        "day_start": at.replace(hour=0, minute=0, second=0, microsecond=0),
    }


def actions_last_minute(*, at: datetime, this_minute: int, last_minute: int) -> int:
    """The sliding 60-second estimate from two minute counts (see the module's docstring)."""
    elapsed = at.second + at.microsecond / 1e6
    return this_minute + math.ceil(last_minute * (60 - elapsed) / 60)


def usage_prune(*, now: datetime | None = None) -> int:
    """Delete minute rows no window reads any more. Run by Celery beat. Returns how many."""
    now = now or timezone.now()
    cutoff = minute_of(now) - timedelta(days=settings.AUTONOMY_USAGE_KEEP_DAYS)
    deleted, _ = AgentUsage.objects.filter(minute__lt=cutoff).delete()
    return deleted
