"""Writes of shared memory: the ``memory`` connector type (what agents' allowed actions do),
people's corrections, deletions and purges by provenance (audited), and the expiry prune.

Agents' reads and writes are audited as their actions are (the decision record carries the
parameters, the outcome record the answer); people's changes append their own records."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from autonomy import audit
from autonomy.connectors import receipts
from autonomy.connectors.errors import ConnectorError
from autonomy.errors import DomainError, ErrorCode
from autonomy.memory import selectors
from autonomy.memory.selectors import MemoryScope, Reader
from autonomy.models import DataClass, MemoryEntry, Operation

SEARCH_LIMIT = 50


def _moment(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def entry_answer(entry: MemoryEntry) -> dict:
    """An entry as an agent's read returns it."""
    return {
        "found": True,
        "key": entry.key,
        "scope": str(selectors.scope_named(entry)),
        "value": entry.value,
        "sensitivity": entry.sensitivity,
        "updated_at": _moment(entry.updated_at),
        "expires_at": _moment(entry.expires_at),
    }


def memory_execute(*, operation: Operation, params: dict, idempotency_key: str) -> dict:
    """The connector type of the built-in ``memory`` connector: runs ``memory.<slug>`` for
    the action ``idempotency_key`` names, in the scopes of its agent (``selectors``)."""
    reader = selectors.reader_of(action_id=idempotency_key)
    if reader is None:
        raise ConnectorError("Shared memory is reached only through an agent's action.")
    kind = (operation.config or {}).get("memory", operation.slug)
    scope = params.get("scope") or None
    now = timezone.now()
    if kind == "read":
        entry = selectors.memory_lookup(reader=reader, key=params["key"], scope=scope, now=now)
        return entry_answer(entry) if entry else {"found": False, "key": params["key"]}
    if kind == "search":
        limit = min(int(params.get("limit") or 20), SEARCH_LIMIT)
        entries = selectors.memory_search(
            reader=reader, prefix=params.get("prefix", ""), scope=scope, limit=limit, now=now
        )
        return {"entries": [entry_answer(e) for e in entries], "count": len(entries)}
    if kind in ("write", "delete"):
        return _write_once(
            kind=kind, operation=operation, params=params, key=idempotency_key, reader=reader,
            now=now,
        )  # fmt: skip
    raise ConnectorError(f"The memory connector has no operation {kind!r}.")


def _write_once(*, kind, operation, params, key, reader: Reader, now) -> dict:
    """A write or delete and its receipt in one transaction: a redelivered action finds the
    receipt and answers from it, so it never overwrites a later write."""
    fields = selectors.scope_of(reader=reader, scope=params.get("scope") or MemoryScope.UNIT)
    if fields is None:
        raise ConnectorError(
            "The template scope is only there for a workflow run's steps; name the unit or "
            "the role scope."
        )
    with transaction.atomic():
        done = receipts.claim(operation=operation, params=params, idempotency_key=key)
        if done is not None:
            return receipts.replay_or_refuse(done, system="shared memory")
        if kind == "write":
            result = _upsert(fields=fields, params=params, reader=reader, action_id=key, now=now)
        else:
            deleted, _ = MemoryEntry.objects.filter(**fields, key=params["key"]).delete()
            result = {"deleted": bool(deleted), "key": params["key"]}
        receipts.finish(idempotency_key=key, result=result)
    return result


def _upsert(*, fields: dict, params: dict, reader: Reader, action_id, now) -> dict:
    ttl = int(params.get("ttl_seconds") or settings.AUTONOMY_MEMORY_DEFAULT_TTL_SECONDS)
    ttl = min(ttl, settings.AUTONOMY_MEMORY_MAX_TTL_SECONDS)
    values = {
        "value": params["value"],
        "sensitivity": params.get("sensitivity") or DataClass.INTERNAL,
        "agent_id": reader.agent_id,
        "action_id": action_id,
        "action_template_key": reader.template_key,
        "written_by": None,
        "updated_at": now,
        "expires_at": now + timedelta(seconds=ttl),
    }
    # An UPDATE first, then an INSERT in a savepoint: two writers of one new key both end
    # with one entry (the later UPDATE wins), never an IntegrityError for the agent.
    for _ in range(2):
        if MemoryEntry.objects.filter(**fields, key=params["key"]).update(**values):
            created = False
            break
        try:
            with transaction.atomic():
                MemoryEntry.objects.create(**fields, key=params["key"], created_at=now, **values)
            created = True
            break
        except IntegrityError:
            continue
    else:
        raise ConnectorError("The entry changed under this write; ask again.")
    return {
        "written": True,
        "created": created,
        "key": params["key"],
        "scope": str(params.get("scope") or MemoryScope.UNIT),
        "expires_at": _moment(values["expires_at"]),
    }


# --- people ----------------------------------------------------------------------------------


def _by(user) -> str:
    return getattr(user, "username", "") or "system"


def _described(entry: MemoryEntry) -> dict:
    return {
        "entry": entry.pk,
        "scope": entry.scope,
        "key": entry.key,
        "agent_id": str(entry.agent_id) if entry.agent_id else None,
        "action_id": str(entry.action_id) if entry.action_id else None,
    }


def memory_correct(
    *,
    entry: MemoryEntry,
    by,
    value=None,
    sensitivity: str | None = None,
    expires_at: datetime | None = None,
) -> MemoryEntry:
    """A person corrects an entry: its value, sensitivity or expiry. The agent that wrote it
    stays its provenance; ``written_by`` names the person."""
    if sensitivity is not None and sensitivity not in DataClass.values:
        raise DomainError(ErrorCode.VALIDATION_FAILED, f"No sensitivity {sensitivity!r}.")
    before = {"value": entry.value, "sensitivity": entry.sensitivity,
              "expires_at": _moment(entry.expires_at)}  # fmt: skip
    with transaction.atomic():
        if value is not None:
            entry.value = value
        if sensitivity is not None:
            entry.sensitivity = sensitivity
        if expires_at is not None:
            entry.expires_at = expires_at
        entry.written_by = by
        entry.updated_at = timezone.now()
        entry.save()
        audit.append(
            kind="memory_corrected",
            actor=_by(by),
            agent_id=entry.agent_id,
            payload={**_described(entry), "before": before},
        )
    return entry


def memory_delete(*, entry: MemoryEntry, by) -> None:
    """A person deletes one entry."""
    with transaction.atomic():
        audit.append(
            kind="memory_deleted", actor=_by(by), agent_id=entry.agent_id, payload=_described(entry)
        )
        entry.delete()


def memory_purge(*, agent, by, reason: str = "") -> int:
    """Delete every entry ``agent`` wrote last (a poisoned memory: an agent found
    compromised), in one step, with one audit record naming the keys. Returns how many."""
    with transaction.atomic():
        entries = list(
            MemoryEntry.objects.select_for_update()
            .filter(agent=agent)
            .order_by("pk")
            .values_list("pk", "key")
        )
        MemoryEntry.objects.filter(pk__in=[pk for pk, _ in entries]).delete()
        audit.append(
            kind="memory_purged",
            actor=_by(by),
            agent_id=agent.pk,
            payload={
                "agent": agent.slug,
                "count": len(entries),
                "keys": [key for _, key in entries][:1000],
                "reason": reason,
            },
        )
    return len(entries)


def memory_prune(*, now: datetime | None = None) -> int:
    """Celery beat: delete expired entries (reads never return them anyway)."""
    return MemoryEntry.objects.filter(expires_at__lte=now or timezone.now()).delete()[0]
