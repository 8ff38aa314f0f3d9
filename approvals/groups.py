"""Reads of the grouped inbox: similar waiting requests seen, and decided, as one.

A group is this person's pending action requests with the same operation, agent role and
business unit, in the same risk band. The band is how "parameters within bounds" is kept:
the risk score already weighs the parameters (amount, record count, data class), so a band
of 30 points keeps a group's members alike; the group page then shows each parameter's
spread and a sample, so the person sees the bounds they approve. Rollout promotions are
never grouped: each is decided on its own.

A group's key names its parts by id (``op-7.role-3.unit-2.risk-medium``); it is read from
the URL and never trusted: a group's members are always re-read from the person's inbox.
"""

import json
import re
import statistics
from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple

from django.db.models import Case, CharField, Count, Max, Min, Q, QuerySet, Value, When

from agents.models import BusinessUnit, Role
from approvals.models import ApprovalRequest
from approvals.selectors import inbox_for_user
from autonomy import masking
from autonomy.models import Operation

# (band, lowest score, first score above it): the risk badge's colours.
RISK_BANDS = (("low", 0, 40), ("medium", 40, 70), ("high", 70, 101))
SAMPLE_SIZE = 5
TOP_VALUES = 5
KEY_RE = re.compile(r"^op-(\d+)\.role-(\d+)\.unit-(\d+)\.risk-(low|medium|high)$")


@dataclass(frozen=True)
class GroupKey:
    operation_id: int
    role_id: int
    unit_id: int
    band: str

    def __str__(self) -> str:
        return f"op-{self.operation_id}.role-{self.role_id}.unit-{self.unit_id}.risk-{self.band}"

    @property
    def risk_bounds(self) -> tuple[int, int]:
        """The band's scores: lowest, and first above it."""
        return next((low, high) for band, low, high in RISK_BANDS if band == self.band)


def group_key_parse(text: str) -> GroupKey | None:
    """The key of a URL, or None when it names no possible group."""
    match = KEY_RE.match(text or "")
    if match is None:
        return None
    operation_id, role_id, unit_id, band = match.groups()
    return GroupKey(int(operation_id), int(role_id), int(unit_id), band)


def band_of(score: int) -> str:
    return next(band for band, low, high in RISK_BANDS if low <= score < high)


def group_key_of(approval: ApprovalRequest) -> GroupKey:
    """The group an action's request falls in."""
    return GroupKey(
        approval.action.operation_id, approval.agent.role_id, approval.business_unit_id,
        band_of(approval.risk_score),
    )  # fmt: skip


def _band() -> Case:
    return Case(
        *(When(risk_score__lt=high, then=Value(band)) for band, _, high in RISK_BANDS[:-1]),
        default=Value(RISK_BANDS[-1][0]),
        output_field=CharField(),
    )


def _actions_of(*, user) -> QuerySet[ApprovalRequest]:
    return inbox_for_user(user=user).filter(action__isnull=False)


def group_members(*, user, key: GroupKey) -> QuerySet[ApprovalRequest]:
    """The group's pending requests in ``user``'s inbox, riskiest and oldest first."""
    low, high = key.risk_bounds
    return _actions_of(user=user).filter(
        action__operation_id=key.operation_id,
        agent__role_id=key.role_id,
        business_unit_id=key.unit_id,
        risk_score__gte=low,
        risk_score__lt=high,
    )


class GroupedInbox(NamedTuple):
    groups: list[dict]  # one row per group, the largest first
    promotions: int  # rollout promotions and registry changes waiting: never grouped


def inbox_groups(*, user) -> GroupedInbox:
    """``user``'s pending requests as groups, in one aggregate query (GROUP BY) over the
    inbox: the groups are few beside their members, so all are read and a page is cut from
    them (no second query to count them). Name a page's rows with ``groups_named``."""
    rows = list(
        inbox_for_user(user=user)
        .order_by()
        .annotate(band=_band())
        .values("action__operation_id", "agent__role_id", "business_unit_id", "band")
        .annotate(
            size=Count("pk"),
            risk_min=Min("risk_score"),
            risk_max=Max("risk_score"),
            oldest=Min("created_at"),
            newest=Max("created_at"),
            agents=Count("agent_id", distinct=True),
        )
    )
    actions = [r for r in rows if r["action__operation_id"] is not None]
    actions.sort(key=lambda r: (-r["size"], -r["risk_max"], r["oldest"], str(_key(r))))
    promotions = sum(r["size"] for r in rows if r["action__operation_id"] is None)
    return GroupedInbox(actions, promotions)


def _key(row: dict) -> GroupKey:
    return GroupKey(
        row["action__operation_id"], row["agent__role_id"], row["business_unit_id"], row["band"]
    )


def groups_named(rows) -> list[dict]:
    """A page of ``inbox_groups`` rows with their operation, role and unit: three queries
    whatever the number of rows."""
    rows = list(rows)
    operations = Operation.objects.select_related("connector").in_bulk(
        {r["action__operation_id"] for r in rows}
    )
    roles = Role.objects.select_related("group").in_bulk({r["agent__role_id"] for r in rows})
    units = BusinessUnit.objects.in_bulk({r["business_unit_id"] for r in rows})
    named = []
    for row in rows:
        key = _key(row)
        named.append(
            {
                **row,
                "key": str(key),
                "operation": operations[key.operation_id],
                "role": roles[key.role_id],
                "unit": units[key.unit_id],
            }
        )
    return named


def group_detail(*, user, key: GroupKey) -> dict | None:
    """What the group page shows: counts, the risk and parameter spread, the agents, a
    sample spread over the risk range, and how many the person cannot settle alone. A
    constant number of queries; the parameters of every member are read once, to measure
    their spread. None when no member waits for ``user``."""
    members = group_members(user=user, key=key)
    summary = members.aggregate(
        size=Count("pk"),
        risk_min=Min("risk_score"),
        risk_max=Max("risk_score"),
        oldest=Min("created_at"),
        newest=Max("created_at"),
        quorum_two=Count("pk", filter=Q(quorum__gt=1)),
        owned=Count("pk", filter=Q(agent__owner=user)),
    )
    if not summary["size"]:
        return None
    summary["decided"] = members.filter(decisions__approver=user).count()
    operation = Operation.objects.select_related("connector").get(pk=key.operation_id)
    # The values as this person may see them (``autonomy.masking``): a spread of masked
    # values says how many there are, never what they are.
    rows = [
        (pk, risk, masking.mask(operation, params, viewer=user))
        for pk, risk, params in members.values_list("pk", "risk_score", "action__params")
    ]
    picks = sorted({round(i * (len(rows) - 1) / (SAMPLE_SIZE - 1)) for i in range(SAMPLE_SIZE)})
    sample_ids = [rows[i][0] for i in picks] if len(rows) > 1 else [rows[0][0]]
    sample = {
        r.pk: r
        for r in members.filter(pk__in=sample_ids).select_related("action__operation__connector")
    }
    role = Role.objects.select_related("group").get(pk=key.role_id)
    unit = BusinessUnit.objects.get(pk=key.unit_id)
    agents = list(
        members.order_by()
        .values("agent__slug", "agent__name", "agent__owner__username")
        .annotate(n=Count("pk"))
        .order_by("-n", "agent__slug")[:10]
    )
    return {
        **summary,
        "key": str(key),
        "band": key.band,
        "operation": operation,
        "role": role,
        "unit": unit,
        "risk_median": statistics.median(r[1] for r in rows),
        "params": params_spread([r[2] for r in rows]),
        "agents": agents,
        "agent_count": members.order_by().values("agent_id").distinct().count(),
        "sample": [
            {
                "approval": sample[pk],
                "params_json": _pretty(masking.params_for(sample[pk].action, viewer=user)),
            }
            for pk in sample_ids
            if pk in sample
        ],
    }


def params_spread(params: list) -> list[dict]:
    """Each parameter across the members: numbers as min, median and max; anything else as
    its most frequent values with their counts."""
    values: dict[str, list] = {}
    for one in params:
        for name, value in (one or {}).items():
            values.setdefault(name, []).append(value)
    spread = []
    for name in sorted(values):
        seen = values[name]
        numbers = [v for v in seen if isinstance(v, int | float) and not isinstance(v, bool)]
        if numbers and len(numbers) == len(seen):
            spread.append(
                {
                    "name": name,
                    "kind": "number",
                    "count": len(seen),
                    "min": min(numbers),
                    "median": statistics.median(numbers),
                    "max": max(numbers),
                }
            )
            continue
        counts = Counter(v if isinstance(v, str) else _compact(v) for v in seen)
        spread.append(
            {
                "name": name,
                "kind": "text",
                "count": len(seen),
                "distinct": len(counts),
                "top": counts.most_common(TOP_VALUES),
            }
        )
    return spread


def _compact(value) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)[:200]


def _pretty(value) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
