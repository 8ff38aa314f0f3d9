"""The enterprise IdP: humans sign in with OIDC, agents may present the IdP's bearer tokens.

Humans: the authorization-code flow (mozilla-django-oidc); the IdP's group claim decides the
portal roles, and someone whose groups map to no role is refused.
Agents: a bearer access token from the IdP (client-credentials grant) is validated by token
introspection (RFC 7662) and mapped to the agent whose ``oidc_client_id`` issued it; one
issued at or before the agent's ``tokens_valid_after`` (its credentials were revoked) is refused.
"""

import logging

import requests
from django.conf import settings
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.contrib.drf import OIDCAuthentication

from agents import selectors, services
from agents.models import Agent, AgentStatus
from autonomy.api.errors import CodedAuthenticationFailed
from autonomy.errors import ErrorCode

log = logging.getLogger(__name__)


def oidc_enabled() -> bool:
    return bool(settings.OIDC_RP_CLIENT_ID and settings.OIDC_OP_AUTHORIZATION_ENDPOINT)


class PortalOIDCBackend(OIDCAuthenticationBackend):
    """Signs people in; their portal roles follow the IdP's groups on every sign-in."""

    def authenticate(self, request, **kwargs):
        if not oidc_enabled():
            return None
        return super().authenticate(request, **kwargs)

    def verify_claims(self, claims):
        roles = services.portal_roles_for_groups(claims.get(settings.OIDC_GROUPS_CLAIM) or [])
        if not claims.get("sub") or not roles:
            log.warning(
                "OIDC sign-in refused for sub=%s: no portal role for groups %s",
                claims.get("sub"),
                claims.get(settings.OIDC_GROUPS_CLAIM),
            )
            if claims.get("sub"):
                services.portal_user_strip_roles(sub=claims["sub"])
            return False
        return True

    def filter_users_by_claims(self, claims):
        return self.UserModel.objects.filter(username=services.oidc_username(claims["sub"]))

    def create_user(self, claims):
        return services.portal_user_sync(claims=claims)

    def update_user(self, user, claims):
        return services.portal_user_sync(claims=claims)


class AgentOIDCBackend(OIDCAuthenticationBackend):
    """Resolves an agent's IdP access token to the agent's service user, by introspection."""

    def get_or_create_user(self, access_token, id_token, payload):
        endpoint = settings.OIDC_OP_INTROSPECTION_ENDPOINT
        try:
            response = requests.post(
                endpoint,
                data={"token": access_token, "token_type_hint": "access_token"},
                auth=(settings.OIDC_RP_CLIENT_ID, settings.OIDC_RP_CLIENT_SECRET),
                timeout=settings.OIDC_TIMEOUT,
                verify=settings.OIDC_VERIFY_SSL,
            )
            response.raise_for_status()
            info = response.json()
        except (requests.RequestException, ValueError) as exc:
            log.warning("OIDC introspection failed: %s", exc)
            raise CodedAuthenticationFailed(
                ErrorCode.OIDC_TOKEN_INVALID, "The identity provider could not check this token."
            ) from exc
        if not info.get("active"):
            raise CodedAuthenticationFailed(
                ErrorCode.OIDC_TOKEN_INVALID, "The identity provider says this token is not active."
            )
        agent = selectors.agent_by_oidc_client(client_id=info.get("client_id") or "")
        if agent is None:
            raise CodedAuthenticationFailed(
                ErrorCode.OIDC_CLIENT_UNKNOWN, "No agent is registered for this IdP client."
            )
        if agent.status == AgentStatus.RETIRED:
            raise CodedAuthenticationFailed(ErrorCode.AGENT_RETIRED, "This agent is retired.")
        _refuse_if_issued_before_revocation(agent=agent, iat=info.get("iat"))
        return agent.service_user


def _refuse_if_issued_before_revocation(*, agent: Agent, iat) -> None:
    """Refuse an IdP token issued at or before the agent's credentials were all revoked.

    The IdP never heard of that revocation, so the token's ``iat`` is compared with
    ``agent.tokens_valid_after``; a token without a usable ``iat`` is refused (fail closed).
    """
    cutoff = agent.tokens_valid_after
    if cutoff is None:
        return
    revoked_at = cutoff.isoformat(timespec="seconds")
    if isinstance(iat, bool) or not isinstance(iat, int | float):
        raise CodedAuthenticationFailed(
            ErrorCode.CREDENTIAL_REVOKED,
            f"This agent's tokens were revoked at {revoked_at}, and the identity provider "
            "gave no issue time for this token. Fetch a new token from the identity provider.",
        )
    # iat has whole seconds only, so compare whole seconds, and refuse the revocation's own
    # second (<=): a token issued in it may predate the revocation. An IdP clock running ahead
    # of ours would let tokens from just before the revocation through; NTP keeps that small.
    if int(iat) <= int(cutoff.timestamp()):
        raise CodedAuthenticationFailed(
            ErrorCode.CREDENTIAL_REVOKED,
            f"This agent's tokens were revoked at {revoked_at}; this token was issued at or "
            "before then. Fetch a new token from the identity provider.",
        )


class AgentOIDCAuthentication(OIDCAuthentication):
    """DRF authentication for IdP bearer tokens; steps aside for Autonomy OS's own tokens."""

    def __init__(self, backend=None):
        self._enabled = bool(settings.OIDC_OP_INTROSPECTION_ENDPOINT and settings.OIDC_RP_CLIENT_ID)
        if self._enabled:
            super().__init__(backend=backend)

    def authenticate(self, request):
        if not self._enabled:
            return None
        token = self.get_access_token(request)
        if not token or token.startswith(f"{services.TOKEN_PREFIX}_"):
            return None
        return super().authenticate(request)

    def authenticate_header(self, request):
        return 'Bearer realm="api"'
