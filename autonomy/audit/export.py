"""The trail for auditors: a date range as JSON lines or CSV, streamed record by record."""

import csv
import json
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta

from django.utils import timezone

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


def record_row(record: AuditRecord) -> dict:
    return {
        "seq": record.seq,
        "created_at": record.created_at.isoformat(),
        "kind": record.kind,
        "actor": record.actor,
        "agent_id": str(record.agent_id) if record.agent_id else None,
        "action_id": str(record.action_id) if record.action_id else None,
        "payload": record.payload,
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
    *, start: date | datetime, end: date | datetime, fmt: str, batch_size: int = 2000
) -> Iterator[str]:
    """Records created from ``start`` up to ``end`` in seq order, one line each.

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
    return _jsonl(records) if fmt == "jsonl" else _csv(records)


def _jsonl(records) -> Iterator[str]:
    for record in records:
        yield json.dumps(record_row(record), separators=(",", ":")) + "\n"


def _csv(records) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(COLUMNS)
    for record in records:
        row = record_row(record)
        row["payload"] = canonical_json(row["payload"])
        yield writer.writerow([row[column] for column in COLUMNS])
