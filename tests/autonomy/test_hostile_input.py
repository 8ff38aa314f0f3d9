"""Hostile input to the API: ids that are not ids, JSON nested past reason, paths that do not
exist. Every answer is the JSON error envelope with a stable code, never a 500 or HTML.

The id test reads every path with a parameter from the OpenAPI schema, so an endpoint added
later is covered without touching this file."""

import re

import pytest
from rest_framework.test import APIClient

from tests.conftest import bearer
from tests.factories import UserFactory

SCHEMA = "/api/schema/"
NOT_IDS = [
    "not-a-uuid",
    "-12345",
    "1,5",
    "0x1F",
    "-" * 36,
    "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz",
    "00000000-0000-0000-0000-00000000000g",
    "x" * 300,
]


def envelope(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    error = response.json()["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and isinstance(error["details"], dict)
    return error


@pytest.fixture
def admin_api(db):
    client = APIClient()
    client.force_authenticate(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def _parameterised_operations(client: APIClient) -> list[tuple[str, str]]:
    schema = client.get(SCHEMA, HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    found = []
    for template, operations in schema["paths"].items():
        if "{" not in template:
            continue
        for method in operations:
            if method in ("get", "post", "put", "patch", "delete"):
                found.append((method, template))
    return found


@pytest.mark.django_db
def test_every_api_path_answers_a_bad_id_with_a_json_404(admin_api):
    operations = _parameterised_operations(admin_api)
    # The schema lists the registry, the kernel, approvals, interventions and workflows.
    assert len(operations) >= 30, operations
    wrong = []
    for method, template in operations:
        for bad in NOT_IDS:
            path = re.sub(r"\{[^}]+\}", bad, template)
            response = getattr(admin_api, method)(path, {}, format="json")
            try:
                envelope(response, 404, "not_found")
            except AssertionError as exc:
                wrong.append((method.upper(), path[:90], str(exc)[:200]))
    assert not wrong, "\n".join(map(str, wrong))


@pytest.mark.django_db
def test_an_agent_gets_a_json_404_for_a_bad_id_too(agent):
    from agents import services

    _, token = services.credential_issue(agent=agent)
    client = bearer(APIClient(), token)
    for path in ("/api/v1/actions/not-a-uuid/", "/api/v1/tasks/not-a-uuid/"):
        envelope(client.get(path), 404, "not_found")
    envelope(client.post("/api/v1/tasks/not-a-uuid/claim/", {}, format="json"), 404, "not_found")


@pytest.mark.django_db
def test_nul_bytes_and_wrong_content_types_answer_envelopes(admin_api):
    envelope(
        admin_api.post(
            "/api/v1/business-units/", "a=b", content_type="application/x-www-form-urlencoded"
        ),
        415,
        "unsupported_media_type",
    )
    envelope(
        admin_api.post("/api/v1/business-units/", '{"a": ', content_type="application/json"),
        400,
        "malformed_json",
    )
    envelope(admin_api.get("/api/v1/agents/%00/"), 404, "not_found")
    response = admin_api.post(
        "/api/v1/business-units/", {"name": "nul\x00unit", "slug": "nul"}, format="json"
    )
    envelope(response, 400, "validation_failed")
