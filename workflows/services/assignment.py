"""Who does a step: the least busy active agent of its role, and whether an agent may take
work at all."""

from django.db.models import F, Func, OuterRef, QuerySet, Subquery

from agents.models import Agent, AgentStatus
from autonomy import gate
from autonomy.errors import DomainError
from workflows.models import STEP_ACTIVE, StepRun


def assignees() -> QuerySet[Agent]:
    """Agents read as a step's assignee is: with what the gate uses of them (the service
    user, the role, the unit), in one query."""
    return Agent.objects.select_related("service_user", "role", "business_unit")


def agent_pick(*, role_id) -> Agent | None:
    """The active agent of the role with the least work in flight, ties by slug, read whole
    as a step's assignee (``assignees``) in one statement; None without a role (every agent
    has one) or an active agent."""
    if role_id is None:
        return None
    in_flight = Subquery(
        StepRun.objects.filter(assignee=OuterRef("pk"), status__in=STEP_ACTIVE)
        .order_by()
        .annotate(n=Func(F("pk"), function="COUNT"))  # no GROUP BY: 0 for an idle agent
        .values("n")
    )
    return (
        assignees()
        .filter(role=role_id, status=AgentStatus.ACTIVE)
        .order_by(in_flight, "slug")
        .first()
    )


def require_active(agent: Agent) -> None:
    """A paused, quarantined or retired agent takes, hands and coordinates no work."""
    if not agent.is_active:
        code = gate.STATUS_CODES[agent.status]  # the gate's own answer for a stopped agent
        raise DomainError(code, f"{agent} is {agent.status}.", status_code=403)
