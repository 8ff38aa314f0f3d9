"""Personal API tokens: an API credential of a person's own (admins, integrations), beside the
agents' credentials and hashed the same way (``agents.services``).

A token (``aosu_<prefix>_<secret>``) authenticates as its user, so that user's permissions
apply unchanged; its scopes can only narrow them (a read token never writes). It always
expires, can be revoked, and records when it was last used. Agents' service users never get
one: an agent authenticates with its own credentials.
"""

import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication

from agents.authentication import token_failure_record
from agents.models import PersonalToken, PersonalTokenScope
from agents.services import stored_token_check, stored_token_used, token_digest
from autonomy.api.errors import CodedAuthenticationFailed
from autonomy.errors import DomainError, ErrorCode

TOKEN_PREFIX = "aosu"
MAX_LIFETIME = timedelta(days=365)
DEFAULT_LIFETIME = timedelta(days=90)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def user_token_terms(*, user, scopes: Iterable[str] | None, expires_at: datetime | None):
    """The scopes and expiry a token for ``user`` gets, or a DomainError saying what is wrong.
    The one rule for what a personal token may be (the admin's form asks it too)."""
    now = timezone.now()
    scopes = sorted(set(scopes or [PersonalTokenScope.READ]))
    invalid = sorted(set(scopes) - set(PersonalTokenScope.values))
    if invalid:
        raise DomainError(ErrorCode.VALIDATION_FAILED, "Unknown scopes.", {"scopes": invalid})
    if hasattr(user, "agent"):
        raise DomainError(
            ErrorCode.VALIDATION_FAILED, "Agents authenticate with their own credentials."
        )
    expires_at = expires_at or now + DEFAULT_LIFETIME
    if not now < expires_at <= now + MAX_LIFETIME:
        raise DomainError(
            ErrorCode.VALIDATION_FAILED,
            "A personal token expires in the future, within a year.",
            {"fields": {"expires_at": ["out_of_range"]}},
        )
    return scopes, expires_at


def user_token_issue(
    *,
    user,
    by,
    name: str,
    scopes: Iterable[str] | None = None,
    expires_at: datetime | None = None,
) -> tuple[PersonalToken, str]:
    """Issue a token for ``user``. Returns it and its secret, which is never shown again."""
    scopes, expires_at = user_token_terms(user=user, scopes=scopes, expires_at=expires_at)
    prefix = secrets.token_hex(6)
    token = f"{TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        personal = PersonalToken.objects.create(
            user=user,
            name=name,
            prefix=prefix,
            token_hash=token_digest(token),
            scopes=scopes,
            expires_at=expires_at,
            created_by=by,
        )
    return personal, token


def user_token_revoke(*, token: PersonalToken) -> PersonalToken:
    """Revoke at once; idempotent (a second revocation keeps the first time)."""
    PersonalToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    token.refresh_from_db(fields=["revoked_at"])
    return token


def _personal_by_prefix(prefix: str) -> PersonalToken | None:
    return PersonalToken.objects.select_related("user").filter(prefix=prefix).first()


def user_token_authenticate(*, token: str) -> PersonalToken:
    """The live token behind ``token``, or a DomainError (401) saying why not: the agents'
    check (``agents.services.stored_token_check``), and the person must be active."""
    personal = stored_token_check(token=token, kind=TOKEN_PREFIX, find=_personal_by_prefix)
    if not personal.user.is_active:
        raise DomainError(ErrorCode.CREDENTIAL_INVALID, "Invalid token.", status_code=401)
    stored_token_used(personal)
    return personal


def scope_for(method: str) -> str:
    return PersonalTokenScope.READ if method in SAFE_METHODS else PersonalTokenScope.WRITE


class PersonalTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer aosu_...``: the request is its user's, within the token's scopes."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if len(header) != 2 or header[0].lower() != "bearer":
            return None
        if not header[1].startswith(f"{TOKEN_PREFIX}_"):
            return None  # an agent's token or an IdP's
        try:
            personal = user_token_authenticate(token=header[1])
        except DomainError as exc:
            # Counted against the address like a bad agent token (``agents.authentication``,
            # which runs first and refuses any bearer from an address locked out).
            if exc.code == ErrorCode.CREDENTIAL_INVALID:  # a guess, not a revoked token
                token_failure_record(request)
            raise CodedAuthenticationFailed(exc.code, exc.message) from exc
        needed = scope_for(request.method)
        if needed not in personal.scopes:
            raise DomainError(
                ErrorCode.SCOPE_MISSING,
                f"This token lacks the {needed!r} scope.",
                {"required": needed, "granted": personal.scopes},
                status_code=403,
            )
        return personal.user, personal

    def authenticate_header(self, request):
        return f'{self.keyword} realm="api"'


class PersonalTokenScheme(OpenApiAuthenticationExtension):
    target_class = "agents.user_tokens.PersonalTokenAuthentication"
    name = "personalToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "aosu_<prefix>_<secret>",
            "description": "A person's API token, created in the admin: it acts as that person, "
            "within its scopes (api:read, api:write).",
        }
