"""Reads of the agent registry, with their joins done so that no caller goes N+1."""

from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Avg, Case, Count, Max, Prefetch, QuerySet, When
from django.db.models.functions import TruncHour
from django.utils import timezone
from guardian.shortcuts import get_objects_for_user

from agents.models import (
    Agent,
    AgentBaseline,
    BusinessUnit,
    Credential,
    DriftFlag,
    FlagStatus,
    RegistryChange,
    RegistryChangeStatus,
    Role,
)
from autonomy import grants

# Who may change what of an agent. Its owner edits the profile (django-guardian's object
# permission, given on registration); everything that changes what the agent may do or who
# answers for it needs the global authority: the model-level permission of IT admins, risk
# officers and superusers. Status changes are the lifecycle's (``interventions.services``).
AUTHORITY_PERM = "agents.change_agent"
PROFILE_FIELDS = ("name", "description")
GOVERNED_FIELDS = (
    "owner", "business_unit", "role", "risk_tier", "oidc_client_id",
    "max_actions_per_minute", "max_daily_spend",
)  # fmt: skip


def has_global_authority(user) -> bool:
    """The model-level ``agents.change_agent`` (IT admins, risk officers, superusers), never
    an agent's service user, whatever groups it is in."""
    if user is None or not user.is_authenticated or not user.is_active or hasattr(user, "agent"):
        return False
    return user.has_perm(AUTHORITY_PERM)


def agent_fields_editable(*, user, agent: Agent) -> frozenset[str]:
    """THE RULE for editing an agent: the fields ``user`` may change on it. The API, the
    admin and ``agents.services.agent_update`` all ask here."""
    if has_global_authority(user):
        return frozenset(PROFILE_FIELDS + GOVERNED_FIELDS)
    if user is not None and not hasattr(user, "agent") and user.has_perm(AUTHORITY_PERM, agent):
        return frozenset(PROFILE_FIELDS)
    return frozenset()


def agent_list(*, user: AbstractBaseUser) -> QuerySet[Agent]:
    """Agents this person may see: all with the model permission, else those granted to them,
    each with what of it awaits approval (``waiting``, one more query for the page)."""
    base = Agent.objects.select_related("owner", "business_unit", "role__group").prefetch_related(
        Prefetch("registry_changes", queryset=changes_waiting_all(), to_attr="waiting")
    )
    if user.has_perm("agents.view_agent"):
        return base
    return get_objects_for_user(
        user, "agents.view_agent", klass=base, accept_global_perms=False, with_superuser=False
    )


def agent_for_service_user(*, user: AbstractBaseUser) -> Agent | None:
    return (
        Agent.objects.select_related("owner", "business_unit", "role__group")
        .filter(service_user=user)
        .first()
    )


def agent_by_oidc_client(*, client_id: str) -> Agent | None:
    if not client_id:
        return None
    return Agent.objects.select_related("service_user").filter(oidc_client_id=client_id).first()


def business_unit_list() -> QuerySet[BusinessUnit]:
    return BusinessUnit.objects.all()


def role_list() -> QuerySet[Role]:
    return Role.objects.select_related("group")


def credential_list(*, agent: Agent | None = None) -> QuerySet[Credential]:
    qs = Credential.objects.select_related("agent")
    return qs.filter(agent=agent) if agent is not None else qs


# --- the agent detail page ------------------------------------------------------------------

RECENT_ACTIONS = 50
RECENT_FLAGS = 30
RECENT_INTERVENTIONS = 10
RISK_HOURS = 48


@dataclass
class AgentDetail:
    agent: Agent
    credentials: list[Credential]
    grants: list[dict]
    actions: list
    flags: list[DriftFlag]
    risk_by_hour: list[dict]
    interventions: list
    baseline: AgentBaseline | None
    changes_waiting: list[RegistryChange]


def agent_detail(*, slug: str, now=None) -> AgentDetail | None:
    """Everything the agent page shows, in a constant number of queries (eleven)."""
    from autonomy.models import ActionRequest, Intervention

    now = now or timezone.now()
    agent = (
        Agent.objects.select_related("owner", "business_unit", "role__group", "baseline")
        .filter(slug=slug)
        .first()
    )
    if agent is None:
        return None
    try:
        baseline = agent.baseline
    except AgentBaseline.DoesNotExist:
        baseline = None
    since = (now - timedelta(hours=RISK_HOURS - 1)).replace(minute=0, second=0, microsecond=0)
    risk = (
        ActionRequest.objects.filter(agent=agent, created_at__gte=since)
        .annotate(hour=TruncHour("created_at"))
        .values("hour")
        .annotate(n=Count("id"), avg=Avg("risk_score"), top=Max("risk_score"))
        .order_by("hour")
    )
    flags = (
        DriftFlag.objects.filter(agent=agent)
        .select_related("reviewed_by")
        .annotate(is_open=Case(When(status=FlagStatus.OPEN, then=1), default=0))
        .order_by("-is_open", "-created_at")[:RECENT_FLAGS]
    )
    return AgentDetail(
        agent=agent,
        credentials=list(Credential.objects.filter(agent=agent).order_by("-created_at")[:20]),
        grants=grants.grants_listed(agent=agent),
        actions=list(
            ActionRequest.objects.filter(agent=agent)
            .select_related("operation__connector")
            .order_by("-created_at")[:RECENT_ACTIONS]
        ),
        flags=list(flags),
        risk_by_hour=list(risk),
        interventions=list(
            Intervention.objects.filter(agent=agent)
            .select_related("by")
            .order_by("-created_at")[:RECENT_INTERVENTIONS]
        ),
        baseline=baseline,
        changes_waiting=changes_waiting(agent=agent),
    )


def changes_waiting_all() -> QuerySet[RegistryChange]:
    return RegistryChange.objects.filter(status=RegistryChangeStatus.PENDING).order_by(
        "requested_at"
    )


def changes_waiting(*, agent) -> list[RegistryChange]:
    """The agent's registry changes that wait for approval (its registration, a riskier
    tier, a wider grant), oldest first: as prefetched by ``agent_list``, else read now."""
    waiting = getattr(agent, "waiting", None)
    if waiting is None:
        waiting = list(changes_waiting_all().filter(agent=agent))
        for change in waiting:
            change.agent = agent
    return waiting
