"""/api/v1/claims/ and /api/v1/runs/{run_id}/messages/ as agents use them."""

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
import time_machine
from rest_framework.test import APIClient

from agents import services as agent_services
from agents.models import Scope
from tests.conftest import bearer
from tests.factories import UserFactory
from tests.workflows.coordination_fixtures import run_for
from tests.workflows.fixtures import build_world
from workflows.models import Claim, ClaimStatus, Message

CLAIMS = "/api/v1/claims/"
KEY = "erp.invoice:INV-7"
T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def messages_url(run) -> str:
    return f"/api/v1/runs/{run.pk}/messages/"


def err(response) -> dict:
    assert response["Content-Type"].startswith("application/json")
    return response.json()["error"]


@pytest.fixture
def crew(db):
    """Three API clients: clerk-0 and clerk-1 assigned to a run, clerk-2 not."""
    agents = build_world(clerks=3).agents
    run = run_for(agents[:2])
    clients = [bearer(APIClient(), agent_services.credential_issue(agent=a)[1]) for a in agents]
    return SimpleNamespace(agents=agents, run=run, a=clients[0], b=clients[1], outsider=clients[2])


# --- claims ----------------------------------------------------------------------------------


def test_a_free_key_answers_201_held_and_a_taken_one_202_waiting(crew):
    held = crew.a.post(CLAIMS, {"resource_key": KEY, "lease_seconds": 30}, format="json")
    waiting = crew.b.post(CLAIMS, {"resource_key": KEY, "priority": 3}, format="json")
    assert held.status_code == 201, held.content
    assert held.json()["status"] == "held" and held.json()["agent"] == "clerk-0"
    assert held.json()["lease_until"] is not None
    assert waiting.status_code == 202 and waiting.json()["status"] == "waiting"


def test_the_holder_reads_the_yield_request_on_its_claim(crew):
    held = crew.a.post(CLAIMS, {"resource_key": KEY}, format="json").json()
    crew.b.post(CLAIMS, {"resource_key": KEY, "priority": 9}, format="json")
    shown = crew.a.get(f"{CLAIMS}{held['id']}/")
    assert shown.status_code == 200 and shown.json()["yield_requested"] is True


def test_release_through_the_api_hands_the_key_to_the_waiter(crew):
    held = crew.a.post(CLAIMS, {"resource_key": KEY}, format="json").json()
    waiting = crew.b.post(CLAIMS, {"resource_key": KEY}, format="json").json()
    released = crew.a.post(f"{CLAIMS}{held['id']}/release/")
    again = crew.a.post(f"{CLAIMS}{held['id']}/release/")
    assert released.status_code == 200 and released.json()["status"] == "released"
    assert again.status_code == 200 and again.json()["status"] == "released"
    assert crew.b.get(f"{CLAIMS}{waiting['id']}/").json()["status"] == "held"


def test_renew_through_the_api_extends_the_lease(crew):
    with time_machine.travel(T0, tick=False) as clock:
        held = crew.a.post(CLAIMS, {"resource_key": KEY, "lease_seconds": 60}, format="json")
        clock.shift(30)
        renewed = crew.a.post(f"{CLAIMS}{held.json()['id']}/renew/")
    assert renewed.status_code == 200
    assert renewed.json()["lease_until"].startswith("2026-11-25T10:01:30")


def test_renewing_a_lease_taken_over_answers_409_claim_not_held(crew):
    with time_machine.travel(T0, tick=False) as clock:
        held = crew.a.post(CLAIMS, {"resource_key": KEY, "lease_seconds": 10}, format="json")
        crew.b.post(CLAIMS, {"resource_key": KEY}, format="json")
        clock.shift(11)
        refused = crew.a.post(f"{CLAIMS}{held.json()['id']}/renew/")
    assert refused.status_code == 409
    error = err(refused)
    assert error["code"] == "claim_not_held" and error["details"]["status"] == "expired"


def test_an_agent_never_sees_another_agents_claim(crew):
    held = crew.a.post(CLAIMS, {"resource_key": KEY}, format="json").json()
    for response in (
        crew.b.get(f"{CLAIMS}{held['id']}/"),
        crew.b.post(f"{CLAIMS}{held['id']}/release/"),
        crew.b.post(f"{CLAIMS}{held['id']}/renew/"),
    ):
        assert response.status_code == 404 and err(response)["code"] == "not_found"
    assert crew.b.get(CLAIMS).json()["count"] == 0
    assert Claim.objects.get(pk=held["id"]).status == ClaimStatus.HELD


@pytest.mark.parametrize(
    "body,code",
    [
        ({"resource_key": "no colon"}, "validation_failed"),
        ({"resource_key": KEY, "lease_seconds": 0}, "validation_failed"),
        ({"resource_key": KEY, "priority": "high"}, "validation_failed"),
        ({"resource_key": KEY, "owner": "me"}, "unknown_field"),
        ({}, "validation_failed"),
    ],
)
def test_bad_claim_requests_get_stable_error_codes_and_write_nothing(crew, body, code):
    response = crew.a.post(CLAIMS, body, format="json")
    assert response.status_code == 400 and err(response)["code"] == code
    assert not Claim.objects.exists()


def test_a_claim_naming_an_unknown_run_is_not_found(crew):
    response = crew.a.post(CLAIMS, {"resource_key": KEY, "run": str(uuid.uuid4())}, format="json")
    assert response.status_code == 404 and err(response)["code"] == "not_found"


def test_a_claim_on_a_run_puts_conflicts_on_its_timeline(crew):
    run = str(crew.run.pk)
    crew.a.post(CLAIMS, {"resource_key": KEY, "run": run}, format="json")
    crew.b.post(CLAIMS, {"resource_key": KEY, "run": run}, format="json")
    assert crew.run.events.filter(kind="claim_conflict").count() == 1


def test_a_token_without_the_tasks_scope_cannot_claim(crew):
    _, token = agent_services.credential_issue(
        agent=crew.agents[0], name="read-only", scopes=[Scope.AGENT_READ]
    )
    response = bearer(APIClient(), token).post(CLAIMS, {"resource_key": KEY}, format="json")
    assert response.status_code == 403 and err(response)["code"] == "scope_missing"


def test_people_cannot_claim(crew):
    client = APIClient()
    client.force_authenticate(UserFactory(username="a-person"))
    response = client.post(CLAIMS, {"resource_key": KEY}, format="json")
    assert response.status_code == 403 and err(response)["code"] == "not_an_agent"


# --- messages --------------------------------------------------------------------------------


def test_agents_on_the_run_post_and_read_messages_after_an_id(crew):
    url = messages_url(crew.run)
    first = crew.a.post(url, {"body": {"text": "one"}}, format="json")
    crew.a.post(url, {"body": {"text": "two"}, "recipient": "clerk-1"}, format="json")
    assert first.status_code == 201, first.content
    assert first.json()["sender"] == "clerk-0" and first.json()["recipient"] is None
    page = crew.b.get(url)
    assert [m["body"]["text"] for m in page.json()["results"]] == ["one", "two"]
    newer = crew.b.get(url, {"after": first.json()["id"]}).json()
    assert [m["body"]["text"] for m in newer["results"]] == ["two"]
    assert newer["after"] == newer["results"][-1]["id"]
    assert crew.b.get(url, {"after": newer["after"]}).json()["results"] == []


def test_an_outsider_gets_403_permission_denied_on_a_runs_messages(crew):
    url = messages_url(crew.run)
    sent = crew.outsider.post(url, {"body": {"text": "hi"}}, format="json")
    read = crew.outsider.get(url)
    assert sent.status_code == read.status_code == 403
    assert err(sent)["code"] == err(read)["code"] == "permission_denied"
    assert err(read)["details"]["run"] == str(crew.run.pk)
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    "body,code",
    [
        ({"body": {"text": "x"}, "recipient": "nobody-here"}, "validation_failed"),
        ({"body": {"text": "x"}, "recipient": "clerk-2"}, "validation_failed"),
        ({"body": "not an object"}, "validation_failed"),
        ({"body": {"text": "x"}, "cc": "clerk-1"}, "unknown_field"),
    ],
)
def test_bad_messages_get_stable_error_codes_and_write_nothing(crew, body, code):
    response = crew.a.post(messages_url(crew.run), body, format="json")
    assert response.status_code == 400 and err(response)["code"] == code
    assert not Message.objects.exists()


def test_messages_of_an_unknown_run_are_not_found(crew):
    response = crew.a.get(f"/api/v1/runs/{uuid.uuid4()}/messages/")
    assert response.status_code == 404 and err(response)["code"] == "not_found"


def test_a_bad_after_cursor_is_a_validation_error(crew):
    response = crew.a.get(messages_url(crew.run), {"after": "latest"})
    assert response.status_code == 400 and err(response)["code"] == "validation_failed"


def test_the_openapi_schema_describes_claims_and_messages(crew):
    client = APIClient()
    client.force_authenticate(UserFactory(username="schema-admin", is_superuser=True))
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    paths = schema["paths"]
    assert {"post", "get"} <= set(paths["/api/v1/claims/"])
    assert "post" in paths["/api/v1/claims/{id}/renew/"]
    assert "post" in paths["/api/v1/claims/{id}/release/"]
    assert {"get", "post"} <= set(paths["/api/v1/runs/{run_id}/messages/"])
