"""A stretch of the chain taken out of the database: exported as JSON lines between two
signed checkpoints, and verified later from those lines alone (an evidence pack).

The stretch is contiguous in ``seq`` (a record whose transaction committed late is sealed
after its neighbours in time, so a stretch cut by time alone could leave holes), bracketed
by a checkpoint before its first record and one at its last, both signed with the audit
signing key (``checkpoint.sign``). Verifying it recomputes every record's MAC (so the MAC
key is needed), every hash and link, and holds both ends to their checkpoints: an edited,
removed, inserted or reordered record is named, even by someone who recomputed the hashes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Max, Min
from django.utils import timezone

from autonomy.audit.chain import GENESIS_HASH, seal
from autonomy.audit.checkpoint import sign, signature_problem
from autonomy.audit.export import record_row
from autonomy.audit.verify import record_problem
from autonomy.models import AuditRecord


@dataclass(frozen=True)
class Segment:
    """Records ``first_seq`` to ``last_seq`` (empty when ``last_seq < first_seq``), and the
    signed checkpoints around them: ``start`` at ``first_seq - 1``, ``end`` at ``last_seq``."""

    first_seq: int
    last_seq: int
    start: dict
    end: dict

    @property
    def count(self) -> int:
        return max(0, self.last_seq - self.first_seq + 1)


def _hash_at(seq: int) -> str:
    if seq == 0:
        return GENESIS_HASH
    return AuditRecord.objects.filter(seq=seq).values_list("hash", flat=True).get()


def segment_for_period(*, start: datetime, end: datetime) -> Segment:
    """The contiguous stretch from the first sealed record created in [start, end) to the
    last, with its two checkpoints signed now. Seals first, so the period's committed
    records are in it. Three indexed queries."""
    seal()
    sealed = AuditRecord.objects.filter(seq__isnull=False)
    bounds = sealed.filter(created_at__gte=start, created_at__lt=end).aggregate(
        first=Min("seq"), last=Max("seq")
    )
    if bounds["first"] is None:  # nothing in the period: an empty stretch where it would be
        before = sealed.filter(created_at__lt=start).aggregate(last=Max("seq"))["last"] or 0
        first, last = before + 1, before
    else:
        first, last = bounds["first"], bounds["last"]
    now = timezone.now().isoformat()
    start_hash = _hash_at(first - 1)
    end_hash = start_hash if last < first else _hash_at(last)
    return Segment(
        first_seq=first,
        last_seq=last,
        start=sign(seq=first - 1, hash=start_hash, time=now),
        end=sign(seq=last, hash=end_hash, time=now),
    )


def segment_lines(segment: Segment, *, batch_size: int = 2000) -> Iterator[str]:
    """The stretch's records in seq order, one JSON line each, as ``export_lines`` writes
    them; streamed from the database."""
    records = (
        AuditRecord.objects.filter(seq__gte=segment.first_seq, seq__lte=segment.last_seq)
        .order_by("seq")
        .iterator(chunk_size=batch_size)
    )
    for record in records:
        yield json.dumps(record_row(record), separators=(",", ":")) + "\n"


def record_from_row(row: dict) -> AuditRecord:
    """An unsaved record from one exported line, for the MAC and hash to be recomputed."""
    return AuditRecord(
        seq=row["seq"],
        created_at=datetime.fromisoformat(row["created_at"]),
        kind=row["kind"],
        actor=row["actor"],
        agent_id=row["agent_id"],
        action_id=row["action_id"],
        payload=row["payload"],
        key_id=row["key_id"],
        mac=row["mac"],
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


@dataclass(frozen=True)
class SegmentReport:
    ok: bool
    checked: int
    first_broken_seq: int | None = None
    problem: str = ""


def verify_segment(
    lines: Iterable[str | bytes], *, start: dict, end: dict, published: Iterable[dict] = ()
) -> SegmentReport:
    """Check exported lines against the signed checkpoints around them: both signatures,
    every record's MAC, seq, link and hash from ``start`` on, and that the last one is
    ``end``. ``published``: checkpoints (published outside the database) that any record
    of the stretch at their seq must match."""
    for checkpoint in (start, end, *published):
        problem = signature_problem(checkpoint)
        if problem:
            return SegmentReport(False, 0, None, f"a checkpoint is refused: {problem}")
    at_seq = {c["seq"]: c for c in published}
    expected_seq, prev_hash, checked = start["seq"] + 1, start["hash"], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            record = record_from_row(json.loads(line))
        except (ValueError, KeyError, TypeError) as exc:
            return SegmentReport(False, checked, expected_seq, f"an unreadable record: {exc}")
        if record.seq > end["seq"]:
            return SegmentReport(
                False, checked, record.seq, f"it lies beyond the end checkpoint (#{end['seq']})"
            )
        found = record_problem(record, expected_seq, prev_hash)
        if found is None and record.seq in at_seq and record.hash != at_seq[record.seq]["hash"]:
            found = record.seq, f"it does not match the checkpoint published at #{record.seq}"
        if found:
            return SegmentReport(False, checked, *found)
        checked, expected_seq, prev_hash = checked + 1, expected_seq + 1, record.hash
    last = expected_seq - 1
    if last < end["seq"]:
        return SegmentReport(
            False,
            checked,
            last + 1,
            f"records #{last + 1} to #{end['seq']} are missing: the stretch ends at #{last}",
        )
    if prev_hash != end["hash"]:
        return SegmentReport(False, checked, last, "it does not match the end checkpoint")
    return SegmentReport(True, checked)
