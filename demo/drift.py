"""The demo's drifting agent: two weeks of office-hours reporting, then a night-time burst on
a connector it never used, so ``make run`` opens with a drift flag to review."""

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from agents import behaviour
from agents.models import Agent, AgentBaseline, AgentStatus
from autonomy.models import ActionRequest, ActionStatus, Operation, Verdict

ROLE = "data-analyst"
USUAL, NEW = "warehouse.run-report", "crm.export-contacts"
BURST = 30


def _action(agent, operation, at, *, verdict, risk, reasons=()) -> ActionRequest:
    status = ActionStatus.SUCCEEDED if verdict == Verdict.ALLOW else ActionStatus.DENIED
    return ActionRequest(
        agent=agent, operation=operation, verdict=verdict, status=status, created_at=at,
        decided_at=at, finished_at=at, risk_score=risk, reasons=list(reasons),
        params={"report": "monthly-spend"} if operation.slug == "run-report" else {"limit": 5000},
        reason="demo: drift history",
    )  # fmt: skip


def seed_drift() -> int:
    """Open drift flags on one data analyst; skipped once any baseline exists (idempotent).

    History rows are written directly (bulk, with their past timestamps), not through the
    gate, so they carry no audit records of their own; the flags and their audit are real.
    """
    if AgentBaseline.objects.exists():
        return 0
    agent = (
        Agent.objects.select_related("business_unit")
        .filter(role__slug=ROLE, status=AgentStatus.ACTIVE)
        .order_by("slug")
        .first()
    )
    operations = {
        op.key: op
        for op in Operation.objects.select_related("connector").filter(
            connector__slug__in=["warehouse", "crm"]
        )
    }
    if agent is None or USUAL not in operations or NEW not in operations:
        return 0
    now = timezone.now()
    night = (now - timedelta(days=1)).replace(hour=2, minute=0, second=0, microsecond=0)
    rows = []
    for day in range(1, 15):
        date = night - timedelta(days=day)
        if date.weekday() >= 5:
            continue
        for hour in range(9, 17):
            for minute in (10, 35):
                at = date.replace(hour=hour, minute=minute)
                rows.append(_action(agent, operations[USUAL], at, verdict=Verdict.ALLOW,
                                    risk=18 + (hour + minute) % 9))  # fmt: skip
    denied = [{"code": "grant_missing", "message": f"No grant on {NEW}.", "details": {}}]
    burst_end = night + timedelta(minutes=9)
    for i in range(BURST):
        at = night + timedelta(seconds=18 * i)
        rows.append(_action(agent, operations[NEW], at, verdict=Verdict.DENY, risk=72 + i % 9,
                            reasons=denied))  # fmt: skip
    with transaction.atomic():
        ActionRequest.objects.bulk_create(rows, batch_size=500)
        behaviour.baseline_learn(agent=agent, until=night)
        flags = behaviour.drift_check(agent=agent, now=burst_end)
    return len(flags)
