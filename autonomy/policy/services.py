"""Writing policies: validate against the generated schema, save, move the store version.

Every change that can alter a decision moves ``PolicyStoreState.version`` in the same
transaction, so each process notices on its next decision and recompiles.
"""

import time

from auditlog.context import set_actor
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest

from autonomy.errors import DomainError, ErrorCode
from autonomy.models import Policy, PolicyStoreState
from autonomy.policy import engine


def _bump_version() -> None:
    """version = max(version + 1, now in µs): strictly increasing under concurrent writers,
    and a bump that was rolled back is never reissued to later, different content (a
    process may have compiled that uncommitted state and would otherwise trust it)."""
    now = time.time_ns() // 1000
    with transaction.atomic():
        bump = Greatest(F("version") + 1, Value(now))
        if PolicyStoreState.objects.filter(pk=1).update(version=bump):
            return
        _, created = PolicyStoreState.objects.get_or_create(pk=1, defaults={"version": now})
        if not created:
            PolicyStoreState.objects.filter(pk=1).update(version=bump)


def may_change_policy(*, user) -> bool:
    """Policy owners: a signed-in, active person (never an agent's service user) with the
    permission to change policies. Granting a standing approval and acting on a suggestion
    from history take the same authority as a policy change."""
    return (
        bool(getattr(user, "is_authenticated", False) and user.is_active)
        and not hasattr(user, "agent")
        and user.has_perm("autonomy.change_policy")
    )


def registry_changed() -> None:
    """Call in the transaction that changes agents, roles, units, connectors or operations."""
    _bump_version()


def _refuse_invalid(text: str) -> None:
    errors = engine.validate(text)
    if errors:
        raise DomainError(
            ErrorCode.VALIDATION_FAILED,
            "The policy is not valid Cedar for this registry.",
            {"fields": {"text": errors}},
        )


def policy_save(
    *,
    policy: Policy | None = None,
    name: str,
    text: str,
    description: str = "",
    enabled: bool,
    by=None,
) -> Policy:
    """Create or update a policy; an invalid text raises and saves nothing."""
    _refuse_invalid(text)
    author = by if getattr(by, "is_authenticated", False) else None
    with transaction.atomic(), set_actor(author):
        policy = policy if policy is not None else Policy()
        if Policy.objects.filter(name=name).exclude(pk=policy.pk).exists():
            raise DomainError(ErrorCode.CONFLICT, f"A policy named {name!r} already exists.")
        stored = (
            Policy.objects.select_for_update()
            .filter(pk=policy.pk)
            .values_list("text", "version")
            .first()
            if policy.pk is not None
            else None
        )
        if stored is None:
            policy.version, policy.author = 1, author
        elif stored[0] != text:
            policy.version, policy.author = stored[1] + 1, author
        else:
            policy.version = stored[1]
        policy.name, policy.text, policy.description = name, text, description
        policy.enabled = enabled
        policy.save()
        _bump_version()
    return policy


def policy_set_enabled(*, policy: Policy, enabled: bool, by=None) -> Policy:
    """Switch a policy on or off. Enabling re-validates: the registry may have moved since."""
    if enabled:
        _refuse_invalid(policy.text)
    author = by if getattr(by, "is_authenticated", False) else None
    with transaction.atomic(), set_actor(author):
        policy.enabled = enabled
        policy.save(update_fields=["enabled", "updated_at"])
        _bump_version()
    return policy


def policy_delete(*, policy: Policy, by=None) -> None:
    """Remove a policy; processes stop enforcing it on their next decision."""
    author = by if getattr(by, "is_authenticated", False) else None
    with transaction.atomic(), set_actor(author):
        policy.delete()
        _bump_version()
