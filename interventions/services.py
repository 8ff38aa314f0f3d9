"""People stepping in: pause, resume, quarantine, kill, emergency stop and lift, override a
waiting decision, redirect a step.

Each use case runs in one transaction that writes an ``Intervention`` row and an audit
record beside its effect. Nothing about an agent's status or credentials is cached: the
authentication and the gate read both on every request, so an intervention is in force for
the agent's very next request once its transaction commits.
"""

from django.db import transaction
from django.utils import timezone

from agents import selectors as agent_selectors
from agents import services as agent_services
from agents.models import Agent, AgentStatus, BusinessUnit
from approvals import services as approvals
from approvals.models import Verdict as ApprovalVerdict
from autonomy import actions, audit
from autonomy.errors import DomainError, ErrorCode, IllegalTransition
from autonomy.models import (
    ActionRequest,
    Intervention,
    InterventionKind,
    InterventionScope,
)
from workflows import coordination
from workflows import services as workflows

STOP_REASON_PREFIX = "emergency stop #"


def may_intervene(*, user, agent: Agent | None = None) -> bool:
    """Superusers, IT admins and risk officers (the global authority,
    ``agents.selectors.has_global_authority``), and, for one ``agent``, whoever may change
    that agent (its owner's django-guardian object permission); never an agent's service
    user. Lifting a stop someone with the global authority set needs that authority too
    (``may_resume``)."""
    if agent_selectors.has_global_authority(user):
        return True
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if hasattr(user, "agent"):
        return False
    return agent is not None and user.has_perm(agent_selectors.AUTHORITY_PERM, agent)


def may_resume(*, user, agent: Agent) -> bool:
    """THE RULE for resuming an agent: its owner may resume it from their own pause; lifting
    a quarantine, or a pause an emergency stop made, needs the global authority."""
    if agent.status == AgentStatus.QUARANTINED or agent.status_reason.startswith(
        STOP_REASON_PREFIX
    ):
        return agent_selectors.has_global_authority(user)
    return may_intervene(user=user, agent=agent)


def _require(by, agent: Agent | None = None) -> None:
    if not may_intervene(user=by, agent=agent):
        raise DomainError(
            ErrorCode.PERMISSION_DENIED,
            "Only IT admins, risk officers and superusers may intervene.",
            status_code=403,
        )


def _record(
    *,
    kind: str,
    by,
    reason: str,
    agent: Agent | None = None,
    business_unit: BusinessUnit | None = None,
    scope: str = InterventionScope.AGENT,
    details: dict | None = None,
    action_id=None,
) -> Intervention:
    intervention = Intervention.objects.create(
        kind=kind,
        scope=scope,
        agent=agent,
        business_unit=business_unit,
        reason=reason,
        details=details or {},
        by=by,
    )
    audit.append(
        kind="intervention",
        actor=by.get_username(),
        agent_id=agent.pk if agent else None,
        action_id=action_id,
        payload={
            "intervention_id": intervention.pk,
            "kind": kind,
            "scope": scope,
            "business_unit": business_unit.slug if business_unit else None,
            "reason": reason,
            "details": intervention.details,
        },
    )
    return intervention


# --- one agent ------------------------------------------------------------------------------


def _lifecycle(*, kind: str, service, agent: Agent, by, reason: str) -> Agent:
    _require(by, agent)
    with transaction.atomic():
        agent = service(agent=agent, by=by, reason=reason)
        _record(kind=kind, by=by, reason=reason, agent=agent, details={"status": agent.status})
    return agent


def agent_pause(*, agent: Agent, by, reason: str) -> Agent:
    return _lifecycle(
        kind=InterventionKind.PAUSE, service=agent_services.agent_pause, agent=agent, by=by,
        reason=reason,
    )  # fmt: skip


def agent_resume(*, agent: Agent, by, reason: str) -> Agent:
    _require(by, agent)
    with transaction.atomic():
        # Decided on the locked row: a quarantine set meanwhile is seen, not raced past.
        locked = Agent.objects.select_for_update().get(pk=agent.pk)
        if not may_resume(user=by, agent=locked):
            raise DomainError(
                ErrorCode.STOP_LIFT_DENIED,
                f"{locked} is {locked.status} by a stop only IT admins, risk officers and "
                "superusers may lift.",
                {"status": locked.status},
                status_code=403,
            )
        return _lifecycle(
            kind=InterventionKind.RESUME, service=agent_services.agent_resume, agent=locked,
            by=by, reason=reason,
        )  # fmt: skip


def agent_quarantine(*, agent: Agent, by, reason: str) -> Agent:
    return _lifecycle(
        kind=InterventionKind.QUARANTINE, service=agent_services.agent_quarantine, agent=agent,
        by=by, reason=reason,
    )  # fmt: skip


def agent_kill(*, agent: Agent, by, reason: str) -> Intervention:
    """Stop an agent for good until someone looks: quarantine it, revoke every credential,
    cancel its waiting actions and the workflow steps assigned to it."""

    _require(by)
    with transaction.atomic():
        locked = Agent.objects.select_for_update().get(pk=agent.pk)
        if locked.status == AgentStatus.RETIRED:
            raise IllegalTransition(current=locked.status, target="killed")
        if locked.status != AgentStatus.QUARANTINED:
            locked = agent_services.agent_quarantine(
                agent=locked, by=by, reason=f"killed: {reason}"
            )
        revoked = agent_services.agent_credentials_revoke(
            agent=locked, by=by, reason=f"agent killed: {reason}"
        )
        # Waiting and approved-not-started actions are cancelled, their approval requests
        # too; ``action_settled`` tells the workflow steps that wait on them.
        cancelled = actions.actions_cancel_waiting(
            agent=locked,
            code="agent_killed",
            message=f"Cancelled: the agent was killed. {reason}",
            actor=by.get_username(),
        )
        steps = workflows.agent_steps_cancel(agent=locked, by=by, reason=f"agent killed: {reason}")
        claims = coordination.claims_release_all(agent=locked)
        intervention = _record(
            kind=InterventionKind.KILL,
            by=by,
            reason=reason,
            agent=locked,
            details={
                "credentials_revoked": revoked,
                "actions_cancelled": cancelled,
                "steps_cancelled": steps,
                "claims_released": claims,
            },
        )
    return intervention


# --- the fleet ------------------------------------------------------------------------------


def emergency_stop(*, by, reason: str, business_unit: BusinessUnit | None = None) -> Intervention:
    """Pause every active agent of a unit (or of the fleet) in a constant number of queries,
    remembering which, so the lift resumes exactly those."""
    _require(by)
    if not reason.strip():
        raise DomainError(ErrorCode.VALIDATION_FAILED, "Say why you stop the fleet.")
    scope = InterventionScope.BUSINESS_UNIT if business_unit else InterventionScope.FLEET
    with transaction.atomic():
        intervention = Intervention.objects.create(
            kind=InterventionKind.EMERGENCY_STOP,
            scope=scope,
            business_unit=business_unit,
            reason=reason,
            by=by,
        )
        active = Agent.objects.filter(status=AgentStatus.ACTIVE)
        if business_unit is not None:
            active = active.filter(business_unit=business_unit)
        ids = [str(pk) for pk in active.select_for_update().values_list("pk", flat=True)]
        Agent.objects.filter(pk__in=ids).update(
            status=AgentStatus.PAUSED,
            status_reason=f"{STOP_REASON_PREFIX}{intervention.pk}: {reason}"[:500],
            status_changed_at=timezone.now(),
        )
        intervention.details = {"paused": ids}
        intervention.save(update_fields=["details"])
        audit.append(
            kind="intervention",
            actor=by.get_username(),
            payload={
                "intervention_id": intervention.pk,
                "kind": InterventionKind.EMERGENCY_STOP,
                "scope": scope,
                "business_unit": business_unit.slug if business_unit else None,
                "reason": reason,
                "paused": len(ids),
            },
        )
    return intervention


def emergency_lift(*, intervention: Intervention, by, reason: str) -> Intervention:
    """Resume the agents this stop paused that are still paused by it; an agent paused,
    quarantined or retired for another reason meanwhile stays as it is."""
    _require(by)
    with transaction.atomic():
        stop = Intervention.objects.select_for_update().get(pk=intervention.pk)
        if stop.kind != InterventionKind.EMERGENCY_STOP or stop.lifted_at is not None:
            raise DomainError(
                ErrorCode.CONFLICT, "This is not an open emergency stop.", status_code=409
            )
        now = timezone.now()
        resumed = Agent.objects.filter(
            pk__in=stop.details.get("paused", []),
            status=AgentStatus.PAUSED,
            status_reason__startswith=f"{STOP_REASON_PREFIX}{stop.pk}:",
        ).update(
            status=AgentStatus.ACTIVE,
            status_reason=f"emergency stop #{stop.pk} lifted: {reason}"[:500],
            status_changed_at=now,
        )
        stop.lifted_at = now
        stop.lifted_by = by
        stop.save(update_fields=["lifted_at", "lifted_by"])
        _record(
            kind=InterventionKind.EMERGENCY_LIFT,
            by=by,
            reason=reason,
            business_unit=stop.business_unit,
            scope=stop.scope,
            details={"stop": stop.pk, "resumed": resumed},
        )
    return stop


# --- decisions and steps --------------------------------------------------------------------


def action_override(*, action: ActionRequest, by, verdict: str, reason: str) -> Intervention:
    """Settle a waiting action now: ``allow`` executes it, ``deny`` denies it."""

    _require(by)
    verdicts = {"allow": ApprovalVerdict.APPROVE, "deny": ApprovalVerdict.REJECT}
    if verdict not in verdicts:
        raise DomainError(
            ErrorCode.VALIDATION_FAILED, "verdict is allow or deny.", {"verdict": verdict}
        )
    with transaction.atomic():
        request = approvals.approval_override(
            action=action, by=by, verdict=verdicts[verdict], reason=reason
        )
        intervention = _record(
            kind=InterventionKind.OVERRIDE,
            by=by,
            reason=reason,
            agent=request.agent,
            action_id=request.action_id,
            details={"action": str(request.action_id), "verdict": verdict},
        )
    return intervention


def step_redirect(*, step_run, to_agent: Agent, by, reason: str) -> Intervention:
    """Give a waiting, ready or escalated workflow step to another agent."""

    _require(by)
    with transaction.atomic():
        previous = step_run.assignee_id
        step_run = workflows.step_redirect(step_run=step_run, to_agent=to_agent, by=by,
                                           reason=reason)  # fmt: skip
        intervention = _record(
            kind=InterventionKind.REDIRECT,
            by=by,
            reason=reason,
            agent=to_agent,
            details={
                "step_run": str(step_run.pk),
                "run": str(step_run.run_id),
                "from": str(previous) if previous else None,
                "to": str(to_agent.pk),
            },
        )
    return intervention
