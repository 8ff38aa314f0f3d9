"""OpenAPI descriptions of the two ways an agent authenticates (loaded by AgentsConfig)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class AgentTokenScheme(OpenApiAuthenticationExtension):
    target_class = "agents.authentication.AgentTokenAuthentication"
    name = "agentToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "aos_<prefix>_<secret>",
            "description": "An Autonomy OS agent token, issued in the admin or the API.",
        }


class AgentOIDCScheme(OpenApiAuthenticationExtension):
    target_class = "agents.oidc.AgentOIDCAuthentication"
    match_subclasses = True  # the API uses it through agents.authentication's throttled one
    name = "idpBearer"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An access token from the enterprise IdP (client credentials), "
            "mapped to the agent registered with that client id.",
        }
