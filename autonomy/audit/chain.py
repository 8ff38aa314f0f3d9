"""The hash chain: appending a record and verifying the whole chain.

A record's hash is SHA-256 over a canonical JSON of its content and the previous record's
hash, so editing, removing, inserting or moving any record breaks the chain at that point.
"""

import functools
import hashlib
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.utils import timezone

from autonomy.models import AuditHead, AuditRecord

GENESIS_HASH = "0" * 64
HEAD_PK = 1


# --- hashing --------------------------------------------------------------------------------


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


def record_hash(record: AuditRecord, *, payload_json: str | None = None) -> str:
    """The hash a record must carry, computed from its content and ``prev_hash``.
    ``payload_json``: the payload's ``canonical_json``, when the caller already has it
    (``append`` does), so it is not built a second time.

    The hashed text is the canonical JSON (sorted keys, no spaces) of the record's fields;
    JSON's encoding is compositional, so splicing the payload's canonical text in gives the
    same bytes as encoding the whole object at once."""
    fields = {
        "action_id": None if record.action_id is None else str(record.action_id),
        "actor": record.actor,
        "agent_id": None if record.agent_id is None else str(record.agent_id),
        "created_at": record.created_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "kind": record.kind,
        "payload": None,  # spliced in below, in its sorted place
        "prev_hash": record.prev_hash,
        "seq": record.seq,
    }
    if payload_json is None:
        payload_json = canonical_json(record.payload)
    head, tail = _dumps(fields).split('"payload":null', 1)
    text = f'{head}"payload":{payload_json}{tail}'
    return hashlib.sha256(text.encode()).hexdigest()


def _dumps(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


# --- appending ------------------------------------------------------------------------------


def _uuid(value) -> uuid.UUID | None:
    if value is None or type(value) is uuid.UUID:
        return value
    return uuid.UUID(str(value))


def _locked_head() -> AuditHead:
    head = AuditHead.objects.select_for_update().filter(pk=HEAD_PK).first()
    if head is not None:
        return head
    # The row is gone (a test flush): recreate it at the last record. Concurrent first appends
    # race to insert it; the loser's insert waits for the winner, fails, and locks its row.
    last = AuditRecord.objects.order_by("-seq").first()
    try:
        with transaction.atomic():
            return AuditHead.objects.create(
                pk=HEAD_PK, seq=last.seq if last else 0, hash=last.hash if last else GENESIS_HASH
            )
    except IntegrityError:
        return AuditHead.objects.select_for_update().get(pk=HEAD_PK)


def append(
    *, kind: str, payload: dict, actor: str = "", agent_id=None, action_id=None
) -> AuditRecord:
    """Chain one record onto the trail, inside the caller's transaction.

    The head row stays locked until that transaction ends, so append as late as you can, or
    inside ``deferred()``, which writes the block's records together at its end. Three
    statements: move and lock the head (``UPDATE ... RETURNING``: concurrent writers queue
    on its row lock on PostgreSQL, on the database write lock on SQLite), insert the
    record, store its hash in the head.
    """
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise transaction.TransactionManagementError(
            "audit.append() must run inside the transaction that makes the change it records"
        )
    # Everything that can refuse the record is checked before the head moves, so a refused
    # record never leaves a gap in the sequence.
    payload = plain(payload)
    record = AuditRecord(
        kind=kind,
        actor=actor or "",
        agent_id=_uuid(agent_id),
        action_id=_uuid(action_id),
        payload=payload,
    )
    entry = _Entry(record, _dumps(payload))  # the payload's JSON once, for its hash
    pending = _PENDING.get()
    if pending is None:
        _write(connection, [entry])
    else:  # written at the end of ``deferred``, unless its savepoint rolls back
        transaction.on_commit(entry)
        pending.append(entry)
    return record


# The records appended in the ``deferred()`` block open in this context, if any.
_PENDING: ContextVar[list | None] = ContextVar("autonomy_audit_pending", default=None)


@contextmanager
def deferred() -> Iterator[None]:
    """Inside the caller's transaction: records appended in this block are chained and
    written together when it ends (three statements for all of them). If the block raises,
    none is written and the innermost transaction around it is marked to roll back.

    The head row is then locked at the end of the block, not at the first append, so a
    transaction that appends and then locks other rows (a workflow step's outcome, then the
    next step's gate request and its usage rows) never holds the head while it waits for
    them. Holding it while waiting made two workers deadlock: one held the head and waited
    for the usage row the other held while it waited for the head. End the block at the end
    of the transaction. A record appended in a savepoint that is rolled back is not written.
    Nested blocks leave the writing to the outermost one.
    """
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise transaction.TransactionManagementError(
            "audit.deferred() must run inside a transaction"
        )
    if _PENDING.get() is not None:
        yield
        return
    pending: list[_Entry] = []
    token = _PENDING.set(pending)
    try:
        yield
    except BaseException:
        transaction.set_rollback(True)
        raise
    finally:
        _PENDING.reset(token)
    # Each record registered a (do-nothing) commit hook when it was appended; Django drops
    # the hooks of a savepoint that rolls back, and with them the records that go with it.
    kept = {id(hook[1]) for hook in connection.run_on_commit}
    alive = [entry for entry in pending if id(entry) in kept]
    if alive:
        _write(connection, alive)


class _Entry:
    """A record to chain, with its payload's canonical JSON. Callable as the commit hook
    that ties it to the savepoint it was appended in (``deferred``): it does nothing."""

    __slots__ = ("record", "payload_json")

    def __init__(self, record: AuditRecord, payload_json: str) -> None:
        self.record, self.payload_json = record, payload_json

    def __call__(self) -> None:
        pass


def _write(connection, entries: list[_Entry]) -> None:
    """Chain ``entries`` onto the head, in order, and write them: the head moved by all of
    them at once, one INSERT of every record, the new head stored."""
    row = None
    if connection.features.can_return_columns_from_insert:  # SQLite >= 3.35, PostgreSQL
        with connection.cursor() as cursor:
            cursor.execute(_advance_sql(connection.alias), [len(entries), HEAD_PK])
            row = cursor.fetchone()
    if row is None:  # no head row (a flushed database) or an old SQLite: the ORM's way
        head = _locked_head()
        row = (head.seq + len(entries), head.hash)
    last_seq, prev_hash = row
    now = timezone.now()
    records = [entry.record for entry in entries]
    for n, entry in enumerate(entries):
        record = entry.record
        record.seq, record.created_at, record.prev_hash = (
            last_seq - len(entries) + 1 + n, now, prev_hash
        )  # fmt: skip
        record.hash = prev_hash = record_hash(record, payload_json=entry.payload_json)
    if connection.features.can_return_rows_from_bulk_insert:
        AuditRecord.objects.bulk_create(records)
    else:  # an old SQLite: one at a time, to read each key back
        for record in records:
            record.save(force_insert=True)
    AuditHead.objects.filter(pk=HEAD_PK).update(seq=last_seq, hash=prev_hash)


@functools.cache
def _advance_sql(alias: str) -> str:
    """Move the head by a count and return where it was moved to, in one statement (the
    ORM's ``update()`` returns no columns): the head's row lock is taken by the same
    statement that reserves the records' sequence numbers."""
    quote = connections[alias].ops.quote_name
    meta = AuditHead._meta
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    seq, hash_ = quote(meta.get_field("seq").column), quote(meta.get_field("hash").column)
    return f"UPDATE {table} SET {seq} = {seq} + %s WHERE {pk} = %s RETURNING {seq}, {hash_}"


# --- verifying ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    first_broken_seq: int | None = None
    problem: str = ""


def _head() -> AuditHead | None:
    return AuditHead.objects.filter(pk=HEAD_PK).first()


def _record_problem(record: AuditRecord, expected_seq: int, prev_hash: str):
    """(first broken seq, problem) for one record in chain order, or None when it is sound."""
    if record.seq > expected_seq:
        return expected_seq, f"record #{expected_seq} is missing (the next one is #{record.seq})"
    if record.seq < expected_seq:
        return record.seq, f"record #{record.seq} appears again after #{expected_seq - 1}"
    if record.prev_hash != prev_hash:
        return record.seq, (
            f"its prev_hash does not match record #{record.seq - 1}: "
            "a record was inserted, removed or moved before it"
        )
    if record_hash(record) != record.hash:
        return record.seq, "its content does not match its hash: the record was edited"
    return None


def verify_chain(*, batch_size: int = 2000) -> ChainReport:
    """Walk the chain in seq order and report the first record that breaks it.

    Safe while appends continue: the head is read before the walk (every record up to it must
    be there) and again after it (no record may lie beyond it).
    """
    head_before = _head()
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
    records = AuditRecord.objects.order_by("seq").iterator(chunk_size=batch_size)
    for record in records:
        found = _record_problem(record, expected_seq, prev_hash)
        if found is None and head_before and record.seq == head_before.seq:
            if record.hash != head_before.hash:
                found = record.seq, "it does not match the chain's head"
        if found:
            return ChainReport(False, checked, *found)
        checked, expected_seq, prev_hash = checked + 1, expected_seq + 1, record.hash

    last_seq, head = expected_seq - 1, _head()
    if head is None:
        if last_seq:
            return ChainReport(False, checked, last_seq, "the chain's head row is missing")
        return ChainReport(True, checked)
    if head_before and last_seq < head_before.seq:
        return ChainReport(
            False,
            checked,
            last_seq + 1,
            f"records #{last_seq + 1} to #{head_before.seq} are missing: "
            f"the chain ends at #{last_seq} but its head is at #{head_before.seq}",
        )
    if last_seq > head.seq:
        return ChainReport(
            False, checked, head.seq + 1, f"it lies beyond the chain's head (#{head.seq})"
        )
    if last_seq == head.seq and prev_hash != head.hash:
        return ChainReport(False, checked, last_seq, "it does not match the chain's head")
    return ChainReport(True, checked)
