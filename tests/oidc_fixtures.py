"""Real parts for sign-in tests: the loopback OpenID Connect provider and headless Chromium.

``tests/e2e/conftest.py`` and ``tests/agents/test_oidc_bearer.py`` import these fixtures.
The provider is ``tests/oidc/provider.mjs`` (node ``oidc-provider``); see tests/oidc/README.md.
"""

from __future__ import annotations

import json
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests import realparts

ARTIFACTS = realparts.ROOT / "test-artifacts"
PROVIDER_DIR = realparts.ROOT / "tests" / "oidc"
READY_TIMEOUT = 90.0

PORTAL_CLIENT_ID = "autonomy-portal"
PORTAL_CLIENT_SECRET = "portal-secret"
AGENT_CLIENTS = {"agent-client-1": "agent-secret-1", "agent-client-unknown": "agent-secret-2"}

# People at the IdP: login -> (password, groups).
IDP_USERS = {
    "rita": ("rita-pw", ["autonomy-risk-officers"]),
    "ivan": ("ivan-pw", ["autonomy-it-admins", "autonomy-viewers"]),
    "mallory": ("mallory-pw", ["some-other-group"]),
}

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass(frozen=True)
class OIDCProvider:
    """A running test IdP: its issuer, discovered endpoints and registered clients."""

    issuer: str
    endpoints: dict[str, str]
    portal_client_id: str = PORTAL_CLIENT_ID
    portal_client_secret: str = PORTAL_CLIENT_SECRET
    agent_clients: dict[str, str] = field(default_factory=lambda: dict(AGENT_CLIENTS))

    def password(self, login: str) -> str:
        return IDP_USERS[login][0]

    def client_credentials_token(self, client_id: str) -> str:
        """An access token for an agent client (client-credentials grant, client_secret_basic)."""
        response = requests.post(
            self.endpoints["token_endpoint"],
            data={"grant_type": "client_credentials"},
            auth=(client_id, self.agent_clients[client_id]),
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def revoke(self, token: str) -> None:
        response = requests.post(
            self.endpoints["revocation_endpoint"],
            data={"token": token, "token_type_hint": "access_token"},
            auth=(self.portal_client_id, self.portal_client_secret),
            timeout=10,
        )
        assert response.status_code == 200, response.text


def _provider_config(callback_url: str) -> dict:
    return {
        "port": 0,
        "issuer_host": "127.0.0.1",
        "clients": [
            {
                "client_id": PORTAL_CLIENT_ID,
                "client_secret": PORTAL_CLIENT_SECRET,
                "redirect_uris": [callback_url],
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "client_secret_post",
            },
        ]
        + [
            {
                "client_id": client_id,
                "client_secret": secret,
                "grant_types": ["client_credentials"],
                "response_types": [],
            }
            for client_id, secret in AGENT_CLIENTS.items()
        ],
        "users": [
            {
                "sub": login,
                "password": password,
                "email": f"{login}@example.com",
                "given_name": login.title(),
                "family_name": "Example",
                "groups": groups,
            }
            for login, (password, groups) in IDP_USERS.items()
        ],
    }


def _read_ready_line(proc: subprocess.Popen, stderr_lines: list[str]) -> str:
    """The issuer from the provider's single ``READY <issuer>`` line, within READY_TIMEOUT."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=READY_TIMEOUT)
    line = lines[0] if lines else ""
    if not line.startswith("READY "):
        proc.kill()
        raise RuntimeError(
            f"OIDC test provider not ready after {READY_TIMEOUT}s (exit code {proc.poll()}): "
            f"stdout={line!r} "
            f"stderr={''.join(stderr_lines)[-2000:]!r}"
        )
    return line.split(" ", 1)[1].strip()


@pytest.fixture(scope="session")
def oidc_provider(live_server, tmp_path_factory):
    """The loopback IdP, with the portal client registered for this live server's callback."""
    if not realparts.node_provider_ready():
        realparts.missing("node oidc-provider", "install node, then: cd tests/oidc && npm ci")
    # mozilla-django-oidc builds redirect_uri from the request's host, and the browser talks to
    # the portal at live_server.url, so that is the redirect URI the IdP must know.
    config_path = tmp_path_factory.mktemp("oidc") / "provider.json"
    config_path.write_text(json.dumps(_provider_config(f"{live_server.url}/oidc/callback/")))
    stderr_lines: list[str] = []

    def start() -> subprocess.Popen:
        proc = subprocess.Popen(
            ["node", str(PROVIDER_DIR / "provider.mjs"), str(config_path)],
            cwd=PROVIDER_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=lambda: stderr_lines.extend(proc.stderr), daemon=True).start()
        return proc

    proc = start()
    try:
        try:
            issuer = _read_ready_line(proc, stderr_lines)
        except RuntimeError as first:
            # Once seen on a loaded 2-core machine: the provider printed nothing for 30 s.
            # Start it once more and report both failures if that does not help either.
            proc = start()
            try:
                issuer = _read_ready_line(proc, stderr_lines)
            except RuntimeError as second:
                raise RuntimeError(f"{first}; retry: {second}") from second
        discovery = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
        yield OIDCProvider(issuer=issuer, endpoints=discovery)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def oidc_settings(settings, oidc_provider):
    """Points the portal (people) and the API (agents' bearer tokens) at the test IdP."""
    endpoints = oidc_provider.endpoints
    settings.OIDC_RP_CLIENT_ID = oidc_provider.portal_client_id
    settings.OIDC_RP_CLIENT_SECRET = oidc_provider.portal_client_secret
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = endpoints["authorization_endpoint"]
    settings.OIDC_OP_TOKEN_ENDPOINT = endpoints["token_endpoint"]
    settings.OIDC_OP_USER_ENDPOINT = endpoints["userinfo_endpoint"]
    settings.OIDC_OP_JWKS_ENDPOINT = endpoints["jwks_uri"]
    settings.OIDC_OP_INTROSPECTION_ENDPOINT = endpoints["introspection_endpoint"]
    settings.OIDC_OP_LOGOUT_ENDPOINT = endpoints["end_session_endpoint"]
    settings.OIDC_VERIFY_SSL = True
    return oidc_provider


@pytest.fixture
def browser_page(monkeypatch):
    """A fresh headless Chromium page (1280x800); closed with its browser after the test."""
    executable = realparts.chromium_path()
    if executable is None:
        realparts.missing("Chromium", "apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        realparts.missing("playwright", "pip install playwright")
    # Playwright's sync API runs an event loop in this thread; the ORM in the test body is
    # still synchronous code, so tell Django it is safe here.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.set_default_timeout(15_000)
            yield page
        finally:
            # While that loop runs, Django keeps the test body's database connection in a
            # context-local slot, apart from the thread's usual one: close it here, or it
            # outlives the test (PostgreSQL then refuses to drop the test database).
            from django.db import connections

            connections.close_all()
            browser.close()


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot as test-artifacts/<name>.png and return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def api_get(url: str, token: str) -> requests.Response:
    """GET an API URL as a bearer, on a connection the live server closes after answering.

    A kept-alive connection keeps its live-server thread, and that thread's database
    connection, open until the client socket is garbage-collected, which can be after the
    test database is dropped.
    """
    return requests.get(
        url, headers={"Authorization": f"Bearer {token}", "Connection": "close"}, timeout=10
    )
