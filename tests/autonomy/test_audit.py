"""The tamper-evident audit trail: the chain, its verification, model changes, exports."""

import csv
import io
import json
import threading
import uuid
from contextlib import nullcontext
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
from autonomy.audit.chain import GENESIS_HASH, record_hash
from autonomy.models import AuditHead, AuditRecord
from tests.factories import UserFactory, make_agent

pytestmark = pytest.mark.django_db

TABLE = AuditRecord._meta.db_table


def append_records(count: int, **fields) -> list[AuditRecord]:
    with transaction.atomic():
        return [
            audit.append(kind="test", payload={"n": n, "amount": 1.5}, **fields)
            for n in range(count)
        ]


def raw(sql: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def last_seq() -> int:
    return AuditRecord.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


@pytest.fixture
def five_records():
    """Records #1..#5 of a fresh chain (fixtures may have appended model changes before)."""
    AuditRecord.objects.all().delete()
    AuditHead.objects.all().delete()
    return append_records(5)


# --- the chain ------------------------------------------------------------------------------


def test_appended_records_link_each_to_the_previous_hash_and_verify():
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
    stored = AuditRecord.objects.get(pk=record.pk)
    assert record_hash(stored) == stored.hash
    assert stored.payload["when"] == "2030-01-01T00:00:00+00:00"


def stored_values(record: AuditRecord) -> dict:
    return {f.attname: getattr(record, f.attname) for f in AuditRecord._meta.concrete_fields}


@pytest.mark.parametrize("deferred", [False, True], ids=["immediate", "deferred"])
def test_an_appended_record_is_stored_with_exactly_the_values_it_was_given(deferred):
    agent_id, action_id = "8d6f2a0e-8a4e-4c55-9d6b-0c1f3c9c1e11", uuid.uuid4()
    with transaction.atomic(), audit.deferred() if deferred else nullcontext():
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
    assert record_hash(stored) == stored.hash
    assert AuditHead.objects.get(pk=1).hash == stored.hash


@pytest.mark.django_db(transaction=True)
def test_append_outside_a_transaction_raises_and_writes_nothing():
    with pytest.raises(transaction.TransactionManagementError):
        audit.append(kind="test", payload={})
    assert not AuditRecord.objects.exists()


def test_append_recreates_a_missing_head_at_the_last_record():
    records = append_records(2)
    AuditHead.objects.all().delete()
    record = append_records(1)[0]
    assert record.seq == records[-1].seq + 1 and record.prev_hash == records[-1].hash
    assert audit.verify_chain().ok


# --- verify_audit ---------------------------------------------------------------------------


def test_verify_audit_reports_an_intact_chain_and_exits_zero(five_records):
    out = io.StringIO()
    call_command("verify_audit", stdout=out)
    assert out.getvalue().strip() == "audit chain OK: 5 records"


def test_verify_audit_names_the_broken_record_and_exits_one(five_records):
    raw(f"UPDATE {TABLE} SET payload = %s WHERE seq = 3", [json.dumps({"n": 99})])
    err = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("verify_audit", stdout=io.StringIO(), stderr=err)
    assert exit_info.value.code == 1
    assert err.getvalue().startswith("audit chain BROKEN at record #3: ")


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


def test_an_edited_record_with_a_recomputed_hash_breaks_the_link_of_the_next(five_records):
    forged = AuditRecord.objects.get(seq=3)
    forged.payload = {"n": 2, "amount": 1000000}
    new_values = [json.dumps(forged.payload), record_hash(forged)]
    raw(f"UPDATE {TABLE} SET payload = %s, hash = %s WHERE seq = 3", new_values)
    assert_broken_at(4, "prev_hash")


def test_a_deleted_record_is_named_as_missing(five_records):
    raw(f"DELETE FROM {TABLE} WHERE seq = 3")
    assert_broken_at(3, "missing")


def test_a_deleted_record_with_the_rest_renumbered_is_caught_where_it_was(five_records):
    raw(f"DELETE FROM {TABLE} WHERE seq = 3")
    raw(f"UPDATE {TABLE} SET seq = -(seq - 1) WHERE seq > 3")
    raw(f"UPDATE {TABLE} SET seq = -seq WHERE seq < 0")
    assert_broken_at(3, "prev_hash")


def insert_forged(*, seq: int, prev_hash: str) -> None:
    forged = AuditRecord(
        seq=seq,
        created_at=datetime.now(UTC),
        kind="test",
        actor="mallory",
        payload={"n": 42},
        prev_hash=prev_hash,
    )
    raw(
        f"INSERT INTO {TABLE} (seq, created_at, kind, actor, payload, prev_hash, hash) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        [
            seq,
            connection.ops.adapt_datetimefield_value(forged.created_at),
            forged.kind,
            forged.actor,
            json.dumps(forged.payload),
            prev_hash,
            record_hash(forged),
        ],
    )


def test_a_record_forged_into_the_middle_is_caught_at_the_record_after_it(five_records):
    # Make room at #3, then insert a record whose own hash and link are plausible.
    raw(f"UPDATE {TABLE} SET seq = -seq WHERE seq >= 3")
    raw(f"UPDATE {TABLE} SET seq = -seq + 1 WHERE seq < 0")
    insert_forged(seq=3, prev_hash=five_records[1].hash)
    assert_broken_at(4, "prev_hash")


def test_a_record_forged_onto_the_end_is_named_as_beyond_the_head(five_records):
    insert_forged(seq=6, prev_hash=five_records[-1].hash)
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
    assert_broken_at(2, "edited")


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
    insert_forged(seq=5, prev_hash=five_records[3].hash)
    assert_broken_at(5, "head")


# --- model changes through services -----------------------------------------------------------


def test_pausing_an_agent_appends_a_model_change_with_the_field_diff(agent, it_admin):
    before = last_seq()
    agent_services.agent_pause(agent=agent, by=it_admin, reason="drift")
    records = list(AuditRecord.objects.filter(seq__gt=before, kind="model_change"))
    assert len(records) == 1
    record = records[0]
    assert record.actor == "ita"
    assert record.payload["model"] == "agents.agent"
    assert record.payload["object_pk"] == str(agent.pk)
    assert record.payload["action"] == "update"
    assert record.payload["changes"]["status"] == ["active", "paused"]
    assert audit.verify_chain().ok


def test_a_rolled_back_change_leaves_neither_the_change_nor_its_record(agent, it_admin):
    before = AuditHead.objects.get(pk=1).seq

    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        agent_services.agent_pause(agent=agent, by=it_admin)
        assert last_seq() > before  # appended inside the transaction...
        raise Boom

    assert Agent.objects.get(pk=agent.pk).status == AgentStatus.ACTIVE
    assert last_seq() == before == AuditHead.objects.get(pk=1).seq  # ...and rolled back with it
    assert audit.verify_chain().ok


def test_registering_an_agent_records_each_created_model(it_admin):
    before = last_seq()
    agent = make_agent(slug="new-bot", owner=it_admin)
    created = AuditRecord.objects.filter(seq__gt=before, payload__action="create")
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
    lines = list(audit.export_lines(start=date(2030, 3, 2), end=date(2030, 3, 3), fmt="jsonl"))
    rows = [json.loads(line) for line in lines]
    assert [r["actor"] for r in rows] == ["day-2", "day-3"]
    assert rows[0]["seq"] == three_days_of_records[1].seq
    assert rows[0]["hash"] == three_days_of_records[1].hash
    assert rows[0]["payload"] == {"n": 0, "amount": 1.5}


def test_csv_export_has_a_header_and_one_row_per_record_in_range(three_days_of_records):
    text = "".join(audit.export_lines(start=date(2030, 3, 1), end=date(2030, 3, 1), fmt="csv"))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 1
    assert rows[0]["actor"] == "day-1"
    assert json.loads(rows[0]["payload"]) == {"n": 0, "amount": 1.5}
    assert rows[0]["hash"] == three_days_of_records[0].hash


def test_export_refuses_an_unknown_format():
    with pytest.raises(ValueError):
        audit.export_lines(start=date(2030, 1, 1), end=date(2030, 1, 2), fmt="xml")


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


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_make_one_gapless_verifiable_chain(postgres):
    AuditHead.objects.all().delete()  # as after a flush: the first appends race to create it
    threads_count, per_thread = 8, 25
    start = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def work(thread: int) -> None:
        try:
            start.wait()
            for n in range(per_thread):
                with transaction.atomic():
                    audit.append(kind="test", payload={"thread": thread, "n": n})
        except BaseException as exc:  # surfaced below, not swallowed
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    total = threads_count * per_thread
    assert list(AuditRecord.objects.values_list("seq", flat=True)) == list(range(1, total + 1))
    report = audit.verify_chain(batch_size=50)
    assert report.ok and report.checked == total
    assert AuditHead.objects.get(pk=1).seq == total


# --- deferred appends -----------------------------------------------------------------------


def test_deferred_appends_are_written_together_at_the_end_of_the_block_in_order():
    before = last_seq()
    with transaction.atomic():
        with audit.deferred():
            records = [audit.append(kind="test", payload={"n": n}) for n in range(3)]
            assert last_seq() == before  # nothing written yet, the head not locked
            assert all(r.pk is None for r in records)
        assert last_seq() == before + 3
    stored = list(AuditRecord.objects.filter(seq__gt=before).order_by("seq"))
    assert [r.payload["n"] for r in stored] == [0, 1, 2]
    assert [r.pk for r in records] == [r.pk for r in stored]
    assert [r.hash for r in records] == [r.hash for r in stored]
    assert stored[1].prev_hash == stored[0].hash and stored[2].prev_hash == stored[1].hash
    head = AuditHead.objects.get(pk=1)
    assert (head.seq, head.hash) == (stored[2].seq, stored[2].hash)
    assert audit.verify_chain().ok


def test_a_deferred_append_in_a_savepoint_rolled_back_is_not_written():
    before = last_seq()
    with transaction.atomic(), audit.deferred():
        audit.append(kind="test", payload={"n": "kept"})
        with pytest.raises(RuntimeError), transaction.atomic():
            audit.append(kind="test", payload={"n": "rolled back"})
            raise RuntimeError("the savepoint goes")
        with transaction.atomic():  # released: its record stays
            audit.append(kind="test", payload={"n": "kept too"})
    stored = list(AuditRecord.objects.filter(seq__gt=before).order_by("seq"))
    assert [r.payload["n"] for r in stored] == ["kept", "kept too"]
    assert [r.seq for r in stored] == [before + 1, before + 2]
    assert audit.verify_chain().ok


def test_a_deferred_block_that_raises_writes_nothing_and_its_changes_roll_back():
    before, agents = last_seq(), Agent.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic(), audit.deferred():
        make_agent(slug="never-made")
        audit.append(kind="test", payload={})
        raise RuntimeError("boom")
    assert (last_seq(), Agent.objects.count()) == (before, agents)


def test_a_nested_deferred_block_leaves_the_writing_to_the_outer_one():
    before = last_seq()
    with transaction.atomic(), audit.deferred():
        with audit.deferred():
            audit.append(kind="test", payload={"n": 1})
        assert last_seq() == before
        audit.append(kind="test", payload={"n": 2})
    assert last_seq() == before + 2


@pytest.mark.django_db(transaction=True)
def test_deferred_needs_a_transaction():
    with pytest.raises(transaction.TransactionManagementError), audit.deferred():
        pass


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("deferred", [True, False], ids=["deferred", "immediate"])
def test_a_deferred_append_never_holds_the_head_while_its_transaction_waits_for_a_row(
    postgres, deferred
):
    """One transaction appends, then locks a row; another locks that row, then appends.
    Appending at once, the first holds the chain's head while it waits for the row, and the
    second holds the row while it waits for the head: PostgreSQL finds a deadlock. Deferred,
    the head is taken at the end, and both commit."""
    user = UserFactory()
    locked, appended = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def lock_row():
        User.objects.select_for_update().get(pk=user.pk)

    def first() -> None:  # append, then lock the row
        try:
            assert locked.wait(10)
            with transaction.atomic(), audit.deferred() if deferred else nullcontext():
                audit.append(kind="test", payload={"who": "first"})
                appended.set()
                lock_row()
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            appended.set()
            connection.close()

    def second() -> None:  # lock the row, then append
        try:
            with transaction.atomic():
                lock_row()
                locked.set()
                assert appended.wait(10)
                audit.append(kind="test", payload={"who": "second"})
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            locked.set()
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    if deferred:
        assert errors == []
        who = AuditRecord.objects.filter(kind="test").order_by("seq")
        assert [r.payload["who"] for r in who] == ["second", "first"]
        assert audit.verify_chain().ok
    else:  # the choreography does make the deadlock this guards against
        assert len(errors) == 1 and "deadlock" in str(errors[0]), errors


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
