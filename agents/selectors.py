"""Reads of the agent registry, with their joins done so that no caller goes N+1."""

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from guardian.shortcuts import get_objects_for_user

from agents.models import Agent, BusinessUnit, Credential, Role


def agent_list(*, user: AbstractBaseUser) -> QuerySet[Agent]:
    """Agents this person may see: all with the model permission, else those granted to them."""
    base = Agent.objects.select_related("owner", "business_unit", "role__group")
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
