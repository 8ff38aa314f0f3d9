"""Agents may call the API with an access token from the company IdP (client credentials).

The token is checked by introspection at the real loopback IdP and mapped to the agent whose
``oidc_client_id`` it was issued to.
"""

import json
from datetime import UTC, datetime, timedelta

import pytest
import requests
from django.utils import timezone

from agents import services
from agents.models import Agent
from interventions import services as intervention
from tests import oidc_fixtures
from tests.factories import UserFactory, make_agent
from tests.oidc_fixtures import api_get

# The test IdP fixtures, shared with the browser tests (tests/e2e/conftest.py).
oidc_provider = oidc_fixtures.oidc_provider
oidc_settings = oidc_fixtures.oidc_settings

pytestmark = pytest.mark.django_db(transaction=True)


def call_me(live_server, token: str) -> requests.Response:
    return api_get(f"{live_server.url}/api/v1/agents/me/", token)


def assert_refused(response: requests.Response, code: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


def test_agent_calls_the_api_with_an_access_token_from_its_idp_client(live_server, oidc_settings):
    make_agent(slug="invoice-bot", oidc_client_id="agent-client-1")
    token = oidc_settings.client_credentials_token("agent-client-1")

    response = call_me(live_server, token)

    assert response.status_code == 200, response.text
    assert response.json()["slug"] == "invoice-bot"


def test_token_of_an_idp_client_with_no_agent_is_refused(live_server, oidc_settings):
    make_agent(slug="invoice-bot", oidc_client_id="agent-client-1")
    token = oidc_settings.client_credentials_token("agent-client-unknown")

    assert_refused(call_me(live_server, token), "oidc_client_unknown")


def test_token_revoked_at_the_idp_is_refused_on_next_request(live_server, oidc_settings):
    make_agent(slug="invoice-bot", oidc_client_id="agent-client-1")
    token = oidc_settings.client_credentials_token("agent-client-1")
    assert call_me(live_server, token).status_code == 200

    oidc_settings.revoke(token)

    assert_refused(call_me(live_server, token), "oidc_token_invalid")


def test_garbage_bearer_is_refused(live_server, oidc_settings):
    make_agent(slug="invoice-bot", oidc_client_id="agent-client-1")

    response = call_me(live_server, "not-a-token-anyone-issued")

    assert_refused(response, "oidc_token_invalid")


# --- revoking every credential of an agent reaches its IdP tokens too ------------------------


def introspect(provider, token: str) -> dict:
    """What the test IdP says about a token, as the portal's client asks it."""
    response = requests.post(
        provider.endpoints["introspection_endpoint"],
        data={"token": token, "token_type_hint": "access_token"},
        auth=(provider.portal_client_id, provider.portal_client_secret),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def set_tokens_valid_after(agent: Agent, when: datetime) -> None:
    Agent.objects.filter(pk=agent.pk).update(tokens_valid_after=when)


def test_killed_agents_idp_token_is_refused_as_revoked(live_server, oidc_settings):
    agent = make_agent(slug="invoice-bot", oidc_client_id="agent-client-1")
    officer = UserFactory(username="boss", is_staff=True, is_superuser=True)
    token = oidc_settings.client_credentials_token("agent-client-1")
    assert call_me(live_server, token).status_code == 200

    intervention.agent_kill(agent=agent, by=officer, reason="rogue")

    response = call_me(live_server, token)
    assert_refused(response, "credential_revoked")
    assert "revoked at" in response.json()["error"]["message"]
    assert introspect(oidc_settings, token)["active"]  # the IdP alone would still accept it


def test_revoking_all_credentials_refuses_idp_tokens_issued_before(live_server, oidc_settings):
    agent = make_agent(slug="invoice-bot", oidc_client_id="agent-client-1")
    token = oidc_settings.client_credentials_token("agent-client-1")
    assert call_me(live_server, token).status_code == 200

    services.agent_credentials_revoke(agent=agent, reason="leaked")

    assert Agent.objects.get(pk=agent.pk).tokens_valid_after is not None
    assert_refused(call_me(live_server, token), "credential_revoked")


def test_idp_token_issued_after_the_revocation_is_accepted(live_server, oidc_settings):
    agent = make_agent(slug="invoice-bot", oidc_client_id="agent-client-1")
    officer = UserFactory(username="boss", is_staff=True, is_superuser=True)
    intervention.agent_kill(agent=agent, by=officer, reason="rogue")
    # As if the kill was a minute ago: IdP tokens carry whole seconds, so one fetched now
    # could share the kill's second, which is refused.
    killed_at = Agent.objects.get(pk=agent.pk).tokens_valid_after
    set_tokens_valid_after(agent, killed_at - timedelta(minutes=1))

    token = oidc_settings.client_credentials_token("agent-client-1")

    response = call_me(live_server, token)
    assert response.status_code == 200, response.text
    assert response.json()["slug"] == "invoice-bot"


def test_idp_token_issued_in_the_revocations_second_is_refused(live_server, oidc_settings):
    agent = make_agent(slug="invoice-bot", oidc_client_id="agent-client-1")
    token = oidc_settings.client_credentials_token("agent-client-1")
    issued = datetime.fromtimestamp(introspect(oidc_settings, token)["iat"], tz=UTC)

    set_tokens_valid_after(agent, issued - timedelta(microseconds=1))
    assert call_me(live_server, token).status_code == 200

    # Revoked half a second after the token's whole-second issue time: the token may have
    # been issued after the revocation, but iat cannot tell, so it is refused.
    set_tokens_valid_after(agent, issued + timedelta(milliseconds=500))
    assert_refused(call_me(live_server, token), "credential_revoked")


def test_idp_token_without_issue_time_is_refused_once_tokens_were_revoked(
    live_server, oidc_settings, monkeypatch
):
    agent = make_agent(slug="invoice-bot", oidc_client_id="agent-client-1")
    token = oidc_settings.client_credentials_token("agent-client-1")
    real_post = requests.post

    def introspect_without_iat(*args, **kwargs):
        """The real IdP's answer with ``iat`` left out, as some IdPs answer."""
        response = real_post(*args, **kwargs)
        info = response.json()
        info.pop("iat", None)
        response._content = json.dumps(info).encode()
        return response

    monkeypatch.setattr(requests, "post", introspect_without_iat)
    assert call_me(live_server, token).status_code == 200  # nothing revoked: no cutoff to check

    set_tokens_valid_after(agent, timezone.now() - timedelta(days=1))

    response = call_me(live_server, token)
    assert_refused(response, "credential_revoked")
    assert "no issue time" in response.json()["error"]["message"]
