"""Verifying the trail: every record's MAC, the chain from genesis, the head row, and the
signed checkpoints published outside the database."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings

from autonomy.audit import keys
from autonomy.audit.chain import GENESIS_HASH, head, record_hash, record_mac
from autonomy.audit.checkpoint import signature_problem, sink
from autonomy.models import AuditRecord

# The newest checkpoints held against the chain, unless told otherwise (None: all of them).
CHECKPOINTS = 100


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int  # sealed records walked
    first_broken_seq: int | None = None
    problem: str = ""
    unsealed: int = 0  # records not sealed yet, their MACs checked
    head_seq: int = 0
    checkpoints: int = 0  # signed checkpoints held against the chain
    checkpoint_seq: int | None = None  # the newest of them
    checked_what: tuple[str, ...] = field(default=())


def _mac_problem(record: AuditRecord) -> str:
    key = keys.mac_key_for(record.key_id)
    if key is None:
        return f"its MAC was made with an unknown key ({record.key_id or 'none'})"
    if record_mac(record, key) != record.mac:
        return "its MAC does not match its content: the record was edited or forged"
    return ""


def record_problem(record: AuditRecord, expected_seq: int, prev_hash: str):
    """(first broken seq, problem) for one record in chain order, or None when it is sound."""
    if record.seq > expected_seq:
        return expected_seq, f"record #{expected_seq} is missing (the next one is #{record.seq})"
    if record.seq < expected_seq:
        return record.seq, f"record #{record.seq} appears again after #{expected_seq - 1}"
    mac = _mac_problem(record)
    if mac:
        return record.seq, mac
    if record.prev_hash != prev_hash:
        return record.seq, (
            f"its prev_hash does not match record #{record.seq - 1}: "
            "a record was inserted, removed or moved before it"
        )
    if record_hash(record) != record.hash:
        return record.seq, "its seq or links do not match its hash: the record was edited"
    return None


def _checkpoints(count: int | None) -> tuple[dict[int, dict], str]:
    """Published checkpoints by seq (the newest ``count``), and the first problem with any
    of their signatures."""
    by_seq: dict[int, dict] = {}
    for checkpoint in sink().tail(count):
        problem = signature_problem(checkpoint)
        if problem:
            return by_seq, problem
        by_seq[checkpoint["seq"]] = checkpoint
    return by_seq, ""


def verify_chain(*, batch_size: int = 2000, checkpoints: int | None = CHECKPOINTS) -> ChainReport:
    """Walk the sealed chain in seq order and report the first thing that breaks it.

    Safe while appends and sealing continue: the head is read before the walk (every record
    up to it must be there) and again after it (no sealed record may lie beyond it).
    """
    published, signature = _checkpoints(checkpoints)
    newest = max(published) if published else None
    what = (
        f"MAC of every record (key {keys.mac_key()[0]} and "
        f"{len(settings.AUTONOMY_AUDIT_KEY) - 1} retired)",
        "the hash chain from genesis",
        "the database head",
        f"{len(published)} signed checkpoint(s) published at {settings.AUTONOMY_AUDIT_HEAD_SINK}"
        + (f", the newest at #{newest}" if newest is not None else ""),
    )

    def report(ok: bool, checked: int, seq=None, problem="", **extra) -> ChainReport:
        return ChainReport(
            ok,
            checked,
            seq,
            problem,
            checkpoints=len(published),
            checkpoint_seq=newest,
            checked_what=what,
            **extra,
        )

    if signature:
        return report(False, 0, None, f"a published checkpoint is refused: {signature}")

    head_before = head()
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
    records = (
        AuditRecord.objects.filter(seq__isnull=False)
        .order_by("seq")
        .iterator(chunk_size=batch_size)
    )
    for record in records:
        found = record_problem(record, expected_seq, prev_hash)
        if found is None and head_before and record.seq == head_before.seq:
            if record.hash != head_before.hash:
                found = record.seq, "it does not match the chain's head"
        if found is None and record.seq in published:
            checkpoint = published[record.seq]
            if record.hash != checkpoint["hash"]:
                found = (
                    record.seq,
                    (
                        f"it does not match checkpoint #{record.seq} published at "
                        f"{checkpoint['time']}: the chain was rewritten"
                    ),
                )
        if found:
            return report(False, checked, *found)
        checked, expected_seq, prev_hash = checked + 1, expected_seq + 1, record.hash

    last_seq, head_after = expected_seq - 1, head()
    if newest is not None and newest > last_seq:
        return report(
            False,
            checked,
            last_seq + 1,
            f"records #{last_seq + 1} to #{newest} are missing: checkpoint #{newest} was "
            f"published at {published[newest]['time']}, the chain ends at #{last_seq}",
        )
    if head_after is None:
        if last_seq:
            return report(False, checked, last_seq, "the chain's head row is missing")
    else:
        if head_before and last_seq < head_before.seq:
            return report(
                False,
                checked,
                last_seq + 1,
                f"records #{last_seq + 1} to #{head_before.seq} are missing: "
                f"the chain ends at #{last_seq} but its head is at #{head_before.seq}",
            )
        if last_seq > head_after.seq:
            return report(
                False,
                checked,
                head_after.seq + 1,
                f"it lies beyond the chain's head (#{head_after.seq})",
            )
        if last_seq == head_after.seq and prev_hash != head_after.hash:
            return report(False, checked, last_seq, "it does not match the chain's head")

    unsealed = 0
    for record in AuditRecord.objects.filter(seq__isnull=True).iterator(chunk_size=batch_size):
        problem = _mac_problem(record)
        if problem:
            return report(False, checked, None, f"unsealed record id {record.pk}: {problem}")
        unsealed += 1
    return report(True, checked, unsealed=unsealed, head_seq=head_after.seq if head_after else 0)
