"""The evidence pack: its signature verifies, every file is held to the manifest, and its
audit records are re-verified from the pack alone, so an edited, removed or reordered record
fails even when the attacker rebuilt the manifest around it."""

import base64
import hashlib
import io
import json
import zipfile
from datetime import date, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from agents.portal_roles import PortalRole, group_name
from agents.services import portal_roles_sync
from approvals.models import ApprovalRequest, Channel, Verdict
from approvals.services import approval_decide
from autonomy import audit
from autonomy.audit import keys
from autonomy.audit.chain import record_hash
from autonomy.audit.keys import public_key_id
from autonomy.audit.segment import record_from_row
from autonomy.models import AuditRecord, Intervention, InterventionKind
from compliance import periods
from compliance.evidence import SECTIONS, pack_build, pack_verify
from compliance.evidence_queries import EVIDENCE_QUERIES
from compliance.models import Control, Framework
from interventions import services as intervention_services
from tests.approvals.conftest import approver, pending_action
from tests.autonomy.gate_fixtures import build_registry
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def checkpoint_file(settings, tmp_path):
    settings.AUTONOMY_AUDIT_HEAD_SINK = str(tmp_path / "checkpoints.jsonl")


def person(role: str, username: str | None = None):
    portal_roles_sync()
    user = UserFactory(username=username or role, is_staff=True)
    user.groups.add(Group.objects.get(name=group_name(role)))
    return user


@pytest.fixture
def world():
    """An agent whose action waited for a person who approved it, a pause, a published head."""
    registry = build_registry()
    action = pending_action(registry)
    request = ApprovalRequest.objects.get(action=action)
    approval_decide(
        request_id=request.pk,
        approver=approver("alice"),
        verdict=Verdict.APPROVE,
        channel=Channel.INBOX,
        comment="fine",
    )
    officer = person(PortalRole.RISK_OFFICER, "risk")
    intervention_services.agent_pause(agent=registry.agent, by=officer, reason="checking")
    audit.publish()
    return registry


def build(period=None) -> bytes:
    out = io.BytesIO()
    pack_build(period=period or periods.current_quarter(), out=out, generated_by="test")
    return out.getvalue()


def entries(pack: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(pack)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rezip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def rows(files) -> list[dict]:
    return [json.loads(line) for line in files["audit_records.jsonl"].splitlines()]


def with_rows(files, new_rows) -> dict:
    lines = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in new_rows).encode()
    return {**files, "audit_records.jsonl": lines}


def rebuilt_manifest(files, *, sign_with=None) -> dict:
    """What an attacker does after editing files: fix every hash in the manifest and sign it
    again with ``sign_with`` (a private key and its id), or keep the old signature."""
    manifest = json.loads(files["manifest.json"])
    for entry in manifest["files"]:
        entry["sha256"] = hashlib.sha256(files[entry["name"]]).hexdigest()
    if sign_with:
        manifest["key_id"] = sign_with[0]
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode()
    files = {**files, "manifest.json": manifest_bytes}
    if sign_with:
        files["signature"] = base64.b64encode(sign_with[1].sign(manifest_bytes))
    return files


def edit_payload(row: dict) -> dict:
    return {**row, "payload": {**row["payload"], "edited": True}}


def test_a_fresh_pack_verifies(world):
    report = pack_verify(build())

    assert report.ok, report.problems
    assert report.signature_ok and report.files_ok and report.audit_ok
    assert report.audit_records_checked == AuditRecord.objects.count()


def test_the_pack_holds_every_section_for_the_seeded_period(world):
    files = entries(build())

    assert list(files) == [name for name, _ in SECTIONS] + ["manifest.json", "signature"]
    manifest = json.loads(files["manifest.json"])
    assert manifest["key_id"] == keys.signing_key()[0]
    assert {f["name"] for f in manifest["files"]} == {name for name, _ in SECTIONS}
    policies = json.loads(files["policies_in_force.json"])["policies"]
    assert [(p["name"], p["version"]) for p in policies] == [("baseline", 1)]
    decisions = json.loads(files["decisions.json"])
    assert decisions["by_verdict"] == {"needs_approval": 1}
    assert decisions["by_operation"] == {"erp.post-invoice": 1}
    assert decisions["by_business_unit"] == {"finance": 1}
    approvals = json.loads(files["approvals.json"])
    assert approvals["decided_by_status"] == {"approved": 1}
    assert approvals["median_seconds_to_decision"] >= 0
    assert [(d["approver"], d["verdict"]) for d in approvals["decisions"]] == [("alice", "approve")]
    interventions = json.loads(files["interventions.json"])
    assert interventions["by_kind"] == {"pause": 1}
    assert interventions["interventions"][0]["by"] == "risk"
    assert json.loads(files["reviews.json"]) == {"reviews": []}
    controls = json.loads(files["controls.json"])["controls"]
    assert {c["ref"]: c["evidence_count"] for c in controls}["AOS-HUM-01"] == 1
    kinds = {r["kind"] for r in rows(files)}
    assert {"action_decision", "approval_decision", "intervention"} <= kinds
    verification = json.loads(files["audit_verification.json"])
    assert verification["trail"]["ok"] is True
    assert verification["published_head"]["seq"] >= verification["segment"]["first_seq"]


def test_a_pack_of_an_empty_period_verifies(world):
    report = pack_verify(build(periods.days(date(2001, 1, 1), date(2001, 3, 31))))

    assert report.ok, report.problems
    assert report.audit_records_checked == 0


@pytest.mark.parametrize("name", [name for name, _ in SECTIONS])
def test_tampering_with_any_file_is_a_hash_mismatch(world, name):
    files = entries(build())
    files[name] = files[name].replace(b"}", b"} ", 1) if b"}" in files[name] else b" "

    report = pack_verify(rezip(files))

    assert report.signature_ok
    assert not report.files_ok
    assert f"{name}: its SHA-256 does not match the manifest" in report.problems


@pytest.mark.parametrize("resign", ["another key", "not re-signed"])
def test_edited_audit_records_fail_even_with_the_manifest_rebuilt(world, resign):
    files = entries(build())
    edited = rows(files)
    edited[1] = edit_payload(edited[1])
    forger = Ed25519PrivateKey.generate()
    sign_with = (public_key_id(forger.public_key()), forger) if resign == "another key" else None

    report = pack_verify(rezip(rebuilt_manifest(with_rows(files, edited), sign_with=sign_with)))

    assert report.files_ok  # the hashes were fixed
    assert not report.signature_ok
    assert not report.audit_ok
    assert any("MAC does not match" in p for p in report.problems)


def test_a_rebuilt_manifest_under_the_original_signature_fails_the_signature(world):
    files = entries(build())
    edited = rows(files)
    edited[0] = edit_payload(edited[0])

    report = pack_verify(rezip(rebuilt_manifest(with_rows(files, edited))))

    assert not report.signature_ok
    assert "the manifest's signature does not verify: forged or altered" in report.problems
    assert not report.ok


def test_an_edited_record_rehashed_without_the_mac_key_fails_the_audit_check(world):
    """The strongest attacker short of the MAC key: the chain recomputed after the edit and
    the manifest signed again with the real signing key."""
    files = entries(build())
    records = [record_from_row(r) for r in rows(files)]
    records[1].payload = {**records[1].payload, "edited": True}
    prev_hash = records[0].hash
    for record in records[1:]:
        record.prev_hash = prev_hash
        record.hash = prev_hash = record_hash(record)
    forged = [{**r, "payload": rec.payload, "prev_hash": rec.prev_hash, "hash": rec.hash}
              for r, rec in zip(rows(files), records, strict=True)]  # fmt: skip

    report = pack_verify(
        rezip(rebuilt_manifest(with_rows(files, forged), sign_with=keys.signing_key()))
    )

    assert report.signature_ok and report.files_ok
    assert not report.audit_ok
    assert any(f"record #{records[1].seq}: its MAC does not match" in p for p in report.problems), (
        report.problems
    )


@pytest.mark.parametrize(
    "change", ["first removed", "removed", "reordered", "last removed", "added"]
)
def test_a_removed_reordered_or_added_record_fails_the_audit_check(world, change):
    files = entries(build())
    original = rows(files)
    changed = {
        "first removed": original[1:],
        "removed": original[:1] + original[2:],
        "reordered": [original[1], original[0], *original[2:]],
        "last removed": original[:-1],
        "added": [*original, {**original[-1], "seq": original[-1]["seq"] + 1}],
    }[change]

    report = pack_verify(
        rezip(rebuilt_manifest(with_rows(files, changed), sign_with=keys.signing_key()))
    )

    assert report.signature_ok and report.files_ok
    assert not report.audit_ok


def test_building_a_pack_costs_the_same_queries_with_more_rows(world):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            build()
        return len(captured)

    before = queries()
    officer = person(PortalRole.RISK_OFFICER, "risk-2")
    Intervention.objects.bulk_create(
        Intervention(kind=InterventionKind.PAUSE, scope="agent", agent=world.agent, by=officer,
                     reason=f"r{n}")
        for n in range(30)
    )  # fmt: skip
    with transaction.atomic():
        for n in range(30):
            audit.append(kind="test", payload={"n": n})
    audit.seal()

    assert queries() == before


def test_a_pack_made_while_the_trail_was_broken_says_so(world):
    AuditRecord.objects.filter(seq=2).update(payload={"rewritten": True})

    report = pack_verify(build())

    assert not report.audit_ok
    assert any("did not verify when the pack was made" in p or "MAC" in p for p in report.problems)


def test_the_shipped_controls_exist_and_each_evidence_key_resolves():
    controls = list(Control.objects.prefetch_related("mappings"))

    assert len(controls) >= 15
    assert all(c.evidence_key in EVIDENCE_QUERIES for c in controls)
    frameworks = {m.framework for c in controls for m in c.mappings.all()}
    assert frameworks == set(Framework.values)
    refs = {(m.framework, m.ref) for c in controls for m in c.mappings.all()}
    assert {(Framework.EU_AI_ACT, "Art. 26(5)"), (Framework.EU_AI_ACT, "Art. 12")} <= refs
    assert (Framework.NIST_AI_RMF, "MANAGE 2.4") in refs
    assert (Framework.ISO_42001, "Clause 6.1.2") in refs


def test_every_evidence_query_counts_for_a_period():
    period = periods.current_quarter()
    for key, (_, query) in EVIDENCE_QUERIES.items():
        assert isinstance(query(period.start, period.end), int), key


# --- the page and the download --------------------------------------------------------------


@pytest.mark.parametrize("role", [PortalRole.VIEWER, PortalRole.APPROVER, PortalRole.IT_ADMIN])
def test_people_without_the_role_get_403(client, role):
    client.force_login(person(role))

    assert client.get(reverse("compliance:index")).status_code == 403
    assert client.post(reverse("compliance:pack"), {"quarter": "2026-Q1"}).status_code == 403
    assert not AuditRecord.objects.filter(kind="evidence_pack_exported").exists()


@pytest.mark.parametrize("role", [PortalRole.RISK_OFFICER, PortalRole.AUDITOR])
def test_risk_officers_and_auditors_download_a_pack_that_verifies(client, world, role):
    client.force_login(person(role, "downloader"))

    response = client.post(reverse("compliance:pack"), {"quarter": periods.current_quarter().label})

    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    pack = b"".join(response.streaming_content)
    assert pack_verify(pack).ok
    exported = AuditRecord.objects.get(kind="evidence_pack_exported")
    assert exported.actor == "downloader"
    manifest = json.loads(entries(pack)["manifest.json"])
    assert exported.payload["files"] == {f["name"]: f["sha256"] for f in manifest["files"]}


def test_a_bad_period_is_refused(client):
    client.force_login(person(PortalRole.AUDITOR))

    response = client.post(reverse("compliance:pack"), {"start": "2026-05-01", "end": "2026-04-01"})

    assert response.status_code == 400
    assert client.get(reverse("compliance:index"), {"quarter": "2026-Q9"}).status_code == 400


def test_the_page_filters_by_framework_and_counts_evidence(client, world):
    client.force_login(person(PortalRole.AUDITOR))

    response = client.get(reverse("compliance:index"), {"framework": Framework.EU_AI_ACT})

    assert response.status_code == 200
    shown = {row["ref"] for row in response.context["controls"]}
    expected = set(
        Control.objects.filter(mappings__framework=Framework.EU_AI_ACT).values_list(
            "ref", flat=True
        )
    )
    assert shown == expected and shown != set(Control.objects.values_list("ref", flat=True))
    counts = {row["ref"]: row["evidence_count"] for row in response.context["controls"]}
    assert counts["AOS-HUM-01"] == 1
    assert b"Download evidence pack" in response.content


def test_the_page_costs_the_same_with_more_controls(client, django_assert_max_num_queries):
    client.force_login(person(PortalRole.AUDITOR))
    client.get(reverse("compliance:index"))  # warm the session and permission caches
    keys_used = Control.objects.values("evidence_key").distinct().count()
    for n in range(40):
        Control.objects.create(
            ref=f"X-{n}", title="x", description="x", feature="x", evidence="x",
            evidence_key="audit_records",
        )  # fmt: skip

    with django_assert_max_num_queries(keys_used + 8):
        assert client.get(reverse("compliance:index")).status_code == 200


# --- the commands ---------------------------------------------------------------------------


def test_the_commands_write_and_verify_a_pack(world, tmp_path, capsys):
    today = date.today()
    out = tmp_path / "pack.zip"
    call_command(
        "evidence_pack", "--from", str(today - timedelta(days=1)), "--to", str(today),
        "--out", str(out),
    )  # fmt: skip
    call_command("evidence_verify", str(out))
    assert "evidence pack OK" in capsys.readouterr().out

    files = entries(out.read_bytes())
    edited = rows(files)
    edited[0] = edit_payload(edited[0])
    out.write_bytes(rezip(with_rows(files, edited)))
    with pytest.raises(SystemExit) as exit_:
        call_command("evidence_verify", str(out))
    assert exit_.value.code == 1
    assert "evidence pack REFUSED" in capsys.readouterr().err


# --- the control map in the admin -----------------------------------------------------------


def test_a_risk_officer_edits_a_control_in_the_admin_and_the_edit_is_audited(client):
    control = Control.objects.get(ref="AOS-HUM-03")
    client.force_login(person(PortalRole.RISK_OFFICER))
    url = reverse("admin:compliance_control_change", args=[control.pk])
    form = client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields}
    prefix = "mappings"
    mappings = list(control.mappings.all())
    data.update({
        "title": "People can stop an agent at once",
        f"{prefix}-TOTAL_FORMS": len(mappings), f"{prefix}-INITIAL_FORMS": len(mappings),
        f"{prefix}-MIN_NUM_FORMS": 0, f"{prefix}-MAX_NUM_FORMS": 1000,
    })  # fmt: skip
    for i, mapping in enumerate(mappings):
        data.update({
            f"{prefix}-{i}-id": mapping.pk, f"{prefix}-{i}-control": control.pk,
            f"{prefix}-{i}-framework": mapping.framework, f"{prefix}-{i}-ref": mapping.ref,
        })  # fmt: skip

    response = client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    control.refresh_from_db()
    assert control.title == "People can stop an agent at once"
    assert AuditRecord.objects.filter(
        kind="model_change", payload__model="compliance.control"
    ).exists()


def test_an_unknown_evidence_key_is_refused_in_the_admin(client):
    client.force_login(person(PortalRole.RISK_OFFICER))

    response = client.post(
        reverse("admin:compliance_control_add"),
        {
            "ref": "X-1", "title": "x", "description": "x", "feature": "x", "evidence": "x",
            "evidence_key": "no_such_query", "mappings-TOTAL_FORMS": 0,
            "mappings-INITIAL_FORMS": 0,
        },
    )  # fmt: skip

    assert response.status_code == 200
    assert "evidence_key" in response.context["adminform"].form.errors
    assert not Control.objects.filter(ref="X-1").exists()


@pytest.mark.parametrize("role", [PortalRole.AUDITOR, PortalRole.VIEWER])
def test_only_risk_officers_edit_controls(client, role):
    control = Control.objects.get(ref="AOS-HUM-03")
    client.force_login(person(role))

    response = client.post(
        reverse("admin:compliance_control_change", args=[control.pk]), {"title": "x"}
    )

    assert response.status_code == 403
