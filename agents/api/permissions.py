from rest_framework import permissions

from agents import selectors
from agents.models import Credential
from autonomy.errors import DomainError, ErrorCode


def request_agent(request):
    """The agent behind this request (own token or IdP bearer), or None for a person."""
    agent = getattr(request, "agent", None)
    if agent is None and request.user.is_authenticated:
        agent = selectors.agent_for_service_user(user=request.user)
        request.agent = agent
    return agent


class IsAgent(permissions.BasePermission):
    """Only agents; and with an Autonomy OS token, only within the token's scopes."""

    def __init__(self, scope: str | None = None):
        self.scope = scope

    def __call__(self):
        return self

    def has_permission(self, request, view):
        if not request.user.is_authenticated:
            return False  # DRF answers 401 not_authenticated
        if request_agent(request) is None:
            raise DomainError(
                ErrorCode.NOT_AN_AGENT, "Only an agent may call this endpoint.", status_code=403
            )
        if self.scope and isinstance(request.auth, Credential):
            if self.scope not in request.auth.scopes:
                raise DomainError(
                    ErrorCode.SCOPE_MISSING,
                    f"This token lacks the {self.scope!r} scope.",
                    {"required": self.scope, "granted": request.auth.scopes},
                    status_code=403,
                )
        return True


class IsPerson(permissions.BasePermission):
    """People only: agents never manage the registry, whatever groups their user has."""

    message = "Agents cannot use this endpoint."

    def has_permission(self, request, view):
        return request.user.is_authenticated and request_agent(request) is None


class RegistryModelPermissions(permissions.DjangoModelPermissions):
    """Model permissions, with reads requiring the view permission too."""

    perms_map = {
        **permissions.DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
    }
