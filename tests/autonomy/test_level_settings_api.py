"""/api/v1/autonomy-settings/: a risk officer sets a level where the admin would, with the same
checks, and the next decision applies it; refusals are the JSON envelope."""

import pytest
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from agents.portal_roles import PortalRole, group_name
from autonomy import levels
from autonomy.models import AuditRecord, AutonomySetting
from tests.conftest import assert_envelope, bearer
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/autonomy-settings/"
KEY = "erp.post-invoice"


def person(role: str, username: str):
    user = UserFactory(username=username, is_staff=True)
    user.groups.add(Group.objects.get(name=group_name(role)))
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_a_risk_officer_sets_a_level_the_next_decision_applies_and_removes_it(registry):
    rita = person(PortalRole.RISK_OFFICER, "rita")
    created = rita.post(
        URL,
        {"level": "supervised", "business_unit": "finance", "operations": [KEY], "note": "pilot"},
        format="json",
    )

    assert created.status_code == 201, created.content
    body = created.json()
    assert body["scope"] == "business unit finance" and body["operations"] == [KEY]
    assert levels.level_for(agent=registry.agent, operation_key=KEY).as_dict() == {
        "level": "supervised",
        "source": "business unit finance",
    }
    record = AuditRecord.objects.get(kind="autonomy_setting_created")
    assert record.actor == "rita" and record.payload["level"] == "supervised"
    listed = person(PortalRole.VIEWER, "vic").get(URL).json()
    assert [s["id"] for s in listed["results"]] == [body["id"]]

    assert rita.delete(f"{URL}{body['id']}/").status_code == 204
    assert not AutonomySetting.objects.exists()
    assert levels.level_for(agent=registry.agent, operation_key=KEY) == levels.DEFAULT
    assert AuditRecord.objects.filter(kind="autonomy_setting_deleted").count() == 1


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"level": "shadow"}, "validation_failed", None),  # no scope
        ({"level": "shadow", "business_unit": "finance", "template_key": "x"},
         "validation_failed", None),  # two scopes
        ({"level": "shadow", "business_unit": "finance", "operations": ["erp.nope"]},
         "validation_failed", "operations"),
        ({"level": "reckless", "business_unit": "finance"}, "validation_failed", "level"),
        ({"level": "shadow", "business_unit": "nowhere"}, "validation_failed", "business_unit"),
        ({"level": "shadow", "business_unit": "finance", "colour": "red"}, "unknown_field", None),
    ],
)  # fmt: skip
def test_a_setting_the_admin_would_refuse_is_refused_with_the_envelope(registry, body, code, field):
    response = person(PortalRole.RISK_OFFICER, "rita").post(URL, body, format="json")

    error = assert_envelope(response, 400, code)
    if field:
        assert field in str(error.get("details", {})), error
    assert not AutonomySetting.objects.exists()


def test_viewers_read_but_never_write_and_agents_are_kept_out(registry):
    viewer = person(PortalRole.VIEWER, "vic")
    assert viewer.get(URL).status_code == 200
    refused = viewer.post(URL, {"level": "shadow", "template_key": "t"}, format="json")
    assert_envelope(refused, 403, "permission_denied")
    agent = bearer(APIClient(), registry.token)
    assert_envelope(agent.get(URL), 403, "permission_denied")
    assert_envelope(
        agent.post(URL, {"level": "autonomous", "agent": "ap-bot"}, format="json"),
        403,
        "permission_denied",
    )
    assert not AutonomySetting.objects.exists()
