"""The audit trail as a transparency log: keyed records, appended without a global lock,
sealed into a hash chain in batches, verified against the heads published outside the
database.

- ``append``: one INSERT in the caller's transaction. The record carries an HMAC-SHA256 (its
  ``mac``) over its canonical content, with a key that is not in the database
  (``autonomy.audit.keys``), and no ``seq`` yet: no shared row is read or written, so
  writers never queue behind each other. A savepoint that rolls back takes its records with
  it, like any other row.
- ``seal``: the one sealer at a time (it locks the head row; nothing else does) gives the
  committed unsealed records, in id order, the next sequence numbers, chains them (each hash
  covers seq, prev_hash, key id, MAC and content) and moves the head: four statements per
  batch. A record whose transaction commits late is simply sealed later. Celery beat runs it
  every ``AUTONOMY_AUDIT_SEAL_SECONDS``; readers that follow trail order seal first.
- ``verify_chain``: every record's MAC, the chain from genesis, the head row, and the signed
  checkpoints published outside the database (``autonomy.audit.checkpoint``), so rewriting
  records and head together, or cutting the tail and moving the head back, is named.
"""

import functools
import hashlib
import hmac
import json
import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, OperationalError, connections, transaction
from django.db.models import F
from django.utils import timezone

from autonomy.audit import keys
from autonomy.models import AuditHead, AuditRecord

GENESIS_HASH = "0" * 64
HEAD_PK = 1
SEAL_BATCH = 1000


# --- canonical form -------------------------------------------------------------------------


# Types that are their own plain form, checked by exact type before anything else: most of a
# payload's values, which then cost no call (a gate decision's payload is ~50 values).
_AS_IS = frozenset({str, int, bool, type(None)})


def plain(value: Any) -> Any:
    """JSON-native form of ``value``, identical after a round trip through any JSON column.

    Integral floats become ints because PostgreSQL's jsonb prints ``1e+20`` back as an integer.
    """
    kind = type(value)
    if kind in _AS_IS:
        return value
    if kind is dict:
        return {
            key if type(key) is str else str(key): item if type(item) in _AS_IS else plain(item)
            for key, item in value.items()
        }
    if kind is list:
        return [item if type(item) in _AS_IS else plain(item) for item in value]
    return _plain(value)


def _plain(value: Any) -> Any:
    """``plain`` of anything but the exact types its first lines take."""
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    raise TypeError(f"cannot put a {type(value).__name__} into the audit trail")


def canonical_json(value: Any) -> str:
    return _dumps(plain(value))


def _dumps(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _content(record: AuditRecord) -> dict:
    """The fields a record's MAC covers, but its payload (spliced in as text)."""
    return {
        "action_id": None if record.action_id is None else str(record.action_id),
        "actor": record.actor,
        "agent_id": None if record.agent_id is None else str(record.agent_id),
        "created_at": record.created_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "key_id": record.key_id,
        "kind": record.kind,
        "payload": None,  # spliced in below, in its sorted place
    }


def _text(fields: dict, payload_json: str) -> bytes:
    """Canonical JSON (sorted keys, no spaces) of ``fields`` with the payload's canonical text
    in place of its ``null``: JSON's encoding is compositional, so this gives the same bytes
    as encoding the whole object at once, without encoding the payload twice."""
    head, tail = _dumps(fields).split('"payload":null', 1)
    return f'{head}"payload":{payload_json}{tail}'.encode()


def record_mac(record: AuditRecord, key: bytes, *, payload_json: str | None = None) -> str:
    """HMAC-SHA256 of the record's content (not its place in the chain) under ``key``."""
    if payload_json is None:
        payload_json = canonical_json(record.payload)
    return hmac.new(key, _text(_content(record), payload_json), hashlib.sha256).hexdigest()


def record_hash(record: AuditRecord, *, payload_json: str | None = None) -> str:
    """The chain hash a sealed record must carry: SHA-256 over its seq, ``prev_hash``, MAC
    and content. ``payload_json``: the payload's ``canonical_json``, if the caller has it."""
    if payload_json is None:
        payload_json = canonical_json(record.payload)
    fields = {**_content(record), "mac": record.mac, "prev_hash": record.prev_hash}
    fields["seq"] = record.seq
    return hashlib.sha256(_text(fields, payload_json)).hexdigest()


# --- appending ------------------------------------------------------------------------------


def _uuid(value) -> uuid.UUID | None:
    if value is None or type(value) is uuid.UUID:
        return value
    return uuid.UUID(str(value))


def append(
    *, kind: str, payload: dict, actor: str = "", agent_id=None, action_id=None
) -> AuditRecord:
    """Add one record to the trail, inside the caller's transaction: a single INSERT of the
    record and its MAC. It is sealed into the chain (given its ``seq``) after it commits."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise transaction.TransactionManagementError(
            "audit.append() must run inside the transaction that makes the change it records"
        )
    payload = plain(payload)
    key_id, key = keys.mac_key()
    record = AuditRecord(
        created_at=timezone.now(),
        kind=kind,
        actor=actor or "",
        agent_id=_uuid(agent_id),
        action_id=_uuid(action_id),
        payload=payload,
        key_id=key_id,
    )
    record.mac = record_mac(record, key, payload_json=_dumps(payload))
    if connection.features.can_return_rows_from_bulk_insert:
        AuditRecord.objects.bulk_create([record])  # one INSERT ... RETURNING, no signals
    else:  # an old SQLite: to read the key back
        record.save(force_insert=True)
    return record


# --- sealing --------------------------------------------------------------------------------


def seal(*, wait: bool = True, batch_size: int = SEAL_BATCH) -> int:
    """Chain every committed unsealed record, in id order, onto the head; return how many.

    One sealer at a time: it locks the head row (on SQLite, the database's write lock). With
    ``wait=False`` (readers that seal before they read) it returns at once when another
    sealer holds the lock: that one is sealing the same records.
    """
    total = 0
    if not AuditRecord.objects.filter(seq__isnull=True).exists():  # one indexed look
        return total
    while True:
        try:
            with transaction.atomic():
                head = _lock_head(wait=wait)
                if head is None:
                    return total
                sealed = _seal_batch(head, batch_size)
        except OperationalError:
            if wait:
                raise
            return total  # SQLite's write lock was busy: another writer is at work
        total += sealed
        if sealed < batch_size:
            return total


def _lock_head(*, wait: bool) -> AuditHead | None:
    """The head row, locked for this transaction; None if ``wait`` is off and another sealer
    holds it. A missing row (a new or flushed database) is made at the last sealed record."""
    features = transaction.get_connection().features
    heads = AuditHead.objects.filter(pk=HEAD_PK)
    if features.has_select_for_update:  # PostgreSQL: only sealers ever lock this row
        skip = not wait and features.has_select_for_update_skip_locked
        head = heads.select_for_update(skip_locked=skip).first()
        if head is not None:
            return head
        if skip and heads.exists():
            return None  # another sealer holds it
    elif heads.update(seq=F("seq")):  # SQLite: a write first takes the database's write lock
        return heads.get()
    last = AuditRecord.objects.filter(seq__isnull=False).order_by("-seq").first()
    try:
        with transaction.atomic():
            return AuditHead.objects.create(
                pk=HEAD_PK, seq=last.seq if last else 0, hash=last.hash if last else GENESIS_HASH
            )
    except IntegrityError:  # another sealer made it first
        return heads.select_for_update().get() if wait else None


def _seal_batch(head: AuditHead, batch_size: int) -> int:
    """Seal up to ``batch_size`` records after ``head``: read them, one UPDATE giving each its
    seq and hashes, one UPDATE of the head."""
    records = list(AuditRecord.objects.filter(seq__isnull=True).order_by("id")[:batch_size])
    if not records:
        return 0
    seq, prev_hash, rows = head.seq, head.hash, []
    for record in records:
        seq += 1
        record.seq, record.prev_hash = seq, prev_hash
        record.hash = prev_hash = record_hash(record)
        rows.extend((record.pk, seq, record.prev_hash, record.hash))
    connection = transaction.get_connection()
    with connection.cursor() as cursor:
        cursor.execute(_seal_sql(connection.alias, len(records)), rows)
    AuditHead.objects.filter(pk=HEAD_PK).update(seq=seq, hash=prev_hash)
    return len(records)


_SEAL_ROW = "(CAST(%s AS BIGINT), CAST(%s AS BIGINT), %s, %s)"


def _seal_sql(alias: str, count: int) -> str:
    """One UPDATE giving ``count`` records their seq, prev_hash and hash, from a VALUES list
    (the ORM's ``bulk_update`` builds a CASE per field, quadratic in the batch)."""
    head, tail = _seal_sql_around(alias)
    return f"{head}{', '.join([_SEAL_ROW] * count)}{tail}"


@functools.cache
def _seal_sql_around(alias: str) -> tuple[str, str]:
    quote = connections[alias].ops.quote_name
    meta = AuditRecord._meta
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    seq, prev_hash, hash_ = (quote(meta.get_field(f).column) for f in ("seq", "prev_hash", "hash"))
    return (
        "WITH sealed (id, seq, prev_hash, hash) AS (VALUES ",
        f") UPDATE {table} SET {seq} = sealed.seq, {prev_hash} = sealed.prev_hash, "
        f"{hash_} = sealed.hash FROM sealed WHERE {table}.{pk} = sealed.id",
    )


def head() -> AuditHead | None:
    """The sealed chain's head row as stored (None before the first seal)."""
    return AuditHead.objects.filter(pk=HEAD_PK).first()
