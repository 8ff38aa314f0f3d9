"""Who does a step: the least busy active agent of its role, who else may hold it, and
whether an agent may take work at all."""

from django.db.models import F, Func, OuterRef, QuerySet, Subquery

from agents.models import Agent, AgentStatus
from autonomy import gate, grants
from autonomy.errors import DomainError
from workflows.models import STEP_ACTIVE, Run, StepRun


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


def step_role_ids(step_run: StepRun) -> set:
    """The roles a step is for: the role it was offered to (else its template's role, else
    the role of the agent its template names) and, once it escalated, its escalation
    target's role, the roles ``agent_pick`` and escalation pick its holders from."""
    step = step_run.step
    roles = {step_run.assignee_role_id or step.assignee_role_id}
    named = [step.assignee_agent_id] if roles == {None} else []
    if step_run.escalations:
        roles.add(step.escalate_to_role_id)
        named.append(step.escalate_to_agent_id)
    named = [pk for pk in named if pk]
    if named:
        roles.update(Agent.objects.filter(pk__in=named).values_list("role_id", flat=True))
    return roles - {None}


def step_ineligibility(*, agent: Agent, step_run: StepRun, run: Run) -> list[str]:
    """THE RULE for who may hold a step besides the agent it was given to (a hand-off
    target): what ``agent`` lacks of it, empty when eligible. It is of one of the step's
    roles (``step_role_ids``), of the run's business unit (its template's, else that of
    the agent holding the step now: work never crosses units), and granted the step's
    operation (``autonomy.grants``). The holder then reads the run's context and messages,
    so nobody outside the step's bounds may be made one."""
    unmet = []
    roles = step_role_ids(step_run)
    if roles and agent.role_id not in roles:
        unmet.append("role")
    unit_id = run.template.business_unit_id or (
        step_run.assignee.business_unit_id if step_run.assignee_id else None
    )
    if unit_id is not None and agent.business_unit_id != unit_id:
        unmet.append("business_unit")
    operation = step_run.step.operation
    if operation is not None and not grants.is_granted(operation=operation, agent=agent):
        unmet.append("grant")
    return unmet
