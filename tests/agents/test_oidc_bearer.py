"""Agents may call the API with an access token from the company IdP (client credentials).

The token is checked by introspection at the real loopback IdP and mapped to the agent whose
``oidc_client_id`` it was issued to.
"""

import pytest
import requests

from tests import oidc_fixtures
from tests.factories import make_agent
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
