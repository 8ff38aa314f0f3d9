"""DRF authentication for Autonomy OS agent tokens (``Authorization: Bearer aos_...``) and IdP
bearer tokens, with failed tokens rate-limited per client address.

A client that presents too many bad bearer tokens (``AUTONOMY_TOKEN_FAILURE_LIMIT`` within
``AUTONOMY_TOKEN_FAILURE_WINDOW_SECONDS``) gets 429 ``rate_limited`` with ``Retry-After`` on
every bearer request until its window ends; other addresses are not affected. The counts live
in the cache (``CACHE_URL``): share it between web processes, or each process counts its own.

Only guesses count: a token that matches no credential, or one the IdP says is not active or
belongs to no agent. A revoked or expired token, or an agent that is retired, names a real
credential (an agent that missed a rotation, not a guesser), and an IdP that cannot be reached
is not the client's doing: counting those would let one misconfigured agent, or an IdP outage,
lock out every agent behind the same egress address.
"""

import time

import requests
from django.conf import settings
from django.core.cache import cache
from rest_framework import authentication, exceptions
from rest_framework.throttling import BaseThrottle

from agents import services
from agents.oidc import AgentOIDCAuthentication
from autonomy.api.errors import CodedAuthenticationFailed
from autonomy.errors import DomainError, ErrorCode


def client_address(request) -> str | None:
    """The client's address, for every limit on it (API tokens here, portal logins through
    django-axes): REMOTE_ADDR, or behind ``NUM_PROXIES`` proxies the address they appended
    to X-Forwarded-For. None for a request from no address (``force_login`` builds one)."""
    return BaseThrottle().get_ident(request) or None


def not_a_password_login(request, credentials) -> bool:
    """django-axes counts password logins only: an OIDC sign-in also reaches Django's
    ``authenticate()`` (with a code, not a password) and is never counted or locked out."""
    return "password" not in (credentials or {})


class TokenFailuresExceeded(exceptions.Throttled):
    default_detail = "Too many failed tokens from this address; try again later."

    def __init__(self, *, wait: int):
        super().__init__(wait=wait)
        self.details = {"reason": "token_failures", "retry_after_seconds": wait}


def _keys(request) -> tuple[str, str]:
    address = client_address(request)
    return f"auth-failures:{address}", f"auth-locked:{address}"


def token_failures_refuse_if_locked(request) -> None:
    """Raise 429 while this address is locked out for failed tokens."""
    _, locked_key = _keys(request)
    until = cache.get(locked_key)
    if until is not None:
        wait = until - time.time()
        if wait > 0:
            raise TokenFailuresExceeded(wait=max(1, round(wait)))


def token_failure_record(request) -> None:
    """Count one failed token from this address; at the limit, lock the address out for the
    rest of the window. ``add`` then ``incr`` keep the count right across processes that
    share the cache."""
    count_key, locked_key = _keys(request)
    window = settings.AUTONOMY_TOKEN_FAILURE_WINDOW_SECONDS
    cache.add(count_key, 0, timeout=window)
    try:
        count = cache.incr(count_key)
    except ValueError:  # expired between add and incr
        cache.add(count_key, 1, timeout=window)
        count = 1
    if count >= settings.AUTONOMY_TOKEN_FAILURE_LIMIT:
        cache.set(locked_key, time.time() + window, timeout=window)


def _bearer(request) -> str | None:
    header = authentication.get_authorization_header(request).decode("latin-1").split()
    if len(header) != 2 or header[0].lower() != "bearer":
        return None
    return header[1]


class AgentTokenAuthentication(authentication.BaseAuthentication):
    """Agent tokens. Runs first, so it also refuses any bearer (ours or the IdP's) from an
    address that is locked out for failed tokens."""

    keyword = "Bearer"

    def authenticate(self, request):
        token = _bearer(request)
        if token is None:
            return None
        token_failures_refuse_if_locked(request)
        if not token.startswith(f"{services.TOKEN_PREFIX}_"):
            return None  # not ours: perhaps an IdP bearer token
        try:
            credential = services.credential_authenticate(token=token)
        except DomainError as exc:
            if exc.code == ErrorCode.CREDENTIAL_INVALID:
                token_failure_record(request)
            raise CodedAuthenticationFailed(exc.code, exc.message) from exc
        request.agent = credential.agent
        return credential.agent.service_user, credential

    def authenticate_header(self, request):
        return f'{self.keyword} realm="api"'


class ThrottledOIDCAuthentication(AgentOIDCAuthentication):
    """IdP bearer tokens (``agents.oidc``), each refused one counted against the address."""

    def authenticate(self, request):
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed as exc:
            guessed = getattr(exc, "error_code", None) in (
                ErrorCode.OIDC_TOKEN_INVALID,
                ErrorCode.OIDC_CLIENT_UNKNOWN,
            )
            unreachable = isinstance(exc.__cause__, requests.RequestException | ValueError)
            if guessed and not unreachable:
                token_failure_record(request)
            raise
