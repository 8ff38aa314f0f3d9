"""Writing policies: validate against the generated schema, save, move the store version.

Every change that can alter a decision moves ``PolicyStoreState.version`` in the same
transaction, so each process notices on its next decision and recompiles.
"""

import hashlib
import time

from auditlog.context import set_actor
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from autonomy import audit
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import Policy, PolicyChange, PolicySetVersion, PolicyStoreState, PolicyVersion
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


def _author(by):
    """The person recorded for a change: ``by`` when signed in, else nobody (the system)."""
    return by if getattr(by, "is_authenticated", False) else None


def _record(
    *,
    policy: Policy,
    number: int,
    change: str,
    author,
    note: str = "",
    source_number: int | None = None,
    enabled: bool | None = None,
) -> PolicyVersion:
    """Write the policy's version ``number`` and the policy set it leaves in force, and chain
    both into the audit trail: the one place policy history is written, always inside the
    transaction of the change (after ``_bump_version``, whose row lock orders concurrent
    writers, so each set version sees every change committed before it)."""
    now = timezone.now()
    author_name = author.get_username() if author is not None else ""
    version = PolicyVersion.objects.create(
        policy=policy,
        policy_key=policy.pk,
        policy_name=policy.name,
        number=number,
        text=policy.text,
        description=policy.description,
        enabled=policy.enabled if enabled is None else enabled,
        change=change,
        source_number=source_number,
        author=author,
        author_name=author_name,
        created_at=now,
        note=note,
        content_hash=hashlib.sha256(policy.text.encode()).hexdigest(),
    )
    in_force = dict(Policy.objects.filter(enabled=True).order_by("pk").values_list("pk", "version"))
    if change == PolicyChange.DELETED:
        in_force.pop(policy.pk, None)
    last = PolicySetVersion.objects.order_by("-number").values_list("number", flat=True).first()
    summary = f"{policy.name} v{number}: {PolicyChange(change).label.lower()}"
    if source_number is not None:
        summary += f" to v{source_number}"
    policy_set = PolicySetVersion.objects.create(
        number=(last or 0) + 1,
        created_at=now,
        author=author,
        author_name=author_name,
        summary=summary[:300],
        policies={str(pk): n for pk, n in in_force.items()},
    )
    audit.append(
        kind="policy_version",
        actor=author_name,
        payload={
            "policy_id": policy.pk,
            "policy": policy.name,
            "version": number,
            "change": change,
            "source_version": source_number,
            "enabled": version.enabled,
            "content_hash": version.content_hash,
            "note": note,
            "policy_set_version": policy_set.number,
        },
    )
    return version


def _change_of(stored: tuple | None, *, name, text, description, enabled) -> str | None:
    """What a save changes, or None when it changes nothing."""
    if stored is None:
        return PolicyChange.CREATED
    if stored[1:4] != (name, text, description):
        return PolicyChange.EDITED
    if stored[4] != enabled:
        return PolicyChange.ENABLED if enabled else PolicyChange.DISABLED
    return None


def policy_save(
    *,
    policy: Policy | None = None,
    name: str,
    text: str,
    description: str = "",
    enabled: bool,
    by=None,
    change: str | None = None,
    note: str = "",
    source_number: int | None = None,
) -> Policy:
    """Create or update a policy; an invalid text raises and saves nothing. A save that
    changes anything records the next version (``change`` names it when the caller knows
    better than "edited": a rollback, a promotion); one that changes nothing records none."""
    change = PolicyChange(change) if change is not None else None  # refuses an unknown kind
    _refuse_invalid(text)
    author = _author(by)
    with transaction.atomic(), set_actor(author):
        policy = policy if policy is not None else Policy()
        if Policy.objects.filter(name=name).exclude(pk=policy.pk).exists():
            raise DomainError(ErrorCode.CONFLICT, f"A policy named {name!r} already exists.")
        stored = (
            Policy.objects.select_for_update()
            .filter(pk=policy.pk)
            .values_list("version", "name", "text", "description", "enabled")
            .first()
            if policy.pk is not None
            else None
        )
        found = _change_of(stored, name=name, text=text, description=description, enabled=enabled)
        if stored is None:
            policy.version, policy.author = 1, author
        elif found is not None:
            policy.version = stored[0] + 1
            if stored[2] != text:
                policy.author = author
        else:
            policy.version = stored[0]
        policy.name, policy.text, policy.description = name, text, description
        policy.enabled = enabled
        policy.save()
        _bump_version()
        if found is not None:
            _record(
                policy=policy,
                number=policy.version,
                change=change or found,
                author=author,
                note=note,
                source_number=source_number,
            )
    return policy


def policy_set_enabled(*, policy: Policy, enabled: bool, by=None, note: str = "") -> Policy:
    """Switch a policy on or off. Enabling re-validates: the registry may have moved since."""
    if enabled:
        _refuse_invalid(policy.text)
    author = _author(by)
    with transaction.atomic(), set_actor(author):
        stored = (
            Policy.objects.select_for_update()
            .filter(pk=policy.pk)
            .values_list("version", "enabled")
            .get()
        )
        policy.enabled = enabled
        if stored[1] == enabled:
            policy.version = stored[0]
            return policy
        policy.version = stored[0] + 1
        policy.save(update_fields=["enabled", "version", "updated_at"])
        _bump_version()
        _record(
            policy=policy,
            number=policy.version,
            change=PolicyChange.ENABLED if enabled else PolicyChange.DISABLED,
            author=author,
            note=note,
        )
    return policy


def policy_delete(*, policy: Policy, by=None, note: str = "") -> None:
    """Remove a policy; processes stop enforcing it on their next decision. Its history
    stays, closed by a "deleted" version."""
    author = _author(by)
    with transaction.atomic(), set_actor(author):
        stored = Policy.objects.select_for_update().filter(pk=policy.pk)
        number = stored.values_list("version", flat=True).get() + 1
        _bump_version()
        _record(
            policy=policy,
            number=number,
            change=PolicyChange.DELETED,
            author=author,
            note=note,
            enabled=False,
        )
        policy.delete()


def policy_rollback(*, policy: Policy, to_version: int, by=None, note: str = "") -> Policy:
    """Make ``policy`` say again what its version ``to_version`` said (name, description,
    text, enabled), through ``policy_save``: today's validation applies, so a text today's
    registry no longer accepts is refused. The next decision uses the restored text."""
    source = (
        PolicyVersion.objects.filter(policy_key=policy.pk, number=to_version)
        .exclude(change=PolicyChange.DELETED)
        .first()
    )
    if source is None:
        raise DomainError(
            ErrorCode.POLICY_VERSION_UNKNOWN,
            f"Policy {policy.name!r} has no version {to_version} to roll back to.",
            {"policy_id": policy.pk, "version": to_version},
            status_code=404,
        )
    current = (
        Policy.objects.filter(pk=policy.pk)
        .values_list("name", "text", "description", "enabled")
        .first()
    )
    if current == (source.policy_name, source.text, source.description, source.enabled):
        raise DomainError(
            ErrorCode.CONFLICT,
            f"Policy {policy.name!r} already says what version {to_version} said.",
            {"policy_id": policy.pk, "version": to_version},
            status_code=409,
        )
    return policy_save(
        policy=policy,
        name=source.policy_name,
        text=source.text,
        description=source.description,
        enabled=source.enabled,
        by=by,
        change=PolicyChange.ROLLED_BACK,
        note=note or f"Rolled back to version {to_version}.",
        source_number=to_version,
    )
