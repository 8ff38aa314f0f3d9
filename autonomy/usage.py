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
- *spend today*: allowed amounts since 00:00 UTC.
"""

import math
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from autonomy import counters, rows
from autonomy.counters import minute_of
from autonomy.models import ActionRequest, AgentUsage, Verdict

_KEYS = ("agent", "minute")
_ADDS = ("actions", "denials", "spend")


def usage_record(*, action: ActionRequest) -> None:
    """Count one decided action in its agent's minute: one statement, in the caller's
    transaction."""
    connection = rows.db()
    ops = connection.ops
    denied = action.verdict == Verdict.DENY
    spend = action.amount if action.verdict == Verdict.ALLOW and action.amount else Decimal(0)
    with rows.cursor(connection) as cursor:
        cursor.execute(
            counters.add_sql(AgentUsage, _KEYS, _ADDS),
            {
                "agent": ActionRequest._meta.get_field("agent").target_field.get_db_prep_value(
                    action.agent_id, connection
                ),
                "minute": rows.datetime_value(minute_of(action.created_at), connection),
                "actions": 0 if denied else 1,
                "denials": 1 if denied else 0,
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
