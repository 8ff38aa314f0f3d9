"""Reads of shared memory, and THE scoping rule: an agent reads and writes only the entries
of its own business unit, its own role, or the workflow template of the run it acts in.
Every other entry is invisible to it: a read answers as for a key nobody wrote (no oracle).
Expired entries are never returned, whatever the prune has done yet."""

from dataclasses import dataclass
from datetime import datetime

from django.db import models
from django.db.models import Q, QuerySet
from django.utils import timezone

from autonomy.models import ActionRequest, DataClass, MemoryEntry


class MemoryScope(models.TextChoices):
    """The scopes an agent names in its parameters."""

    UNIT = "unit", "The agent's business unit"
    ROLE = "role", "The agent's role"
    TEMPLATE = "template", "The workflow template of the run it acts in"


# Most specific first: where a read without a scope looks, in order.
SCOPE_ORDER = (MemoryScope.TEMPLATE, MemoryScope.ROLE, MemoryScope.UNIT)


# Values people without the right to change entries see in place of a sensitive one.
MASKED = "•••"
SENSITIVE = frozenset({DataClass.CONFIDENTIAL, DataClass.RESTRICTED})


@dataclass(frozen=True)
class Reader:
    """Whose memory an action sees: its agent's unit and role, and the template its workflow
    step acts for ("" outside a run)."""

    agent_id: object
    business_unit_id: int
    role_id: int
    template_key: str = ""


def reader_of(*, action_id) -> Reader | None:
    """The reader behind an action (the memory connector knows an action by its id): one
    query."""
    row = (
        ActionRequest.objects.filter(pk=action_id)
        .order_by()
        .values_list("agent_id", "agent__business_unit_id", "agent__role_id", "template_key")
        .first()
    )
    return Reader(*row) if row else None


def scope_of(*, reader: Reader, scope: str) -> dict | None:
    """THE RULE: the fields naming ``scope`` for ``reader``, or None when it has no such
    scope (the template scope outside a workflow run, or a scope that does not exist)."""
    if scope == MemoryScope.UNIT:
        return {"business_unit_id": reader.business_unit_id, "role_id": None, "template_key": ""}
    if scope == MemoryScope.ROLE:
        return {"business_unit_id": None, "role_id": reader.role_id, "template_key": ""}
    if scope == MemoryScope.TEMPLATE and reader.template_key:
        return {"business_unit_id": None, "role_id": None, "template_key": reader.template_key}
    return None


def _visible(reader: Reader, scopes) -> Q | None:
    where = None
    for scope in scopes:
        fields = scope_of(reader=reader, scope=scope)
        if fields is not None:
            where = Q(**fields) if where is None else where | Q(**fields)
    return where


def scope_named(entry: MemoryEntry) -> str:
    """The scope of an entry as agents name it."""
    if entry.business_unit_id:
        return MemoryScope.UNIT
    if entry.role_id:
        return MemoryScope.ROLE
    return MemoryScope.TEMPLATE


def memory_lookup(
    *, reader: Reader, key: str, scope: str | None = None, now: datetime | None = None
) -> MemoryEntry | None:
    """The live entry ``key`` in ``scope``, or without one, in the most specific of the
    reader's scopes that has it (template, then role, then unit): one query."""
    where = _visible(reader, [scope] if scope else SCOPE_ORDER)
    if where is None:
        return None
    found = {
        scope_named(entry): entry
        for entry in MemoryEntry.objects.filter(
            where, key=key, expires_at__gt=now or timezone.now()
        )
    }
    return next((found[s] for s in SCOPE_ORDER if s in found), None)


def memory_search(
    *,
    reader: Reader,
    prefix: str = "",
    scope: str | None = None,
    limit: int = 20,
    now: datetime | None = None,
) -> list[MemoryEntry]:
    """Live entries whose key starts with ``prefix``, in ``scope`` or all the reader's
    scopes, by key: one query."""
    where = _visible(reader, [scope] if scope else SCOPE_ORDER)
    if where is None:
        return []
    entries = MemoryEntry.objects.filter(where, expires_at__gt=now or timezone.now())
    if prefix:
        entries = entries.filter(key__startswith=prefix)
    return list(entries.order_by("key", "pk")[:limit])


def entries_for_people() -> QuerySet[MemoryEntry]:
    """Every entry, with what the portal and the people's API show beside it."""
    return MemoryEntry.objects.select_related(
        "business_unit", "role", "agent", "written_by"
    ).order_by("key", "pk")


def value_shown(*, entry: MemoryEntry, user) -> object:
    """The value as ``user`` may see it: sensitive values are masked for people who may not
    change entries (viewers, approvers, auditors)."""
    if entry.sensitivity in SENSITIVE and not user.has_perm("autonomy.change_memoryentry"):
        return MASKED
    return entry.value
