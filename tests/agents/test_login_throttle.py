"""Guessing is throttled: local password logins lock out (django-axes), and failed API bearer
tokens are rate-limited per client address, while other addresses carry on."""

import pytest
from django.contrib.auth import authenticate
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from agents import services
from tests.conftest import assert_envelope
from tests.factories import UserFactory, make_agent

LOGIN = "/admin/login/"
ATTACKER = "203.0.113.7"
OFFICE = "198.51.100.20"


@pytest.fixture
def staff(db):
    user = UserFactory(username="ops", is_staff=True, is_superuser=True)
    user.set_password("correct horse battery staple")
    user.save()
    return user


def login(address: str, password: str):
    client = Client(REMOTE_ADDR=address)
    return client.post(LOGIN, {"username": "ops", "password": password, "next": "/admin/"})


@pytest.mark.django_db
def test_repeated_bad_logins_lock_the_login_out_even_for_the_right_password(staff, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(3):
        response = login(ATTACKER, "guess")
        assert response.status_code in (200, 429)  # the form again, then the lockout
    assert login(ATTACKER, "guess").status_code == 429
    assert login(ATTACKER, "correct horse battery staple").status_code == 429


@pytest.mark.django_db
def test_a_lockout_does_not_stop_the_same_person_from_another_address(staff, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(4):
        login(ATTACKER, "guess")
    response = login(OFFICE, "correct horse battery staple")
    assert response.status_code == 302 and response["Location"] == "/admin/"


@pytest.mark.django_db
def test_a_good_login_before_the_limit_still_works(staff, settings):
    settings.AXES_FAILURE_LIMIT = 3
    login(OFFICE, "guess")
    response = login(OFFICE, "correct horse battery staple")
    assert response.status_code == 302


@pytest.mark.django_db
def test_failed_oidc_sign_ins_are_not_counted_as_password_failures(staff, settings):
    """An OIDC callback reaches Django's authenticate() with a code, not a password; however
    often it fails, the IdP's sign-in and the local login stay open."""
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(5):
        request = RequestFactory().get("/oidc/callback/", REMOTE_ADDR=OFFICE)
        assert authenticate(request=request, nonce="n", code_verifier="v") is None
    assert login(OFFICE, "correct horse battery staple").status_code == 302


# --- API bearer tokens ----------------------------------------------------------------------


def api_from(address: str, token: str) -> APIClient:
    client = APIClient(REMOTE_ADDR=address)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def good_token(db):
    _, token = services.credential_issue(agent=make_agent(slug="invoice-bot"))
    return token


@pytest.mark.django_db
def test_bad_agent_tokens_from_one_address_are_rate_limited(good_token, settings):
    settings.AUTONOMY_TOKEN_FAILURE_LIMIT = 5
    prefix = good_token.split("_")[1]
    for n in range(5):
        bad = api_from(ATTACKER, f"aos_{prefix}_wrong-secret-{n}").get("/api/v1/agents/me/")
        assert_envelope(bad, 401, "credential_invalid")

    refused = api_from(ATTACKER, "aos_abcdef123456_another-guess").get("/api/v1/agents/me/")
    error = assert_envelope(refused, 429, "rate_limited")
    assert 0 < int(refused["Retry-After"]) <= settings.AUTONOMY_TOKEN_FAILURE_WINDOW_SECONDS
    assert error["details"]["reason"] == "token_failures"
    # While locked out, the address gets no answer about any token, a good one included.
    assert_envelope(api_from(ATTACKER, good_token).get("/api/v1/agents/me/"), 429, "rate_limited")


@pytest.mark.django_db
def test_a_good_token_from_another_address_still_works(good_token, settings):
    settings.AUTONOMY_TOKEN_FAILURE_LIMIT = 5
    for n in range(6):
        api_from(ATTACKER, f"aos_000000000000_guess-{n}").get("/api/v1/agents/me/")
    assert api_from(ATTACKER, good_token).get("/api/v1/agents/me/").status_code == 429

    response = api_from(OFFICE, good_token).get("/api/v1/agents/me/")
    assert response.status_code == 200, response.content
    assert response.json()["slug"] == "invoice-bot"


@pytest.mark.django_db
def test_good_tokens_are_never_counted(good_token, settings):
    settings.AUTONOMY_TOKEN_FAILURE_LIMIT = 3
    for _ in range(10):
        assert api_from(OFFICE, good_token).get("/api/v1/agents/me/").status_code == 200


@pytest.mark.django_db
def test_x_forwarded_for_cannot_dodge_the_limit(good_token, settings):
    """Without trusted proxies (NUM_PROXIES=0) the header is the client's own word."""
    settings.AUTONOMY_TOKEN_FAILURE_LIMIT = 3
    for n in range(3):
        client = api_from(ATTACKER, f"aos_000000000000_guess-{n}")
        client.get("/api/v1/agents/me/", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
    refused = api_from(ATTACKER, good_token).get(
        "/api/v1/agents/me/", HTTP_X_FORWARDED_FOR="10.9.9.9"
    )
    assert_envelope(refused, 429, "rate_limited")


@pytest.fixture
def idp(settings):
    """A stand-in IdP on a loopback port whose introspection says every token is inactive;
    ``idp.down()`` makes it unreachable."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Introspection(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.dumps({"active": False}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Introspection)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    settings.OIDC_RP_CLIENT_ID = "portal"
    settings.OIDC_RP_CLIENT_SECRET = "secret"
    settings.OIDC_OP_INTROSPECTION_ENDPOINT = f"{base}/introspect"
    settings.OIDC_OP_TOKEN_ENDPOINT = f"{base}/token"
    settings.OIDC_OP_USER_ENDPOINT = f"{base}/me"
    settings.OIDC_OP_JWKS_ENDPOINT = f"{base}/jwks"
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = f"{base}/auth"
    settings.OIDC_TIMEOUT = 5

    class IdP:
        @staticmethod
        def down():
            settings.OIDC_OP_INTROSPECTION_ENDPOINT = "http://127.0.0.1:9/introspect"

    yield IdP
    server.shutdown()
    server.server_close()


@pytest.mark.django_db
def test_idp_bearer_tokens_the_idp_calls_inactive_count_too(good_token, settings, idp):
    settings.AUTONOMY_TOKEN_FAILURE_LIMIT = 3
    for n in range(3):
        bad = api_from(ATTACKER, f"idp-token-{n}").get("/api/v1/agents/me/")
        assert_envelope(bad, 401, "oidc_token_invalid")
    assert_envelope(
        api_from(ATTACKER, "idp-token-again").get("/api/v1/agents/me/"), 429, "rate_limited"
    )
    assert api_from(OFFICE, good_token).get("/api/v1/agents/me/").status_code == 200


@pytest.mark.django_db
def test_an_idp_outage_locks_nobody_out(good_token, settings, idp):
    settings.AUTONOMY_TOKEN_FAILURE_LIMIT = 3
    idp.down()
    for n in range(5):
        bad = api_from(OFFICE, f"idp-token-{n}").get("/api/v1/agents/me/")
        assert_envelope(bad, 401, "oidc_token_invalid")
    assert api_from(OFFICE, good_token).get("/api/v1/agents/me/").status_code == 200


@pytest.mark.django_db
def test_an_agent_retrying_its_revoked_token_locks_nobody_out(good_token, settings):
    """Behind one egress address, an agent that missed a rotation must not lock out the
    others: a revoked token names a real credential, it is not a guess."""
    settings.AUTONOMY_TOKEN_FAILURE_LIMIT = 3
    stale = make_agent(slug="stale-bot")
    credential, revoked = services.credential_issue(agent=stale)
    services.credential_revoke(credential=credential)
    for _ in range(5):
        assert_envelope(
            api_from(OFFICE, revoked).get("/api/v1/agents/me/"), 401, "credential_revoked"
        )
    assert api_from(OFFICE, good_token).get("/api/v1/agents/me/").status_code == 200


@pytest.mark.django_db
def test_bad_personal_tokens_count_too(staff, good_token, settings):
    """A person's API token (``aosu_...``) guessed wrong counts like a bad agent token."""
    from agents import user_tokens

    settings.AUTONOMY_TOKEN_FAILURE_LIMIT = 3
    _, secret = user_tokens.user_token_issue(user=staff, by=staff, name="ci")
    prefix = secret.split("_")[1]
    for n in range(3):
        bad = api_from(ATTACKER, f"aosu_{prefix}_wrong-secret-{n}").get("/api/v1/agents/")
        assert_envelope(bad, 401, "credential_invalid")
    assert_envelope(api_from(ATTACKER, secret).get("/api/v1/agents/"), 429, "rate_limited")
    assert api_from(OFFICE, secret).get("/api/v1/agents/").status_code == 200
