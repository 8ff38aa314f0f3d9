"""Use cases of the agent registry: one function per thing a person or an agent does.

Every write runs in a transaction with the acting user set as the auditlog actor, so the
field-level history says who changed what. Notifications go to Celery after commit.
"""

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from auditlog.context import set_actor
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify
from guardian.shortcuts import assign_perm, remove_perm

from agents import selectors, signals
from agents.models import (
    Agent,
    AgentStatus,
    BusinessUnit,
    Credential,
    RegistryChange,
    RegistryChangeKind,
    RegistryChangeStatus,
    RiskTier,
    Role,
    Scope,
)
from autonomy import audit, grants
from autonomy.errors import DomainError, ErrorCode, IllegalTransition
from autonomy.models import Connector, Operation
from autonomy.policy.services import registry_changed

User = get_user_model()

TOKEN_PREFIX = "aos"
OWNER_OBJECT_PERMS = ("agents.view_agent", "agents.change_agent")

# Which status may follow which. Retired is final. A pending agent becomes active only when
# its registration is approved (``registry_change_settle``), never by resuming it.
TRANSITIONS: dict[str, set[str]] = {
    AgentStatus.PENDING: {AgentStatus.RETIRED},
    AgentStatus.ACTIVE: {AgentStatus.PAUSED, AgentStatus.QUARANTINED, AgentStatus.RETIRED},
    AgentStatus.PAUSED: {AgentStatus.ACTIVE, AgentStatus.QUARANTINED, AgentStatus.RETIRED},
    AgentStatus.QUARANTINED: {AgentStatus.ACTIVE, AgentStatus.RETIRED},
    AgentStatus.RETIRED: set(),
}


# --- business units and roles ---------------------------------------------------------------


def business_unit_create(*, name: str, slug: str = "", description: str = "", by=None):
    with transaction.atomic(), set_actor(by):
        return BusinessUnit.objects.create(
            name=name, slug=slug or slugify(name), description=description
        )


UNIT_FIELDS = (
    "name", "description", "approval_threshold", "deny_threshold", "dual_control_risk",
    "auto_quarantine_on_drift",
)  # fmt: skip
_SCORES = ("approval_threshold", "deny_threshold", "dual_control_risk")


def business_unit_update(*, unit: BusinessUnit, by, **changes) -> BusinessUnit:
    """Change a unit's name, description, risk thresholds (0-100 scores) or drift reaction;
    the API's PATCH and governance bundles both come here. Audited with old and new values."""
    unknown = set(changes) - set(UNIT_FIELDS)
    if unknown:
        raise DomainError(
            ErrorCode.UNKNOWN_FIELD, "Cannot update these fields.", {"fields": sorted(unknown)}
        )
    bad = sorted(
        f
        for f in _SCORES
        if f in changes and not (isinstance(changes[f], int) and 0 <= changes[f] <= 100)
    )
    if bad:
        raise DomainError(
            ErrorCode.VALIDATION_FAILED,
            "Thresholds are risk scores from 0 to 100.",
            {"fields": {f: ["a whole number from 0 to 100"] for f in bad}},
        )
    with transaction.atomic(), set_actor(by):
        unit = BusinessUnit.objects.select_for_update().get(pk=unit.pk)
        changed = {f: (getattr(unit, f), v) for f, v in changes.items() if getattr(unit, f) != v}
        if not changed:
            return unit
        for field, (_, value) in changed.items():
            setattr(unit, field, value)
        if unit.approval_threshold > unit.deny_threshold:
            raise DomainError(
                ErrorCode.VALIDATION_FAILED,
                "The approval threshold must not be above the deny threshold.",
                {"fields": {"approval_threshold": ["above the deny threshold"]}},
            )
        unit.save()  # the registry receivers move the policy-store version
        audit.append(
            kind="business_unit_changed",
            actor=getattr(by, "username", ""),
            payload={"unit": unit.slug, "changes": {f: list(pair) for f, pair in changed.items()}},
        )
    return unit


ROLE_FIELDS = ("name", "description", "default_risk_tier")


def role_update(*, role: Role, by, **changes) -> Role:
    """Change a role's name (its group's), description or default risk tier; audited."""
    unknown = set(changes) - set(ROLE_FIELDS)
    if unknown:
        raise DomainError(
            ErrorCode.UNKNOWN_FIELD, "Cannot update these fields.", {"fields": sorted(unknown)}
        )
    if "default_risk_tier" in changes and changes["default_risk_tier"] not in RiskTier.values:
        raise DomainError(
            ErrorCode.VALIDATION_FAILED,
            "No such risk tier.",
            {"fields": {"default_risk_tier": [f"one of {RiskTier.values}"]}},
        )
    with transaction.atomic(), set_actor(by):
        role = Role.objects.select_for_update().select_related("group").get(pk=role.pk)
        now = {"name": role.group.name, "description": role.description,
               "default_risk_tier": role.default_risk_tier}  # fmt: skip
        changed = {f: (now[f], v) for f, v in changes.items() if now[f] != v}
        if not changed:
            return role
        if "name" in changed:
            role.group.name = changes["name"]
            role.group.save(update_fields=["name"])
        for field in ("description", "default_risk_tier"):
            if field in changed:
                setattr(role, field, changes[field])
        role.save()
        audit.append(
            kind="role_changed",
            actor=getattr(by, "username", ""),
            payload={"role": role.slug, "changes": {f: list(pair) for f, pair in changed.items()}},
        )
    return role


def role_create(
    *,
    name: str,
    slug: str = "",
    description: str = "",
    default_risk_tier: int = RiskTier.MEDIUM,
    by=None,
) -> Role:
    """An agent role is a Django group (the target of guardian grants) plus a profile."""
    with transaction.atomic(), set_actor(by):
        group, _ = Group.objects.get_or_create(name=name)
        return Role.objects.create(
            group=group,
            slug=slug or slugify(name),
            description=description,
            default_risk_tier=default_risk_tier,
        )


# --- agents ---------------------------------------------------------------------------------


def _service_username(slug: str) -> str:
    return f"agent-{slug}"[:150]


def agent_register(
    *,
    name: str,
    owner: AbstractBaseUser,
    business_unit: BusinessUnit,
    role: Role,
    slug: str = "",
    description: str = "",
    risk_tier: int | None = None,
    oidc_client_id: str | None = None,
    by=None,
    approved: bool = False,
) -> Agent:
    """Create an agent with its own service user, in the role's group, visible to its owner.

    It waits, pending, until its unit's owner and security approve its registration (a
    ``RegistryChange``); until then the gate refuses its actions. ``approved``: registered
    active at once, for trusted internal callers only (the demo seed, test factories,
    management commands); the API and the admin always ask."""
    slug = slug or slugify(name)
    with transaction.atomic(), set_actor(by or owner):
        service_user = User(username=_service_username(slug), is_active=True)
        service_user.set_unusable_password()
        service_user.save()
        service_user.groups.add(role.group)
        agent = Agent.objects.create(
            name=name,
            slug=slug,
            description=description,
            owner=owner,
            business_unit=business_unit,
            role=role,
            risk_tier=risk_tier if risk_tier is not None else role.default_risk_tier,
            service_user=service_user,
            oidc_client_id=oidc_client_id or None,
            status=AgentStatus.ACTIVE if approved else AgentStatus.PENDING,
        )
        for perm in OWNER_OBJECT_PERMS:
            assign_perm(perm, owner, agent)
        if not approved:
            registry_change_request(
                kind=RegistryChangeKind.REGISTER,
                agent=agent,
                by=by or owner,
                payload={"risk_tier": agent.risk_tier, "role": role.slug},
            )
    return agent


UPDATABLE_FIELDS = selectors.PROFILE_FIELDS + selectors.GOVERNED_FIELDS


def agent_update(*, agent: Agent, by, **changes) -> Agent:
    """Change an agent's profile, within what ``by`` may change of it
    (``selectors.agent_fields_editable``); a value given unchanged is no change. Status
    changes go through the lifecycle functions below. A riskier tier waits for approval (a
    ``RegistryChange``, applied by ``registry_change_settle``); a lower one applies at once.

    The one writer of the owner: a new owner takes the owner's object permissions over and
    the previous owner loses them, whichever path (API, admin) changed it."""
    unknown = set(changes) - set(UPDATABLE_FIELDS)
    if unknown:
        raise DomainError(
            ErrorCode.UNKNOWN_FIELD, "Cannot update these fields.", {"fields": sorted(unknown)}
        )
    with transaction.atomic(), set_actor(by):
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        changed = {f: v for f, v in changes.items() if getattr(agent, f) != v}
        refused = sorted(set(changed) - selectors.agent_fields_editable(user=by, agent=agent))
        if refused:
            raise DomainError(
                ErrorCode.FIELDS_NOT_PERMITTED,
                "An agent's owner edits its profile only; these fields need an IT admin or "
                "a risk officer.",
                {"fields": refused},
                status_code=403,
            )
        raised = changed.get("risk_tier")
        if raised is not None and raised > agent.risk_tier:
            del changed["risk_tier"]
            _tier_raise_request(agent=agent, to=raised, by=by)
        old_role, old_owner = agent.role, agent.owner
        for field, value in changed.items():
            setattr(agent, field, value)
        agent.save()
        if agent.role != old_role:
            agent.service_user.groups.remove(old_role.group)
            agent.service_user.groups.add(agent.role.group)
        if agent.owner != old_owner:
            for perm in OWNER_OBJECT_PERMS:
                remove_perm(perm, old_owner, agent)
                assign_perm(perm, agent.owner, agent)
    return agent


def agent_lock(*, agent_id) -> None:
    """Lock the agent's row, in the caller's transaction: whoever settles one of its
    registry changes takes it first, in the order retiring it does (agent, its changes, their
    requests), so the two queue instead of deadlocking."""
    list(Agent.objects.select_for_update().filter(pk=agent_id).values_list("pk", flat=True))


def _transition(*, agent: Agent, target: str, by, reason: str) -> Agent:
    with transaction.atomic(), set_actor(by):
        # Lock the row: two officers pausing and retiring at once must not interleave.
        locked = Agent.objects.select_for_update().get(pk=agent.pk)
        if target not in TRANSITIONS[locked.status]:
            raise IllegalTransition(current=locked.status, target=target)
        locked.status = target
        locked.status_reason = reason[:500]
        locked.status_changed_at = timezone.now()
        locked.save(update_fields=["status", "status_reason", "status_changed_at", "updated_at"])
        if target == AgentStatus.RETIRED:
            _revoke_all(agent=locked, reason=f"agent retired: {reason}"[:500])
            _changes_cancel(agent=locked, by=by)
            User.objects.filter(pk=locked.service_user_id).update(is_active=False)
        _notify_owner_on_commit(agent=locked, reason=reason)
    return locked


def _notify_owner_on_commit(*, agent: Agent, reason: str) -> None:
    from agents import tasks

    agent_id, status = str(agent.pk), agent.status
    transaction.on_commit(lambda: tasks.agent_status_notify.delay(agent_id, status, reason))


def agent_pause(*, agent: Agent, by, reason: str = "") -> Agent:
    return _transition(agent=agent, target=AgentStatus.PAUSED, by=by, reason=reason)


def agent_resume(*, agent: Agent, by, reason: str = "") -> Agent:
    return _transition(agent=agent, target=AgentStatus.ACTIVE, by=by, reason=reason)


def agent_quarantine(*, agent: Agent, by, reason: str = "") -> Agent:
    return _transition(agent=agent, target=AgentStatus.QUARANTINED, by=by, reason=reason)


def agent_retire(*, agent: Agent, by, reason: str = "") -> Agent:
    return _transition(agent=agent, target=AgentStatus.RETIRED, by=by, reason=reason)


# --- registry changes that wait for approval -------------------------------------------------


def registry_change_request(
    *, kind: str, by, agent: Agent | None = None, role: Role | None = None, payload: dict
) -> RegistryChange:
    """Record a change that takes effect only when approved, and tell whoever opens the
    request for people (``signals.registry_change_requested``: ``approvals``). Runs in the
    caller's transaction, which the change commits with."""
    with transaction.atomic():
        change = RegistryChange.objects.create(
            kind=kind,
            agent=agent,
            role=role,
            business_unit=agent.business_unit if agent else None,
            payload=payload,
            requested_by=by,
        )
        audit.append(
            kind="registry_change_requested",
            actor=getattr(by, "username", "") or "system",
            agent_id=agent.pk if agent else None,
            payload={"change_id": str(change.pk), "kind": kind, "summary": change.summary,
                     **payload},
        )  # fmt: skip
        signals.registry_change_requested.send(sender=RegistryChange, change=change)
    return change


def _tier_raise_request(*, agent: Agent, to: int, by) -> RegistryChange:
    """Ask for a riskier tier; the caller holds the agent's row lock, so two asks queue."""
    if RegistryChange.objects.filter(
        agent=agent, kind=RegistryChangeKind.RAISE_TIER, status=RegistryChangeStatus.PENDING
    ).exists():
        raise DomainError(
            ErrorCode.CONFLICT,
            "A raise of this agent's risk tier already waits for approval.",
            status_code=409,
        )
    return registry_change_request(
        kind=RegistryChangeKind.RAISE_TIER,
        agent=agent,
        by=by,
        payload={"from": int(agent.risk_tier), "to": int(to)},
    )


def grant_request(*, target: Operation | Connector, to: Agent | Role, by) -> RegistryChange | None:
    """Ask to grant an agent or a role an operation or a whole connector: it waits for
    approval and is made by ``registry_change_settle`` (``autonomy.grants.grant``). None when
    the grantee already holds it. Revoking never waits (``autonomy.grants.revoke_grant``)."""
    if not isinstance(to, Agent | Role) or not isinstance(target, Operation | Connector):
        raise TypeError("grant an Operation or a Connector to an Agent or a Role")
    if grants.is_held(target=target, to=to):
        return None
    is_agent = isinstance(to, Agent)
    payload = {
        "model": "operation" if isinstance(target, Operation) else "connector",
        "pk": target.pk,
        "name": target.key if isinstance(target, Operation) else f"{target.slug}.*",
        "to": "agent" if is_agent else f"role:{to.slug}",
    }
    with transaction.atomic():
        waiting = RegistryChange.objects.filter(
            kind=RegistryChangeKind.WIDEN_GRANT,
            status=RegistryChangeStatus.PENDING,
            payload__model=payload["model"],
            payload__pk=payload["pk"],
            **({"agent": to} if is_agent else {"role": to, "agent": None}),
        ).first()
        if waiting is not None:
            return waiting
        return registry_change_request(
            kind=RegistryChangeKind.WIDEN_GRANT,
            agent=to if is_agent else None,
            role=None if is_agent else to,
            by=by,
            payload=payload,
        )


def registry_change_settle(
    *, change_id, approved: bool, actor: str, reason: str = ""
) -> RegistryChange:
    """People decided (``approvals``): make the change (the agent active, the tier set, the
    grant made) or drop it; a rejected registration retires its agent. The policy-store
    version moves, so the gate sees it at the next request. A change no longer pending is
    left as it is. Runs in the caller's transaction."""
    with transaction.atomic():
        change = (
            RegistryChange.objects.select_for_update(of=("self",))
            .select_related("agent", "role")
            .get(pk=change_id)
        )
        if change.status != RegistryChangeStatus.PENDING:
            return change
        change.status = RegistryChangeStatus.APPROVED if approved else RegistryChangeStatus.REJECTED
        change.decided_at = timezone.now()
        change.decided_by = actor[:150]
        change.save(update_fields=["status", "decided_at", "decided_by"])
        audit.append(
            kind=f"registry_change_{change.status}",
            actor=actor,
            agent_id=change.agent_id,
            payload={"change_id": str(change.pk), "kind": change.kind,
                     "summary": change.summary, "reason": reason[:500]},
        )  # fmt: skip
        if approved:
            _change_apply(change)
            registry_changed()
        elif change.kind == RegistryChangeKind.REGISTER:
            _transition(
                agent=change.agent,
                target=AgentStatus.RETIRED,
                by=None,
                reason=f"registration rejected: {reason}"[:500],
            )
    return change


def _change_apply(change: RegistryChange) -> None:
    if change.kind == RegistryChangeKind.WIDEN_GRANT:
        model = Operation if change.payload["model"] == "operation" else Connector
        target = model.objects.get(pk=change.payload["pk"])
        grants.grant(target=target, to=change.agent or change.role)
        return
    agent = Agent.objects.select_for_update().get(pk=change.agent_id)
    if change.kind == RegistryChangeKind.RAISE_TIER:
        agent.risk_tier = change.payload["to"]
        agent.save(update_fields=["risk_tier", "updated_at"])
    elif agent.status == AgentStatus.PENDING:  # a registration; retired meanwhile: stays so
        agent.status = AgentStatus.ACTIVE
        agent.status_reason = "registration approved"
        agent.status_changed_at = timezone.now()
        agent.save(update_fields=["status", "status_reason", "status_changed_at", "updated_at"])


def _changes_cancel(*, agent: Agent, by) -> None:
    """The agent is retired: what still waited for it no longer needs anybody."""
    waiting = RegistryChange.objects.select_for_update().filter(
        agent=agent, status=RegistryChangeStatus.PENDING
    )
    for change in waiting:
        change.status = RegistryChangeStatus.CANCELLED
        change.decided_at = timezone.now()
        change.save(update_fields=["status", "decided_at"])
        audit.append(
            kind="registry_change_cancelled",
            actor=getattr(by, "username", "") or "system",
            agent_id=agent.pk,
            payload={"change_id": str(change.pk), "kind": change.kind},
        )
        signals.registry_change_closed.send(sender=RegistryChange, change=change)


# --- credentials ----------------------------------------------------------------------------


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def credential_issue(
    *,
    agent: Agent,
    by=None,
    name: str = "default",
    scopes: Iterable[str] | None = None,
    expires_at: datetime | None = None,
    rotated_from: Credential | None = None,
) -> tuple[Credential, str]:
    """Issue a token. Returns the credential and the token, which is never shown again."""
    if agent.status == AgentStatus.RETIRED:
        raise IllegalTransition(current=agent.status, target="credential_issue")
    scopes = list(scopes) if scopes is not None else [s.value for s in Scope]
    invalid = sorted(set(scopes) - set(Scope.values))
    if invalid:
        raise DomainError(ErrorCode.VALIDATION_FAILED, "Unknown scopes.", {"scopes": invalid})
    prefix = secrets.token_hex(6)
    token = f"{TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic(), set_actor(by):
        credential = Credential.objects.create(
            agent=agent,
            name=name,
            prefix=prefix,
            token_hash=token_digest(token),
            scopes=scopes,
            expires_at=expires_at,
            created_by=by,
            rotated_from=rotated_from,
        )
    return credential, token


def credential_rotate(
    *, credential: Credential, by=None, overlap: timedelta | None = None
) -> tuple[Credential, str]:
    """Issue a successor with the same scopes; the old token keeps working for ``overlap``."""
    if overlap is None:
        overlap = timedelta(seconds=settings.AUTONOMY_CREDENTIAL_ROTATION_OVERLAP_SECONDS)
    with transaction.atomic(), set_actor(by):
        old = Credential.objects.select_for_update().select_related("agent").get(pk=credential.pk)
        if old.state() != "active":
            raise IllegalTransition(current=old.state(), target="rotated")
        if hasattr(old, "rotated_to"):
            raise DomainError(
                ErrorCode.CONFLICT, "This credential was already rotated.", status_code=409
            )
        new, token = credential_issue(
            agent=old.agent, by=by, name=old.name, scopes=old.scopes, rotated_from=old
        )
        cutoff = timezone.now() + overlap
        if old.expires_at is None or old.expires_at > cutoff:
            old.expires_at = cutoff
            old.save(update_fields=["expires_at"])
    return new, token


def credential_revoke(*, credential: Credential, by=None, reason: str = "") -> Credential:
    """Revoke at once: the very next request with this token is refused."""
    with transaction.atomic(), set_actor(by):
        credential = Credential.objects.select_for_update().get(pk=credential.pk)
        if credential.revoked_at is None:
            credential.revoked_at = timezone.now()
            credential.revoked_reason = reason[:500]
            credential.save(update_fields=["revoked_at", "revoked_reason"])
    return credential


def _revoke_all(*, agent: Agent, reason: str) -> int:
    """Revoke the agent's own tokens and cut off its IdP tokens issued until now.

    The IdP cannot be told to revoke what it issued, so ``tokens_valid_after`` is the cutoff
    ``agents.oidc`` checks each IdP token's ``iat`` against. It moves even when no credential
    was live: an agent may authenticate with IdP tokens only.
    """
    now = timezone.now()
    locked = Agent.objects.select_for_update().get(pk=agent.pk)
    locked.tokens_valid_after = now
    locked.save(update_fields=["tokens_valid_after", "updated_at"])
    agent.tokens_valid_after = now
    # Each credential is saved on its own so that auditlog records every revocation.
    count = 0
    for credential in Credential.objects.select_for_update().filter(agent=agent, revoked_at=None):
        credential.revoked_at = now
        credential.revoked_reason = reason
        credential.save(update_fields=["revoked_at", "revoked_reason"])
        count += 1
    return count


def agent_credentials_revoke(*, agent: Agent, by=None, reason: str = "") -> int:
    """Revoke every live credential of an agent, IdP tokens issued so far included.

    Returns how many of the agent's own credentials were revoked.
    """
    with transaction.atomic(), set_actor(by):
        return _revoke_all(agent=agent, reason=reason[:500])


LAST_USED_RESOLUTION = timedelta(seconds=60)


def stored_token_check(*, token: str, kind: str, find):
    """The stored token behind a presented ``<kind>_<prefix>_<secret>``, live (not revoked,
    not expired), or a DomainError (401) saying why not. ``find(prefix)`` reads the stored
    token (an agent's Credential, a person's PersonalToken) or None. Its digest is compared
    in constant time even when nothing was found, so timing does not tell which prefixes
    exist. The one check behind both kinds of token."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != kind or not parts[1] or not parts[2]:
        raise DomainError(ErrorCode.CREDENTIAL_INVALID, "Malformed token.", status_code=401)
    stored = find(parts[1])
    expected = stored.token_hash if stored else token_digest("")
    if not hmac.compare_digest(expected, token_digest(token)) or stored is None:
        raise DomainError(ErrorCode.CREDENTIAL_INVALID, "Invalid token.", status_code=401)
    state = stored.state(timezone.now())
    if state == "revoked":
        raise DomainError(ErrorCode.CREDENTIAL_REVOKED, "This token was revoked.", status_code=401)
    if state == "expired":
        raise DomainError(ErrorCode.CREDENTIAL_EXPIRED, "This token has expired.", status_code=401)
    return stored


def stored_token_used(stored) -> None:
    """Stamp a token's last use at most once a minute, so that a busy caller does not turn
    reads into writes."""
    now = timezone.now()
    if stored.last_used_at is None or now - stored.last_used_at > LAST_USED_RESOLUTION:
        type(stored).objects.filter(pk=stored.pk).update(last_used_at=now)
        stored.last_used_at = now


def _credential_by_prefix(prefix: str) -> Credential | None:
    try:  # get(), not first(): no ORDER BY (credentials order by -created_at) to build
        return Credential.objects.select_related(
            "agent__service_user", "agent__business_unit", "agent__owner", "agent__role__group"
        ).get(prefix=prefix)
    except Credential.DoesNotExist:
        return None


def credential_authenticate(*, token: str) -> Credential:
    """Resolve a presented token to its live credential, or raise a DomainError saying why:
    one indexed lookup by prefix (``stored_token_check``), and the last-used stamp."""
    credential = stored_token_check(token=token, kind=TOKEN_PREFIX, find=_credential_by_prefix)
    if credential.agent.status == AgentStatus.RETIRED:
        raise DomainError(ErrorCode.AGENT_RETIRED, "This agent is retired.", status_code=401)
    stored_token_used(credential)
    return credential


# --- people (portal roles and IdP sign-in) --------------------------------------------------


def portal_roles_sync() -> None:
    """Create the portal role groups and give each exactly its permissions. Idempotent."""
    from django.contrib.auth.models import Permission

    from agents.portal_roles import PERMISSIONS, group_name

    for role, perms in PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=group_name(role))
        wanted = []
        for perm in perms:
            app_label, codename = perm.split(".")
            wanted.extend(
                Permission.objects.filter(content_type__app_label=app_label, codename=codename)
            )
        group.permissions.set(wanted)


def portal_roles_for_groups(groups: Iterable[str]) -> list[str]:
    """The portal roles an IdP user holds, from the configured group -> role map."""
    mapping = settings.AUTONOMY_OIDC_GROUP_ROLES
    if isinstance(groups, str):
        groups = [groups]
    return sorted({mapping[g] for g in groups if g in mapping})


_USERNAME_SAFE = re.compile(r"^[\w.@+-]+$")


def oidc_username(sub: str) -> str:
    """The local username of an IdP subject: readable when the sub is, else a digest of it.

    A digest keeps two long or odd subs (``auth0|...``) from colliding or failing Django's
    username rules.
    """
    if len(sub) <= 140 and _USERNAME_SAFE.match(sub):
        return f"oidc-{sub}"
    return f"oidc-{hashlib.sha256(sub.encode()).hexdigest()}"


def portal_user_strip_roles(*, sub: str) -> None:
    """Someone the IdP no longer puts in any mapped group loses every portal role at once."""
    from agents.portal_roles import PortalRole, group_name

    user = User.objects.filter(username=oidc_username(sub)).first()
    if user is None:
        return
    with transaction.atomic():
        user.groups.remove(*Group.objects.filter(name__in=[group_name(r) for r in PortalRole]))
        User.objects.filter(pk=user.pk).update(is_staff=False)


def portal_user_sync(*, claims: dict) -> AbstractBaseUser:
    """Create or update a person from IdP claims; their portal groups follow the IdP exactly."""
    from agents.portal_roles import PortalRole, group_name

    roles = portal_roles_for_groups(claims.get(settings.OIDC_GROUPS_CLAIM) or [])
    with transaction.atomic():
        user, created = User.objects.get_or_create(username=oidc_username(claims["sub"]))
        user.email = claims.get("email", "") or ""
        user.first_name = (claims.get("given_name") or "")[:150]
        user.last_name = (claims.get("family_name") or "")[:150]
        user.is_staff = bool(roles)
        # is_active stays the portal's own switch: someone an administrator deactivated here
        # remains out, whatever the IdP says (the sign-in callback refuses inactive users).
        if created:
            user.set_unusable_password()  # people from the IdP never sign in with a password
        user.save()
        portal_groups = Group.objects.filter(name__in=[group_name(r) for r in PortalRole])
        user.groups.remove(*portal_groups)
        user.groups.add(*Group.objects.filter(name__in=[group_name(r) for r in roles]))
    return user
