"""A stretch of the audit chain taken out of the database (``autonomy.audit.segment``):
contiguous in seq between two signed checkpoints, and verified from its lines alone."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from autonomy import audit
from autonomy.audit.segment import segment_for_period, segment_lines, verify_segment
from autonomy.models import AuditRecord

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def checkpoint_file(settings, tmp_path):
    settings.AUTONOMY_AUDIT_HEAD_SINK = str(tmp_path / "checkpoints.jsonl")


def appended(count: int) -> None:
    with transaction.atomic():
        for n in range(count):
            audit.append(kind="test", payload={"n": n})


def whole_period():
    now = timezone.now()
    return {"start": now - timedelta(hours=1), "end": now + timedelta(hours=1)}


def test_a_stretch_is_contiguous_even_when_a_late_commit_is_dated_outside_it():
    appended(3)
    audit.seal()
    middle = AuditRecord.objects.get(seq=2)
    AuditRecord.objects.filter(pk=middle.pk).update(
        created_at=middle.created_at - timedelta(days=9)
    )

    segment = segment_for_period(**whole_period())

    assert (segment.first_seq, segment.last_seq) == (1, 3)
    assert len(list(segment_lines(segment))) == 3


def test_the_lines_verify_against_their_checkpoints():
    appended(5)
    segment = segment_for_period(**whole_period())

    report = verify_segment(segment_lines(segment), start=segment.start, end=segment.end)

    assert report.ok and report.checked == 5


def test_a_checkpoint_moved_by_hand_is_refused():
    appended(3)
    segment = segment_for_period(**whole_period())
    lines = list(segment_lines(segment))[:-1]
    end = {**segment.end, "seq": segment.end["seq"] - 1}  # claim the stretch ended earlier

    report = verify_segment(lines, start=segment.start, end=end)

    assert not report.ok
    assert "bad signature" in report.problem


def test_records_beyond_the_end_checkpoint_are_refused():
    appended(2)
    segment = segment_for_period(**whole_period())
    appended(1)
    audit.seal()
    longer = segment_for_period(**whole_period())

    report = verify_segment(segment_lines(longer), start=segment.start, end=segment.end)

    assert not report.ok
    assert "beyond the end checkpoint" in report.problem
