"""The audit trail as a transparency log: keyed records, appends that take no shared lock,
batched sealing, signed checkpoints published outside the database, and what an insider with
database access can no longer do unseen."""

import io
import json
import os
import subprocess
import sys
import threading

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from autonomy import audit
from autonomy.audit.chain import record_hash
from autonomy.models import AuditHead, AuditRecord
from tests.realparts import ROOT

pytestmark = pytest.mark.django_db

TABLE = AuditRecord._meta.db_table
HEAD_TABLE = AuditHead._meta.db_table
OTHER_KEY = "another-audit-key-that-is-long-enough-0123456789"


@pytest.fixture(autouse=True)
def checkpoint_file(settings, tmp_path):
    settings.AUTONOMY_AUDIT_HEAD_SINK = str(tmp_path / "checkpoints.jsonl")
    return tmp_path / "checkpoints.jsonl"


def raw(sql: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def append(count: int, **fields) -> list[AuditRecord]:
    with transaction.atomic():
        return [audit.append(kind="test", payload={"n": n}, **fields) for n in range(count)]


def sealed_chain(count: int) -> list[AuditRecord]:
    """A fresh chain of ``count`` records, #1..#count, sealed by ``verify_audit``."""
    AuditRecord.objects.all().delete()
    AuditHead.objects.all().delete()
    append(count)
    verify_audit()
    return list(AuditRecord.objects.order_by("seq"))


def verify_audit() -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``manage.py verify_audit``."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("verify_audit", stdout=out, stderr=err)
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    return code, out.getvalue(), err.getvalue()


def publish() -> None:
    call_command("publish_audit_head", stdout=io.StringIO())


def rewrite_from(seq: int, payload: dict) -> None:
    """What an insider with database access does: edit record ``seq``, then recompute every
    later link and hash and the head with the chain's own public formula, so the chain holds
    together again."""
    records = list(AuditRecord.objects.filter(seq__gte=seq).order_by("seq"))
    prev_hash = AuditRecord.objects.get(seq=seq - 1).hash if seq > 1 else "0" * 64
    records[0].payload = payload
    raw(f"UPDATE {TABLE} SET payload = %s WHERE seq = %s", [json.dumps(payload), seq])
    for record in records:
        record.prev_hash = prev_hash
        record.hash = prev_hash = record_hash(record)
        raw(
            f"UPDATE {TABLE} SET prev_hash = %s, hash = %s WHERE seq = %s",
            [record.prev_hash, record.hash, record.seq],
        )
    raw(f"UPDATE {HEAD_TABLE} SET hash = %s", [prev_hash])


# --- the insider's attacks --------------------------------------------------------------------


def test_an_edit_with_every_later_hash_and_the_head_recomputed_is_named():
    sealed_chain(6)
    rewrite_from(3, {"n": 2, "amount": 1_000_000})
    code, _, err = verify_audit()
    assert code == 1
    assert err.startswith("audit chain BROKEN at record #3: its MAC does not match"), err


def test_an_edit_recomputed_past_a_published_checkpoint_is_named_by_it_too():
    sealed_chain(6)
    publish()
    rewrite_from(3, {"n": 2, "amount": 1_000_000})
    raw(f"UPDATE {TABLE} SET mac = %s WHERE seq = 3", ["0" * 64])  # whatever the MAC says...
    report = audit.verify_chain()
    assert not report.ok and report.first_broken_seq == 3
    assert report.checkpoints == 1 and report.checkpoint_seq == 6


def test_a_deleted_tail_with_the_head_moved_back_is_named_by_the_published_checkpoint():
    records = sealed_chain(6)
    publish()
    raw(f"DELETE FROM {TABLE} WHERE seq > 4")
    raw(f"UPDATE {HEAD_TABLE} SET seq = 4, hash = %s", [records[3].hash])
    code, _, err = verify_audit()
    assert code == 1
    assert err.startswith("audit chain BROKEN at record #5: records #5 to #6 are missing"), err
    assert "checkpoint #6 was published" in err


def test_a_record_edited_without_recomputing_anything_is_named_by_its_mac():
    sealed_chain(4)
    raw(f"UPDATE {TABLE} SET actor = %s WHERE seq = 2", ["mallory"])
    code, _, err = verify_audit()
    assert code == 1 and err.startswith("audit chain BROKEN at record #2: its MAC"), err


def test_an_unsealed_record_edited_is_named_by_its_mac():
    sealed_chain(2)
    (record,) = append(1)
    raw(f"UPDATE {TABLE} SET payload = %s WHERE id = %s", [json.dumps({"n": 9}), record.pk])
    report = audit.verify_chain()
    assert not report.ok and f"unsealed record id {record.pk}" in report.problem


def test_a_checkpoint_with_a_forged_signature_is_refused(checkpoint_file):
    records = sealed_chain(3)
    forged = {
        "seq": 3,
        "hash": records[-1].hash,
        "time": "2030-01-01T00:00:00+00:00",
        "key_id": "0" * 16,
        "signature": "AAAA",
    }
    checkpoint_file.write_text(json.dumps(forged) + "\n")
    code, _, err = verify_audit()
    assert code == 1 and "a published checkpoint is refused" in err, err


def test_a_checkpoint_altered_after_signing_is_refused(checkpoint_file):
    sealed_chain(3)
    publish()
    checkpoint = json.loads(checkpoint_file.read_text())
    checkpoint["seq"] = 2  # so a cut-back chain would match it
    checkpoint_file.write_text(json.dumps(checkpoint) + "\n")
    report = audit.verify_chain()
    assert not report.ok and "bad signature" in report.problem


# --- keys -----------------------------------------------------------------------------------


def test_records_made_with_a_retired_key_verify_while_it_is_configured(settings):
    old = list(settings.AUTONOMY_AUDIT_KEY)
    sealed_chain(2)
    settings.AUTONOMY_AUDIT_KEY = [OTHER_KEY, *old]  # rotated: the new key first
    append(1)
    audit.seal()
    key_ids = list(AuditRecord.objects.order_by("seq").values_list("key_id", flat=True))
    assert key_ids[0] == key_ids[1] != key_ids[2]
    assert audit.verify_chain().ok

    settings.AUTONOMY_AUDIT_KEY = [OTHER_KEY]  # the old key dropped: its records cannot verify
    report = audit.verify_chain()
    assert not report.ok and report.first_broken_seq == 1 and "unknown key" in report.problem


def run_settings(**env_overrides) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "CELERY_"))}
    env.update({"DJANGO_SETTINGS_MODULE": "config.settings", **env_overrides})
    code = "import django; django.setup()"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_settings_refuse_a_short_audit_key(tmp_path):
    # (Production without one: tests/autonomy/test_settings.py.)
    short = run_settings(AUTONOMY_AUDIT_KEY="too-short", AUTONOMY_DATA_DIR=str(tmp_path))
    assert short.returncode != 0
    assert "AUTONOMY_AUDIT_KEY: every key must be at least 32 characters" in short.stderr


# --- sealing --------------------------------------------------------------------------------


def test_sealing_takes_the_same_statements_for_10_and_300_records():
    def statements_to_seal(count: int) -> int:
        append(count)
        with CaptureQueriesContext(connection) as queries:
            assert audit.seal() == count
        return len(queries)

    statements_to_seal(1)  # the head row exists from here on
    assert statements_to_seal(10) == statements_to_seal(300)
    assert audit.verify_chain().ok


def test_sealing_goes_batch_by_batch_and_nothing_is_left_unsealed():
    sealed_chain(1)
    append(25)
    assert audit.seal(batch_size=10) == 25
    assert not AuditRecord.objects.filter(seq__isnull=True).exists()
    assert list(AuditRecord.objects.values_list("seq", flat=True)) == list(range(1, 27))
    assert audit.verify_chain().ok


def test_the_beat_task_seals():
    from autonomy import tasks

    append(3)
    assert tasks.audit_seal() == 3
    assert audit.verify_chain().ok


@pytest.mark.django_db(transaction=True)
def test_appends_do_not_queue_behind_an_open_transaction_that_appended(postgres):
    """One transaction appends and stays open; twelve others append and commit meanwhile.
    With one locked head row per append, every one of them would wait for the first."""
    others, first_appended, others_done = 12, threading.Event(), threading.Event()
    committed: list[int] = []
    errors: list[BaseException] = []
    seen_while_open: list[bool] = []
    lock = threading.Lock()

    def holder() -> None:
        with transaction.atomic():
            audit.append(kind="test", payload={"who": "holder"})
            first_appended.set()
            # Returns as soon as the others are through; gives up (and fails the test) if
            # they queue behind this transaction.
            seen_while_open.append(others_done.wait(30))

    def other(n: int) -> None:
        assert first_appended.wait(30)
        with transaction.atomic():
            audit.append(kind="test", payload={"who": n})
        with lock:
            committed.append(n)
            if len(committed) == others:
                others_done.set()

    def guarded(target, *args) -> None:
        try:
            target(*args)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=guarded, args=(holder,))]
    threads += [threading.Thread(target=guarded, args=(other, n)) for n in range(others)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert seen_while_open == [True], "the others queued behind the open transaction"
    assert audit.seal() == others + 1
    report = audit.verify_chain()
    assert report.ok and report.checked == others + 1


def test_the_beat_sealer_fails_loudly_on_a_head_moved_back_under_sealed_records():
    from django.db import IntegrityError

    from autonomy import tasks

    records = sealed_chain(4)
    raw(f"UPDATE {HEAD_TABLE} SET seq = 2, hash = %s", [records[1].hash])
    append(1)  # would be sealed as #3, which exists
    with pytest.raises(IntegrityError):
        tasks.audit_seal()
    code, _, err = verify_audit()
    assert code == 1 and "sealing failed" in err
    assert "BROKEN at record #3: it lies beyond the chain's head (#2)" in err


# --- checkpoints ----------------------------------------------------------------------------


def test_publishing_signs_the_head_into_the_sink_once_per_head(checkpoint_file):
    sealed_chain(2)
    append(1)
    publish()
    publish()  # the head has not moved: nothing new
    lines = checkpoint_file.read_text().splitlines()
    assert len(lines) == 1
    checkpoint = json.loads(lines[0])
    head = AuditHead.objects.get(pk=1)
    assert (checkpoint["seq"], checkpoint["hash"]) == (3, head.hash)
    assert set(checkpoint) == {"seq", "hash", "time", "key_id", "signature"}
    append(1)
    publish()
    assert len(checkpoint_file.read_text().splitlines()) == 2
    code, out, _ = verify_audit()
    assert code == 0 and "2 checkpoint(s) hold" in out and "the newest at #4" in out


def test_the_beat_task_seals_and_publishes(checkpoint_file):
    from autonomy import tasks

    sealed_chain(1)
    append(2)
    assert tasks.audit_publish() == 3
    assert tasks.audit_publish() is None  # nothing new since
    assert [json.loads(line)["seq"] for line in checkpoint_file.read_text().splitlines()] == [3]


def test_publishing_refuses_a_chain_that_no_longer_holds_the_last_checkpoint():
    records = sealed_chain(4)
    publish()
    raw(f"DELETE FROM {TABLE} WHERE seq > 2")
    raw(f"UPDATE {HEAD_TABLE} SET seq = 2, hash = %s", [records[1].hash])
    append(2)  # new records would be sealed onto the cut-back chain as #3 and #4
    with pytest.raises(audit.NotExtending, match="checkpoint #4"):
        audit.publish()


class MemorySink:
    """An operator's own sink: any class with ``append`` and ``tail``."""

    lines: list[dict] = []

    def __init__(self, location: str) -> None:
        self.location = location

    def append(self, checkpoint: dict) -> None:
        self.lines.append(checkpoint)

    def tail(self, count):
        return self.lines[-count:] if count else list(self.lines)


def test_an_operator_can_configure_another_sink(settings, checkpoint_file):
    settings.AUTONOMY_AUDIT_HEAD_SINK_CLASS = f"{__name__}.MemorySink"
    MemorySink.lines = []
    sealed_chain(2)
    publish()
    assert [c["seq"] for c in MemorySink.lines] == [2] and not checkpoint_file.exists()
    assert audit.verify_chain().checkpoints == 1


def test_the_file_sink_reads_back_its_last_lines(settings, checkpoint_file):
    sealed_chain(1)
    for _ in range(5):
        append(1)
        publish()
    from autonomy.audit.checkpoint import sink

    assert [c["seq"] for c in sink().tail(2)] == [5, 6]
    assert [c["seq"] for c in sink().tail(None)] == [2, 3, 4, 5, 6]


# --- readers that follow trail order ---------------------------------------------------------


def test_the_export_seals_first():
    from datetime import date, timedelta

    from django.utils import timezone

    sealed_chain(1)
    append(2)
    today = timezone.localdate()
    lines = list(
        audit.export_lines(
            start=today - timedelta(days=1), end=today + timedelta(days=1), fmt="jsonl", viewer=None
        )
    )
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3]
    assert isinstance(today, date)


def test_the_activity_stream_and_the_trace_show_new_records_with_no_sealer_running(
    registry, client
):
    from autonomy.observability.activity import activity_head, activity_since
    from tests.autonomy.test_activity import post_invoice, staff

    audit.seal()
    before = activity_head()
    action = post_invoice(registry)
    waiting = AuditRecord.objects.filter(action_id=action.pk, seq__isnull=True)
    assert waiting.exists()  # appended, and no worker has sealed it

    events = activity_since(after_seq=before)
    mine = [e for e in events if e["action_id"] == str(action.pk)]
    assert mine and [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert all(e["seq"] > before for e in events)
    assert "action_decision" in {e["kind"] for e in mine}

    post_invoice(registry)
    client.force_login(staff())
    page = client.get(f"/actions/{action.pk}/trace/").content.decode()
    records = list(AuditRecord.objects.filter(action_id=action.pk))
    assert records and all(r.seq for r in records)
    for record in records:
        assert f'<tr data-seq="{record.seq}">' in page


# --- upgrading ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_migrating_keys_and_chains_the_records_written_before_keyed_records():
    from datetime import UTC, datetime

    from django.db.migrations.executor import MigrationExecutor

    before = [("autonomy", "0009_worker_liveness")]
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()
    try:
        executor.migrate(before)
        legacy = executor.loader.project_state(before).apps.get_model("autonomy", "AuditRecord")
        legacy.objects.all().delete()
        for seq in (1, 2, 3):
            legacy.objects.create(
                seq=seq,
                created_at=datetime(2026, 1, seq, tzinfo=UTC),
                kind="legacy",
                actor="ita",
                payload={"n": seq, "amount": 1.5},
                prev_hash=f"{seq - 1:064d}",
                hash=f"{seq:064d}",
            )
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(leaves)

    assert [r.seq for r in AuditRecord.objects.all()] == [1, 2, 3]
    report = audit.verify_chain()
    assert report.ok and report.checked == 3 and report.head_seq == 3
    append(1)
    assert audit.seal() == 1 and audit.verify_chain().checked == 4
