"""The admin API an IdP or CMDB drives: policies, grants, unit thresholds, and bundles; people
with the role only, never an agent's token, refusals in the JSON envelope."""

import io
import zipfile

import pytest
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from agents import services as agent_services
from agents.models import BusinessUnit
from agents.portal_roles import PortalRole, group_name
from autonomy import grants
from autonomy.models import AuditRecord, Policy
from governance import bundle
from tests.autonomy.gate_fixtures import build_registry
from tests.conftest import assert_envelope, bearer
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def reg(db):
    return build_registry()


def person(role: str, username: str) -> APIClient:
    user = UserFactory(username=username, is_staff=True)
    user.groups.add(Group.objects.get(name=group_name(role)))
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_an_it_admin_grants_and_revokes_and_a_viewer_and_an_agent_may_not(reg):
    admin = person(PortalRole.IT_ADMIN, "ita")
    body = {"to": "agent:ap-bot", "target": "erp.read-invoice"}

    assert_envelope(person(PortalRole.VIEWER, "vic").post("/api/v1/grants/", body, format="json"),
                    403, "permission_denied")  # fmt: skip
    assert_envelope(bearer(APIClient(), reg.token).post("/api/v1/grants/", body, format="json"),
                    403, "permission_denied")  # fmt: skip
    assert not grants.is_granted(operation=reg.read, agent=reg.agent)

    asked = admin.post("/api/v1/grants/", body, format="json")
    assert asked.status_code == 202, asked.content  # widening access waits for approval
    assert not grants.is_granted(operation=reg.read, agent=reg.agent)
    again = admin.post("/api/v1/grants/", body, format="json")
    assert (again.status_code, again.json()["change"]) == (202, asked.json()["change"])
    assert AuditRecord.objects.filter(kind="registry_change_requested", actor="ita").exists()
    agent_services.registry_change_settle(
        change_id=asked.json()["change"], approved=True, actor="security"
    )
    assert grants.is_granted(operation=reg.read, agent=reg.agent)

    created = admin.post("/api/v1/grants/", body, format="json")
    assert created.status_code == 200, created.content  # held already: nothing to ask
    listed = admin.get("/api/v1/grants/", {"to": "agent:ap-bot"}).json()
    assert listed["results"] == [created.json()] and listed["count"] == 1

    assert admin.delete(f"/api/v1/grants/{created.json()['id']}/").status_code == 204
    assert not grants.is_granted(operation=reg.read, agent=reg.agent)
    assert_envelope(admin.delete(f"/api/v1/grants/{created.json()['id']}/"), 404, "not_found")


def test_a_grant_to_an_unknown_holder_or_target_is_refused(reg):
    refused = person(PortalRole.IT_ADMIN, "ita").post(
        "/api/v1/grants/", {"to": "role:ghost", "target": "erp.nothing"}, format="json"
    )
    error = assert_envelope(refused, 400, "validation_failed")
    assert set(error["details"]["fields"]) == {"to", "target"}


def test_a_policy_owner_creates_edits_and_deletes_policies_through_the_one_validation(reg):
    owner = person(PortalRole.RISK_OFFICER, "rita")
    invalid = owner.post(
        "/api/v1/policies/", {"name": "broken", "text": "permit (principal"}, format="json"
    )
    error = assert_envelope(invalid, 400, "validation_failed")
    assert "text" in error["details"]["fields"]
    assert not Policy.objects.filter(name="broken").exists()

    created = owner.post(
        "/api/v1/policies/",
        {"name": "no-erp", "text": 'forbid (principal, action, resource in Connector::"erp");'},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["enabled"] is False and created.json()["version"] == 1
    url = f"/api/v1/policies/{created.json()['id']}/"
    edited = owner.patch(url, {"enabled": True, "description": "stop"}, format="json")
    # enabling is a change of its own: the policy history records version 2
    assert edited.json()["enabled"] is True and edited.json()["version"] == 2
    assert_envelope(owner.patch(url, {"text": "forbid ("}, format="json"), 400, "validation_failed")
    assert_envelope(
        person(PortalRole.VIEWER, "vic").patch(url, {"enabled": False}, format="json"),
        403, "permission_denied",
    )  # fmt: skip
    assert person(PortalRole.VIEWER, "vic2").get(url).status_code == 200
    assert owner.delete(url).status_code == 204
    assert not Policy.objects.filter(name="no-erp").exists()


def test_an_it_admin_sets_unit_thresholds_within_0_to_100(reg):
    admin = person(PortalRole.IT_ADMIN, "ita")
    unit = BusinessUnit.objects.get(slug="finance")
    url = f"/api/v1/business-units/{unit.pk}/"

    changed = admin.patch(url, {"approval_threshold": 40, "deny_threshold": 90}, format="json")
    assert changed.status_code == 200, changed.content
    assert (changed.json()["approval_threshold"], changed.json()["deny_threshold"]) == (40, 90)
    assert AuditRecord.objects.get(kind="business_unit_changed").payload["changes"] == {
        "approval_threshold": [50, 40], "deny_threshold": [85, 90]
    }  # fmt: skip
    assert_envelope(admin.patch(url, {"deny_threshold": 101}, format="json"), 400,
                    "validation_failed")  # fmt: skip
    assert_envelope(person(PortalRole.VIEWER, "vic").patch(url, {"deny_threshold": 60},
                    format="json"), 403, "permission_denied")  # fmt: skip
    assert BusinessUnit.objects.get(pk=unit.pk).deny_threshold == 90


def _zip(files: dict[str, str]):
    upload = io.BytesIO(bundle.zip_bytes(files))
    upload.name = "bundle.zip"
    return upload


def test_the_bundle_downloads_plans_and_applies_by_api_and_viewers_may_not(reg):
    admin = person(PortalRole.IT_ADMIN, "ita")
    assert_envelope(person(PortalRole.VIEWER, "vic").get("/api/v1/governance/bundle/"), 403,
                    "permission_denied")  # fmt: skip
    assert_envelope(bearer(APIClient(), reg.token).get("/api/v1/governance/bundle/"), 403,
                    "permission_denied")  # fmt: skip

    download = admin.get("/api/v1/governance/bundle/")
    assert download.status_code == 200 and download["Content-Type"] == "application/zip"
    files = bundle.read_zip(download.content)
    assert "policies/baseline.cedar" in files and "bundle.yaml" in files

    files["units.yaml"] = files["units.yaml"].replace("deny_threshold: 85", "deny_threshold: 80")
    plan = admin.post("/api/v1/governance/plan/", {"bundle": _zip(files)}, format="multipart")
    assert plan.status_code == 200, plan.content
    body = plan.json()
    assert body["valid"] and [c["key"] for c in body["changes"]] == ["finance"]
    assert body["changes"][0]["lines"] == ["deny_threshold: 85 -> 80"]

    applied = admin.post(
        "/api/v1/governance/apply/",
        {"bundle": _zip(files), "expect_live": body["live_digest"]},
        format="multipart",
    )
    assert applied.status_code == 200, applied.content
    assert BusinessUnit.objects.get(slug="finance").deny_threshold == 80
    again = admin.post(
        "/api/v1/governance/apply/",
        {"bundle": _zip(files), "expect_live": body["live_digest"]},
        format="multipart",
    )
    assert_envelope(again, 409, "bundle_live_changed")


def test_an_uploaded_archive_that_is_no_bundle_is_refused_with_the_envelope(reg):
    admin = person(PortalRole.IT_ADMIN, "ita")
    junk = io.BytesIO(b"not an archive")
    junk.name = "x.zip"
    assert_envelope(
        admin.post("/api/v1/governance/plan/", {"bundle": junk}, format="multipart"),
        400, "bundle_invalid",
    )  # fmt: skip
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("/etc/passwd.yaml", "x: 1")
    buffer.seek(0)
    buffer.name = "evil.zip"
    assert_envelope(
        admin.post("/api/v1/governance/plan/", {"bundle": buffer}, format="multipart"),
        400, "bundle_invalid",
    )  # fmt: skip


def test_listing_grants_costs_the_same_queries_for_2_and_40_grants(
    reg, django_assert_max_num_queries
):
    from agents import services as agent_services
    from autonomy.models import Operation

    admin = person(PortalRole.IT_ADMIN, "ita")
    admin.get("/api/v1/grants/")  # warm: content types, the session's user and groups
    with django_assert_max_num_queries(12) as few:
        assert admin.get("/api/v1/grants/").json()["count"] == 1
    for n in range(20):
        operation = Operation.objects.create(connector=reg.erp, slug=f"op-{n}", name=f"Op {n}")
        grants.grant(target=operation, to=reg.agent.role)
        grants.grant(target=operation, to=reg.agent)
    agent_services.agent_register(
        name="Other", slug="other", owner=reg.officer, business_unit=reg.agent.business_unit,
        role=reg.agent.role, approved=True,
    )  # fmt: skip
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert admin.get("/api/v1/grants/").json()["count"] == 41
