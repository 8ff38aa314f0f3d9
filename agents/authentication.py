"""DRF authentication for Autonomy OS agent tokens (``Authorization: Bearer aos_...``)."""

from rest_framework import authentication

from agents import services
from autonomy.api.errors import CodedAuthenticationFailed
from autonomy.errors import DomainError


class AgentTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if len(header) != 2 or header[0].lower() != "bearer":
            return None
        token = header[1]
        if not token.startswith(f"{services.TOKEN_PREFIX}_"):
            return None  # not ours: perhaps an IdP bearer token
        try:
            credential = services.credential_authenticate(token=token)
        except DomainError as exc:
            raise CodedAuthenticationFailed(exc.code, exc.message) from exc
        request.agent = credential.agent
        return credential.agent.service_user, credential

    def authenticate_header(self, request):
        return f'{self.keyword} realm="api"'
