"""The tamper-evident audit trail: appends, the sealed chain, its verification, model changes,
exports. (Keys, checkpoints and the insider's attacks: test_audit_transparency.py.)"""

import csv
import io
import json
import threading
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.db import connection, transaction
from django.urls import reverse

from agents import services as agent_services
from agents.models import Agent, AgentStatus
from autonomy import audit
from autonomy.audit.chain import GENESIS_HASH, record_hash, record_mac
from autonomy.audit.keys import mac_key
from autonomy.models import AuditHead, AuditRecord
from tests.factories import UserFactory, make_agent

pytestmark = pytest.mark.django_db

TABLE = AuditRecord._meta.db_table


@pytest.fixture(autouse=True)
def checkpoint_file(settings, tmp_path):
    """Each test publishes (if it does) to a file of its own."""
    settings.AUTONOMY_AUDIT_HEAD_SINK = str(tmp_path / "checkpoints.jsonl")
    return tmp_path / "checkpoints.jsonl"


def append_records(count: int, **fields) -> list[AuditRecord]:
    """Append ``count`` records in one transaction, seal them, return them as stored."""
    with transaction.atomic():
        appended = [
            audit.append(kind="test", payload={"n": n, "amount": 1.5}, **fields)
            for n in range(count)
        ]
    audit.seal()
    return list(AuditRecord.objects.filter(pk__in=[r.pk for r in appended]).order_by("seq"))


def raw(sql: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def last_seq() -> int:
    return AuditRecord.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


def newest_id() -> int:
    """The newest record's id, sealed or not: records appended later have greater ids."""
    return AuditRecord.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


@pytest.fixture
def five_records():
    """Records #1..#5 of a fresh chain (fixtures may have appended model changes before)."""
    AuditRecord.objects.all().delete()
    AuditHead.objects.all().delete()
    return append_records(5)


# --- the chain ------------------------------------------------------------------------------


def test_sealed_records_link_each_to_the_previous_hash_and_verify():
    records = append_records(3, actor="ita", agent_id="8d6f2a0e-8a4e-4c55-9d6b-0c1f3c9c1e11")
    first = records[0]
    assert [r.seq for r in records] == [first.seq, first.seq + 1, first.seq + 2]
    assert records[1].prev_hash == records[0].hash and records[2].prev_hash == records[1].hash
    head = AuditHead.objects.get(pk=1)
    assert (head.seq, head.hash) == (records[2].seq, records[2].hash)
    report = audit.verify_chain(batch_size=2)
    assert report.ok and report.checked == last_seq() and report.first_broken_seq is None


def test_the_first_record_of_an_empty_chain_links_to_the_genesis_hash(five_records):
    assert five_records[0].seq == 1
    assert five_records[0].prev_hash == GENESIS_HASH


def test_stored_record_hashes_to_its_hash_after_a_database_round_trip():
    with transaction.atomic():
        record = audit.append(
            kind="test",
            payload={"big": 1e20, "small": 1.5e-7, "when": datetime(2030, 1, 1, tzinfo=UTC)},
        )
    audit.seal()
    stored = AuditRecord.objects.get(pk=record.pk)
    assert record_hash(stored) == stored.hash
    assert record_mac(stored, mac_key()[1]) == stored.mac == record.mac
    assert stored.payload["when"] == "2030-01-01T00:00:00+00:00"


def stored_values(record: AuditRecord) -> dict:
    return {f.attname: getattr(record, f.attname) for f in AuditRecord._meta.concrete_fields}


def test_an_appended_record_is_stored_unsealed_with_exactly_the_values_it_was_given():
    agent_id, action_id = "8d6f2a0e-8a4e-4c55-9d6b-0c1f3c9c1e11", uuid.uuid4()
    with transaction.atomic():
        record = audit.append(
            kind="action_decision",
            actor="ap-bot",
            agent_id=agent_id,
            action_id=str(action_id),
            payload={"amount": Decimal("12.50"), "ids": [1, 2], "none": None},
        )
    stored = AuditRecord.objects.get(pk=record.pk)
    assert stored_values(stored) == stored_values(record)
    assert (stored.agent_id, stored.action_id) == (uuid.UUID(agent_id), action_id)
    assert stored.created_at.microsecond == record.created_at.microsecond  # to the microsecond
    assert stored.payload == {"amount": "12.50", "ids": [1, 2], "none": None}
    assert (stored.seq, stored.prev_hash, stored.hash) == (None, "", "")  # not sealed yet
    assert stored.key_id == mac_key()[0] and record_mac(stored, mac_key()[1]) == stored.mac

    audit.seal()
    sealed = AuditRecord.objects.get(pk=record.pk)
    assert sealed.seq == AuditHead.objects.get(pk=1).seq and record_hash(sealed) == sealed.hash
    assert AuditHead.objects.get(pk=1).hash == sealed.hash


@pytest.mark.django_db(transaction=True)
def test_append_outside_a_transaction_raises_and_writes_nothing():
    with pytest.raises(transaction.TransactionManagementError):
        audit.append(kind="test", payload={})
    assert not AuditRecord.objects.exists()


def test_sealing_recreates_a_missing_head_at_the_last_sealed_record():
    records = append_records(2)
    AuditHead.objects.all().delete()
    record = append_records(1)[0]
    assert record.seq == records[-1].seq + 1 and record.prev_hash == records[-1].hash
    assert audit.verify_chain().ok


# --- verify_audit ---------------------------------------------------------------------------


def test_verify_audit_reports_an_intact_chain_and_what_it_checked(five_records):
    with transaction.atomic():
        audit.append(kind="test", payload={"n": "not sealed yet"})
    out = io.StringIO()
    call_command("verify_audit", stdout=out)
    lines = out.getvalue().strip().splitlines()
    assert lines[0] == "sealed 1 record(s) first"
    assert [line.split(":")[0] for line in lines[1:-1]] == ["checked"] * 4
    assert "MAC of every record" in lines[1] and "hash chain from genesis" in lines[2]
    assert lines[-1] == "audit chain OK: 6 records, head at #6, 0 checkpoint(s) hold, 0 unsealed"


def test_verify_audit_names_the_broken_record_and_exits_one(five_records):
    raw(f"UPDATE {TABLE} SET payload = %s WHERE seq = 3", [json.dumps({"n": 99})])
    err = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("verify_audit", stdout=io.StringIO(), stderr=err)
    assert exit_info.value.code == 1
    assert err.getvalue().startswith("audit chain BROKEN at record #3: its MAC does not match")


# --- tampering, done the way an attacker would: raw SQL past the ORM --------------------------


def assert_broken_at(seq: int, *words: str):
    report = audit.verify_chain()
    assert not report.ok
    assert report.first_broken_seq == seq, report.problem
    for word in words:
        assert word in report.problem


@pytest.mark.parametrize(
    "column, value",
    [("payload", json.dumps({"n": 2, "amount": 1000000})), ("actor", "mallory"), ("kind", "x")],
)
def test_an_edited_record_is_named(five_records, column, value):
    raw(f"UPDATE {TABLE} SET {column} = %s WHERE seq = 3", [value])
    assert_broken_at(3, "edited")


def test_an_edited_record_with_a_recomputed_hash_is_named_by_its_mac(five_records):
    forged = AuditRecord.objects.get(seq=3)
    forged.payload = {"n": 2, "amount": 1000000}
    new_values = [json.dumps(forged.payload), record_hash(forged)]
    raw(f"UPDATE {TABLE} SET payload = %s, hash = %s WHERE seq = 3", new_values)
    assert_broken_at(3, "MAC")


def test_a_deleted_record_is_named_as_missing(five_records):
    raw(f"DELETE FROM {TABLE} WHERE seq = 3")
    assert_broken_at(3, "missing")


def test_a_deleted_record_with_the_rest_renumbered_is_caught_where_it_was(five_records):
    raw(f"DELETE FROM {TABLE} WHERE seq = 3")
    raw(f"UPDATE {TABLE} SET seq = -(seq - 1) WHERE seq > 3")
    raw(f"UPDATE {TABLE} SET seq = -seq WHERE seq < 0")
    assert_broken_at(3, "prev_hash")


def insert_replayed(*, seq: int, prev_hash: str, of: AuditRecord) -> None:
    """Insert a copy of a genuine record (its content and MAC, which only the key could have
    made) at ``seq``, linked to ``prev_hash`` with a correct hash: as plausible as a record
    forged without the key can be."""
    copy = AuditRecord.objects.get(pk=of.pk)
    copy.seq, copy.prev_hash = seq, prev_hash
    raw(
        f"INSERT INTO {TABLE} (seq, created_at, kind, actor, payload, key_id, mac, prev_hash, "
        "hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [
            seq,
            connection.ops.adapt_datetimefield_value(copy.created_at),
            copy.kind,
            copy.actor,
            json.dumps(copy.payload),
            copy.key_id,
            copy.mac,
            prev_hash,
            record_hash(copy),
        ],
    )


def test_a_record_forged_without_the_key_is_named_by_its_mac(five_records):
    raw(f"UPDATE {TABLE} SET seq = -seq WHERE seq >= 3")
    raw(f"UPDATE {TABLE} SET seq = -seq + 1 WHERE seq < 0")
    forged = AuditRecord(
        seq=3,
        created_at=datetime.now(UTC),
        kind="test",
        actor="mallory",
        payload={"n": 42},
        key_id=five_records[0].key_id,
        mac="0" * 64,
        prev_hash=five_records[1].hash,
    )
    raw(
        f"INSERT INTO {TABLE} (seq, created_at, kind, actor, payload, key_id, mac, prev_hash, "
        "hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [
            3,
            connection.ops.adapt_datetimefield_value(forged.created_at),
            forged.kind,
            forged.actor,
            json.dumps(forged.payload),
            forged.key_id,
            forged.mac,
            forged.prev_hash,
            record_hash(forged),
        ],
    )
    assert_broken_at(3, "MAC")


def test_a_record_replayed_into_the_middle_is_caught_at_the_record_after_it(five_records):
    # Make room at #3, then insert a genuine record's copy whose own hash and link hold.
    raw(f"UPDATE {TABLE} SET seq = -seq WHERE seq >= 3")
    raw(f"UPDATE {TABLE} SET seq = -seq + 1 WHERE seq < 0")
    insert_replayed(seq=3, prev_hash=five_records[1].hash, of=five_records[0])
    assert_broken_at(4, "prev_hash")


def test_a_record_replayed_onto_the_end_is_named_as_beyond_the_head(five_records):
    insert_replayed(seq=6, prev_hash=five_records[-1].hash, of=five_records[0])
    assert_broken_at(6, "beyond the chain's head")


def test_two_swapped_records_are_caught_at_the_first_of_them(five_records):
    raw(f"UPDATE {TABLE} SET seq = -1 WHERE seq = 2")
    raw(f"UPDATE {TABLE} SET seq = 2 WHERE seq = 3")
    raw(f"UPDATE {TABLE} SET seq = 3 WHERE seq = -1")
    assert_broken_at(2, "prev_hash")


def test_two_records_with_swapped_contents_are_caught_at_the_first_of_them(five_records):
    first, second = (json.dumps(r.payload) for r in five_records[1:3])
    raw(f"UPDATE {TABLE} SET payload = %s WHERE seq = 2", [second])
    raw(f"UPDATE {TABLE} SET payload = %s WHERE seq = 3", [first])
    assert_broken_at(2, "MAC")


def test_a_truncated_tail_is_named_from_the_first_missing_record(five_records):
    raw(f"DELETE FROM {TABLE} WHERE seq > 3")
    assert_broken_at(4, "missing", "head is at #5")


def test_a_fully_deleted_chain_is_caught_by_its_head(five_records):
    raw(f"DELETE FROM {TABLE}")
    assert_broken_at(1, "missing")


def test_a_deleted_head_row_is_reported_at_the_last_record(five_records):
    raw(f"DELETE FROM {AuditHead._meta.db_table}")
    assert_broken_at(5, "head row is missing")


def test_a_replaced_tail_that_does_not_match_the_head_is_named(five_records):
    raw(f"DELETE FROM {TABLE} WHERE seq = 5")
    insert_replayed(seq=5, prev_hash=five_records[3].hash, of=five_records[0])
    assert_broken_at(5, "head")


# --- model changes through services -----------------------------------------------------------


def test_pausing_an_agent_appends_a_model_change_with_the_field_diff(agent, it_admin):
    before = newest_id()
    agent_services.agent_pause(agent=agent, by=it_admin, reason="drift")
    records = list(AuditRecord.objects.filter(pk__gt=before, kind="model_change"))
    assert len(records) == 1
    record = records[0]
    assert record.actor == "ita"
    assert record.payload["model"] == "agents.agent"
    assert record.payload["object_pk"] == str(agent.pk)
    assert record.payload["action"] == "update"
    assert record.payload["changes"]["status"] == ["active", "paused"]
    assert audit.verify_chain().ok


def test_a_rolled_back_change_leaves_neither_the_change_nor_its_record(agent, it_admin):
    audit.seal()
    before, head = newest_id(), AuditHead.objects.get(pk=1).seq

    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        agent_services.agent_pause(agent=agent, by=it_admin)
        assert newest_id() > before  # appended inside the transaction...
        raise Boom

    assert Agent.objects.get(pk=agent.pk).status == AgentStatus.ACTIVE
    assert newest_id() == before  # ...and rolled back with it
    assert audit.seal() == 0 and AuditHead.objects.get(pk=1).seq == head
    assert audit.verify_chain().ok


def test_registering_an_agent_records_each_created_model(it_admin):
    before = newest_id()
    agent = make_agent(slug="new-bot", owner=it_admin)
    created = AuditRecord.objects.filter(pk__gt=before, payload__action="create")
    models = {r.payload["model"] for r in created}
    assert "agents.agent" in models
    assert any(r.payload["object_pk"] == str(agent.pk) for r in created)


# --- export ---------------------------------------------------------------------------------


@pytest.fixture
def three_days_of_records():
    """One record on each of 1, 2 and 3 March 2030, at noon UTC."""
    records = []
    for day in (1, 2, 3):
        with time_machine.travel(datetime(2030, 3, day, 12, tzinfo=UTC), tick=False):
            records += append_records(1, actor=f"day-{day}")
    return records


def test_jsonl_export_holds_only_the_records_inside_the_date_range(three_days_of_records):
    lines = list(
        audit.export_lines(start=date(2030, 3, 2), end=date(2030, 3, 3), fmt="jsonl", viewer=None)
    )
    rows = [json.loads(line) for line in lines]
    assert [r["actor"] for r in rows] == ["day-2", "day-3"]
    assert rows[0]["seq"] == three_days_of_records[1].seq
    assert rows[0]["hash"] == three_days_of_records[1].hash
    assert rows[0]["payload"] == {"n": 0, "amount": 1.5}


def test_csv_export_has_a_header_and_one_row_per_record_in_range(three_days_of_records):
    text = "".join(
        audit.export_lines(start=date(2030, 3, 1), end=date(2030, 3, 1), fmt="csv", viewer=None)
    )
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 1
    assert rows[0]["actor"] == "day-1"
    assert json.loads(rows[0]["payload"]) == {"n": 0, "amount": 1.5}
    assert rows[0]["hash"] == three_days_of_records[0].hash


def test_export_refuses_an_unknown_format():
    with pytest.raises(ValueError):
        audit.export_lines(start=date(2030, 1, 1), end=date(2030, 1, 2), fmt="xml", viewer=None)


# --- the admin ------------------------------------------------------------------------------


@pytest.fixture
def auditor(db):
    user = UserFactory(username="auditor", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_auditrecord"))
    return user


def test_auditor_exports_a_date_range_from_the_admin(client, auditor, three_days_of_records):
    client.force_login(auditor)
    changelist = client.get(reverse("admin:autonomy_auditrecord_changelist"))
    export_url = reverse("admin:autonomy_auditrecord_export")
    assert changelist.status_code == 200 and export_url in changelist.content.decode()
    search = client.get(reverse("admin:autonomy_auditrecord_changelist"), {"q": "day-2"})
    assert search.status_code == 200 and search.context["cl"].result_count == 1
    assert client.get(export_url).status_code == 200  # the form

    response = client.get(export_url, {"start": "2030-03-02", "end": "2030-03-02", "fmt": "csv"})
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == (
        'attachment; filename="audit-2030-03-02-to-2030-03-02.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["actor"] for r in rows] == ["day-2"]


def test_export_form_rejects_a_start_after_the_end(client, auditor):
    client.force_login(auditor)
    url = reverse("admin:autonomy_auditrecord_export")
    response = client.get(url, {"start": "2030-03-02", "end": "2030-03-01", "fmt": "jsonl"})
    assert response.status_code == 200 and not getattr(response, "streaming", False)
    assert "must not be after" in response.content.decode()


def test_export_is_refused_without_view_auditrecord(client, viewer):
    client.force_login(viewer)
    url = reverse("admin:autonomy_auditrecord_export")
    response = client.get(url, {"start": "2030-03-01", "end": "2030-03-02", "fmt": "jsonl"})
    assert response.status_code == 403


def test_nobody_can_add_change_or_delete_records_in_the_admin(client, five_records):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    record = five_records[0]
    assert client.get(reverse("admin:autonomy_auditrecord_add")).status_code == 403
    delete = reverse("admin:autonomy_auditrecord_delete", args=[record.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    change = reverse("admin:autonomy_auditrecord_change", args=[record.pk])
    client.post(change, {"kind": "edited", "payload": "{}"})
    assert AuditRecord.objects.get(pk=record.pk).kind == "test"
    assert audit.verify_chain().ok


# --- concurrency on real PostgreSQL -------------------------------------------------------


def run_threads(targets) -> list[BaseException]:
    """Run each callable in a thread of its own (its own connection); return what they raised."""
    errors: list[BaseException] = []

    def guarded(target) -> None:
        try:
            target()
        except BaseException as exc:  # surfaced by the caller, not swallowed
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=guarded, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_and_sealers_make_one_gapless_verifiable_chain(postgres):
    AuditHead.objects.all().delete()  # as after a flush: the first sealers race to create it
    writers, per_writer, sealers = 12, 20, 3
    start = threading.Barrier(writers + sealers)
    done = threading.Event()

    def write(thread: int):
        def work() -> None:
            start.wait()
            for n in range(per_writer):
                with transaction.atomic():
                    audit.append(kind="test", payload={"thread": thread, "n": n})

        return work

    def seal_while_writing() -> None:
        start.wait()
        while not done.is_set():
            audit.seal()

    def writers_then_done() -> None:
        errors = run_threads([write(t) for t in range(writers)])
        done.set()
        assert errors == [], errors

    assert run_threads([writers_then_done] + [seal_while_writing] * sealers) == []
    audit.seal()
    total = writers * per_writer
    assert list(AuditRecord.objects.values_list("seq", flat=True)) == list(range(1, total + 1))
    report = audit.verify_chain(batch_size=50)
    assert report.ok and report.checked == total and report.unsealed == 0
    assert AuditHead.objects.get(pk=1).seq == total


@pytest.mark.django_db(transaction=True)
def test_a_record_that_commits_late_is_sealed_after_the_ones_that_committed_before(postgres):
    appended, sealed = threading.Event(), threading.Event()

    def late() -> None:
        with transaction.atomic():
            audit.append(kind="test", payload={"who": "late"})  # the smaller id
            appended.set()
            assert sealed.wait(30)

    def early() -> None:
        assert appended.wait(30)
        with transaction.atomic():
            audit.append(kind="test", payload={"who": "early"})
        audit.seal()  # the late record is not committed: it is not sealed, nor skipped over
        sealed.set()

    assert run_threads([late, early]) == []
    audit.seal()
    records = list(AuditRecord.objects.order_by("seq"))
    assert [r.payload["who"] for r in records] == ["early", "late"]
    assert records[0].pk > records[1].pk
    assert audit.verify_chain().ok


# --- savepoints -----------------------------------------------------------------------------


def test_a_record_appended_in_a_savepoint_rolled_back_is_never_sealed():
    before = newest_id()
    with transaction.atomic():
        audit.append(kind="test", payload={"n": "kept"})
        with pytest.raises(RuntimeError), transaction.atomic():
            audit.append(kind="test", payload={"n": "rolled back"})
            raise RuntimeError("the savepoint goes")
        with transaction.atomic():  # released: its record stays
            audit.append(kind="test", payload={"n": "kept too"})
    audit.seal()
    stored = list(AuditRecord.objects.filter(pk__gt=before).order_by("seq"))
    assert [r.payload["n"] for r in stored] == ["kept", "kept too"]
    assert stored[1].seq == stored[0].seq + 1 == last_seq()
    assert audit.verify_chain().ok


def test_a_transaction_that_raises_leaves_no_record_and_its_changes_roll_back():
    before, agents = newest_id(), Agent.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        make_agent(slug="never-made")
        audit.append(kind="test", payload={})
        raise RuntimeError("boom")
    assert (newest_id(), Agent.objects.count()) == (before, agents)


@pytest.mark.django_db(transaction=True)
def test_an_append_never_waits_for_another_transaction_that_appended(postgres):
    """A transaction that appended and then waits (here for a row another one holds, the
    deadlock of a single locked head) holds nothing other appenders need: the other appends
    and commits while the first is still open, and both are sealed."""
    user = UserFactory()
    locked, appended = threading.Event(), threading.Event()

    def lock_row():
        User.objects.select_for_update().get(pk=user.pk)

    def first() -> None:  # append, then lock the row
        assert locked.wait(10)
        with transaction.atomic():
            audit.append(kind="test", payload={"who": "first"})
            appended.set()
            lock_row()

    def second() -> None:  # lock the row, then append
        with transaction.atomic():
            lock_row()
            locked.set()
            assert appended.wait(10)
            audit.append(kind="test", payload={"who": "second"})

    assert run_threads([first, second]) == []
    audit.seal()
    who = AuditRecord.objects.filter(kind="test").order_by("seq")
    assert sorted(r.payload["who"] for r in who) == ["first", "second"]
    assert audit.verify_chain().ok


def _reference_plain(value):
    """``plain`` as it was written first, one ``isinstance`` after another: the spec its
    faster form must meet."""
    import uuid
    from datetime import time
    from decimal import Decimal

    if isinstance(value, dict):
        return {str(key): _reference_plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_reference_plain(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    raise TypeError(f"cannot put a {type(value).__name__} into the audit trail")


def _typed(value):
    """``value`` with every leaf's type spelled out, so 1, 1.0 and True differ."""
    if isinstance(value, dict):
        return {key: _typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_typed(item) for item in value]
    return (type(value).__name__, value)


def test_plain_gives_what_its_reference_gives_for_every_kind_of_value():
    import uuid
    from collections import OrderedDict
    from datetime import time
    from decimal import Decimal

    from autonomy.audit.chain import plain
    from workflows.models import StepStatus

    leaves = [
        "text", "", 0, 7, -3, True, False, None, 1.5, 2.0, -0.0, 1e20, float("nan"),
        float("inf"), Decimal("1.10"), uuid.UUID(int=5), datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        date(2026, 1, 2), time(3, 4), StepStatus.READY, AgentStatus.PAUSED,
    ]  # fmt: skip
    values = [
        *leaves,
        list(leaves),
        tuple(leaves),
        {"a": leaves, "b": {"c": tuple(leaves), "d": [{"e": leaf} for leaf in leaves]}},
        {2: "int key", False: "bool key", None: "none key", StepStatus.RUNNING: "enum key"},
        OrderedDict(z=1.0, y=[2.0, {"x": (3.0,)}]),
        [[[]], {}, ()],
    ]
    for value in values:
        expected = _reference_plain(value)
        assert json.dumps(_typed(plain(value)), default=str) == json.dumps(
            _typed(expected), default=str
        ), value
    for unsupported in (object(), {"a": [b"bytes"]}, {1, 2}, [complex(1, 2)]):
        with pytest.raises(TypeError, match="cannot put a"):
            plain(unsupported)
