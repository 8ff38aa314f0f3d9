"""Who does a step: the least busy active agent of its role, and whether an agent may take
work at all."""

from django.db.models import F, Func, OuterRef, QuerySet, Subquery

from agents.models import Agent, AgentStatus
from autonomy.errors import DomainError, ErrorCode
from workflows.models import STEP_ACTIVE, StepRun

# Of an agent, its unit and its role, a step's request through the gate reads neither the
# descriptions and dates nor the IdP client (an agent's token is checked where it
# authenticates), nor of its service user more than the id and the username (the audit
# trail's actor). Django reads a column left unread on access.
ASSIGNEE_UNREAD = (
    *(
        f"service_user__{f.name}"
        for f in Agent._meta.get_field("service_user").related_model._meta.concrete_fields
        if f.name not in ("id", "username")
    ),
    *("description", "status_changed_at", "tokens_valid_after", "oidc_client_id"),
    *("created_at", "updated_at", "business_unit__description", "business_unit__created_at"),
    *("role__description", "role__created_at"),
)


def assignees() -> QuerySet[Agent]:
    """Agents read as a step's assignee is: with what the gate uses of them, in one query."""
    return Agent.objects.select_related("service_user", "role", "business_unit").defer(
        *ASSIGNEE_UNREAD
    )


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
        code = {
            AgentStatus.PAUSED: ErrorCode.AGENT_PAUSED,
            AgentStatus.QUARANTINED: ErrorCode.AGENT_QUARANTINED,
        }.get(agent.status, ErrorCode.AGENT_RETIRED)
        raise DomainError(code, f"{agent} is {agent.status}.", status_code=403)
