"""The trail for auditors: a date range as JSON lines or CSV, streamed record by record.

The records keep every value (they are the evidence); the export shows an action's declared
sensitive parameters and results masked (``autonomy.masking``) unless the exporter may see
them. A masked line no longer matches its MAC and hash: verify with an unmasked export.
"""

import csv
import json
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta

from django.utils import timezone

from autonomy import masking, selectors
from autonomy.audit.chain import canonical_json, seal
from autonomy.models import AuditRecord

FORMATS = ("jsonl", "csv")
COLUMNS = (
    "seq",
    "created_at",
    "kind",
    "actor",
    "agent_id",
    "action_id",
    "payload",
    "key_id",
    "mac",
    "prev_hash",
    "hash",
)


def _moment(value: date | datetime, *, end: bool = False) -> datetime:
    """Datetimes are used as given; a date means its whole day in the current time zone."""
    if isinstance(value, datetime):
        return value
    day = value + timedelta(days=1) if end else value
    return timezone.make_aware(datetime.combine(day, time.min))


def record_row(record: AuditRecord, payload=None) -> dict:
    return {
        "seq": record.seq,
        "created_at": record.created_at.isoformat(),
        "kind": record.kind,
        "actor": record.actor,
        "agent_id": str(record.agent_id) if record.agent_id else None,
        "action_id": str(record.action_id) if record.action_id else None,
        "payload": record.payload if payload is None else payload,
        "key_id": record.key_id,
        "mac": record.mac,
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    }


class _Echo:
    """A file-like object whose write() hands back the line csv.writer formatted."""

    def write(self, value: str) -> str:
        return value


def export_lines(
    *,
    start: date | datetime,
    end: date | datetime,
    fmt: str,
    viewer,
    batch_size: int = 2000,
) -> Iterator[str]:
    """Records created from ``start`` up to ``end`` in seq order, one line each, as
    ``viewer`` may see them (``None``: masked).

    Dates are inclusive days; datetimes make the half-open range [start, end). Records
    appended by then are sealed first, so the export holds them in trail order.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    seal()
    records = (
        AuditRecord.objects.filter(
            seq__isnull=False, created_at__gte=_moment(start), created_at__lt=_moment(end, end=True)
        )
        .order_by("seq")
        .iterator(chunk_size=batch_size)
    )
    if masking.may_view_sensitive(viewer):
        pairs = ((record, None) for record in records)
    else:
        pairs = _masked(records, batch_size=batch_size)
    return _jsonl(pairs) if fmt == "jsonl" else _csv(pairs)


def _masked(records, *, batch_size: int) -> Iterator[tuple[AuditRecord, dict]]:
    """Each record with its payload masked by its action's operation, the actions loaded
    one query per batch."""
    batch: list[AuditRecord] = []
    for record in records:
        batch.append(record)
        if len(batch) >= batch_size:
            yield from _mask_batch(batch)
            batch = []
    yield from _mask_batch(batch)


def _mask_batch(batch: list[AuditRecord]) -> Iterator[tuple[AuditRecord, dict]]:
    found = selectors.actions_by_id(ids=[r.action_id for r in batch])
    for record in batch:
        action = found.get(record.action_id)
        operation = action.operation if action else None
        yield record, masking.payload_for(operation, record.payload, viewer=None)


def _jsonl(pairs) -> Iterator[str]:
    for record, payload in pairs:
        yield json.dumps(record_row(record, payload), separators=(",", ":")) + "\n"


def _csv(pairs) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(COLUMNS)
    for record, payload in pairs:
        row = record_row(record, payload)
        row["payload"] = canonical_json(row["payload"])
        yield writer.writerow([row[column] for column in COLUMNS])
