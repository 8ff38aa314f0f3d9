"""Hostile input to the API: ids that are not ids, JSON nested past reason, paths that do not
exist. Every answer is the JSON error envelope with a stable code, never a 500 or HTML.

The id test reads every path with a parameter from the OpenAPI schema, so an endpoint added
later is covered without touching this file."""

import re

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from tests.conftest import assert_envelope, bearer
from tests.factories import UserFactory, make_agent

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
                assert_envelope(response, 404, "not_found")
            except AssertionError as exc:
                wrong.append((method.upper(), path[:90], str(exc)[:200]))
    assert not wrong, "\n".join(map(str, wrong))


@pytest.mark.django_db
def test_an_agent_gets_a_json_404_for_a_bad_id_too(agent):
    from agents import services

    _, token = services.credential_issue(agent=agent)
    client = bearer(APIClient(), token)
    for path in ("/api/v1/actions/not-a-uuid/", "/api/v1/tasks/not-a-uuid/"):
        assert_envelope(client.get(path), 404, "not_found")
    assert_envelope(
        client.post("/api/v1/tasks/not-a-uuid/claim/", {}, format="json"), 404, "not_found"
    )


def _nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.fixture
def agent_api(agent):
    from agents import services

    _, token = services.credential_issue(agent=agent)
    return bearer(APIClient(), token)


@pytest.mark.django_db
@pytest.mark.parametrize("depth", [200, 5000, 100_000])
def test_deeply_nested_json_is_refused_with_a_400(admin_api, agent_api, depth):
    posts = [
        (agent_api, "/api/v1/actions/"),
        (agent_api, "/api/v1/simulate/"),
        (admin_api, "/api/v1/business-units/"),
    ]
    for client, path in posts:
        response = client.post(path, _nested(depth), content_type="application/json")
        error = assert_envelope(response, 400, "json_too_deep")
        assert error["details"]["max_depth"] >= 16


@pytest.mark.django_db
def test_deeply_nested_lists_are_refused_too(agent_api):
    body = "[" * 3000 + "]" * 3000
    assert_envelope(
        agent_api.post("/api/v1/actions/", body, content_type="application/json"),
        400,
        "json_too_deep",
    )


@pytest.mark.django_db
def test_json_within_the_depth_limit_still_parses(admin_api):
    agent = make_agent(slug="depth-ok")
    response = admin_api.patch(
        f"/api/v1/agents/{agent.pk}/",
        {"description": "fine", "metadata": {"a": {"b": {"c": [1, [2, [3]]]}}}},
        format="json",
    )
    # The body parsed: the answer is about the fields, never about the JSON's shape.
    assert response.status_code in (200, 400), response.content
    if response.status_code == 400:
        assert response.json()["error"]["code"] != "json_too_deep"


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize(
    "path", ["/api/nothing", "/api/v1/no-such-thing/", "/api/v2/agents/", "/api/v1/agents/x/y/z/"]
)
def test_unmatched_api_paths_answer_a_json_404_in_every_mode(admin_api, path, debug):
    with override_settings(DEBUG=debug):
        assert_envelope(admin_api.get(path), 404, "not_found")


@pytest.mark.django_db
def test_nul_bytes_and_wrong_content_types_answer_envelopes(admin_api):
    assert_envelope(
        admin_api.post(
            "/api/v1/business-units/", "a=b", content_type="application/x-www-form-urlencoded"
        ),
        415,
        "unsupported_media_type",
    )
    assert_envelope(
        admin_api.post("/api/v1/business-units/", '{"a": ', content_type="application/json"),
        400,
        "malformed_json",
    )
    assert_envelope(admin_api.get("/api/v1/agents/%00/"), 404, "not_found")
    response = admin_api.post(
        "/api/v1/business-units/", {"name": "nul\x00unit", "slug": "nul"}, format="json"
    )
    assert_envelope(response, 400, "validation_failed")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params",
    [
        {"invoice_id": "INV\u00001", "amount": 1},
        {"invoice\u0000id": "INV-1", "amount": 1},
    ],
)
def test_nul_characters_in_action_json_answer_an_envelope(registry, params):
    client = bearer(APIClient(), registry.token)
    body = {"operation": "erp.post-invoice", "params": params, "reason": "nul\u0000reason"}
    response = client.post("/api/v1/actions/", body, format="json")
    assert response.status_code < 500, response.content
    if response.status_code >= 400:
        assert_envelope(response, response.status_code, response.json()["error"]["code"])


@pytest.mark.django_db
def test_a_body_past_the_upload_limit_is_a_413(agent_api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    body = '{"operation": "erp.post-invoice", "params": {"x": "' + "a" * 5000 + '"}}'
    response = agent_api.post("/api/v1/actions/", body, content_type="application/json")
    assert_envelope(response, 413, "payload_too_large")


@pytest.mark.django_db
def test_every_query_parameter_of_the_schema_takes_a_bad_value_without_a_5xx(admin_api, agent_api):
    schema = admin_api.get(SCHEMA, HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    wrong, tried = [], 0
    for path, operations in schema["paths"].items():
        if "{" in path or "get" not in operations:
            continue
        for parameter in operations["get"].get("parameters", []):
            if parameter["in"] != "query":
                continue
            for value in ["not-a-uuid", "\x00", "9" * 40, "-1", "[]"]:
                for client in (admin_api, agent_api):
                    tried += 1
                    response = client.get(path, {parameter["name"]: value})
                    if response.status_code == 204:
                        continue
                    json = response.get("Content-Type", "").startswith("application/json")
                    if response.status_code >= 500 or not json:
                        wrong.append((path, parameter["name"], value, response.status_code))
                    elif response.status_code >= 400:
                        assert set(response.json()["error"]) == {"code", "message", "details"}
    assert tried > 100
    assert not wrong, "\n".join(map(str, wrong))
