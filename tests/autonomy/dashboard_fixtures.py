"""Action history for dashboard tests and the bench: rows written directly, not through the
gate, so thousands cost milliseconds. ``rollup_rebuild`` turns them into rollups."""

import uuid
from datetime import datetime, timedelta

from autonomy.models import ActionRequest, ActionStatus, Verdict

STATUS = {
    Verdict.ALLOW: ActionStatus.SUCCEEDED,
    Verdict.DENY: ActionStatus.DENIED,
    Verdict.NEEDS_APPROVAL: ActionStatus.PENDING_APPROVAL,
}
CYCLE = [Verdict.ALLOW] * 6 + [Verdict.NEEDS_APPROVAL] * 2 + [Verdict.DENY] * 2


def history(*, agents, operation, n: int, now: datetime, span: timedelta) -> list[ActionRequest]:
    """``n`` actions spread evenly over ``span`` before ``now``, verdicts 60/20/20, risk
    growing with the agent's position in ``agents``."""
    step = span / max(n, 1)
    rows = []
    for i in range(n):
        verdict = CYCLE[i % len(CYCLE)]
        agent = agents[i % len(agents)]
        created = now - step * (n - i)
        rows.append(
            ActionRequest(
                id=uuid.uuid4(),
                agent=agent,
                operation=operation,
                params={},
                verdict=verdict,
                status=STATUS[verdict],
                risk_score=10 + 20 * (i % len(agents)) + (30 if verdict == Verdict.DENY else 0),
                created_at=created,
                decided_at=created,
            )
        )
    return ActionRequest.objects.bulk_create(rows, batch_size=500)
