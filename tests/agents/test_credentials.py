from datetime import timedelta

import pytest
import time_machine
from auditlog.models import LogEntry
from django.utils import timezone

from agents import services
from agents.models import Credential, Scope
from tests.conftest import bearer

pytestmark = pytest.mark.django_db

ME = "/api/v1/agents/me/"


def error_code(response) -> str:
    return response.json()["error"]["code"]


def test_valid_token_reads_its_own_agent(api, agent):
    _, token = services.credential_issue(agent=agent)
    response = bearer(api, token).get(ME)
    assert response.status_code == 200
    assert response.json()["slug"] == "invoice-bot"
    assert response.json()["owner"]["username"] == agent.owner.username


def test_token_is_stored_only_as_prefix_and_digest(agent):
    credential, token = services.credential_issue(agent=agent)
    stored = Credential.objects.get(pk=credential.pk)
    assert token.split("_")[1] == stored.prefix
    assert token not in (stored.token_hash, stored.prefix)
    assert len(stored.token_hash) == 64
    assert not any(token in str(e.changes) for e in LogEntry.objects.all())
    assert not any(stored.token_hash in str(e.changes) for e in LogEntry.objects.all())


def test_expired_token_is_refused(api, agent):
    _, token = services.credential_issue(
        agent=agent, expires_at=timezone.now() + timedelta(hours=1)
    )
    assert bearer(api, token).get(ME).status_code == 200
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        response = api.get(ME)
    assert response.status_code == 401
    assert error_code(response) == "credential_expired"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_revoked_credential_is_refused_on_next_request(api, agent):
    credential, token = services.credential_issue(agent=agent)
    assert bearer(api, token).get(ME).status_code == 200
    services.credential_revoke(credential=credential, reason="leaked in a log")
    response = api.get(ME)
    assert response.status_code == 401
    assert error_code(response) == "credential_revoked"


def test_rotated_tokens_both_work_inside_the_overlap_and_old_is_refused_after(api, agent):
    old, old_token = services.credential_issue(agent=agent)
    new, new_token = services.credential_rotate(credential=old, overlap=timedelta(minutes=10))
    assert new.rotated_from_id == old.pk
    assert bearer(api, old_token).get(ME).status_code == 200
    assert bearer(api, new_token).get(ME).status_code == 200
    with time_machine.travel(timezone.now() + timedelta(minutes=11)):
        old_response = bearer(api, old_token).get(ME)
        new_response = bearer(api, new_token).get(ME)
    assert old_response.status_code == 401
    assert error_code(old_response) == "credential_expired"
    assert new_response.status_code == 200


def test_a_credential_rotates_only_once(agent):
    old, _ = services.credential_issue(agent=agent)
    services.credential_rotate(credential=old)
    with pytest.raises(services.DomainError) as excinfo:
        services.credential_rotate(credential=old)
    assert excinfo.value.code == "conflict"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # secret changed
        lambda t: t.replace("aos_", "aos_0", 1),  # prefix changed
        lambda t: t + "x",  # extended
        lambda t: "aos_" + t.split("_", 2)[1],  # secret dropped
    ],
)
def test_tampered_token_is_refused(api, agent, tamper):
    _, token = services.credential_issue(agent=agent)
    response = bearer(api, tamper(token)).get(ME)
    assert response.status_code == 401
    assert error_code(response) == "credential_invalid"


def test_missing_token_is_a_json_401(api, agent):
    response = api.get(ME)
    assert response.status_code == 401
    assert error_code(response) == "not_authenticated"


def test_token_without_scope_is_refused_with_scope_missing(api, agent):
    _, token = services.credential_issue(agent=agent, scopes=[Scope.ACTIONS_WRITE])
    response = bearer(api, token).get(ME)
    assert response.status_code == 403
    assert error_code(response) == "scope_missing"
    assert response.json()["error"]["details"]["required"] == "agent:read"


def test_last_used_is_stamped_at_most_once_a_minute(api, agent):
    credential, token = services.credential_issue(agent=agent)
    bearer(api, token).get(ME)
    first = Credential.objects.get(pk=credential.pk).last_used_at
    assert first is not None
    api.get(ME)
    assert Credential.objects.get(pk=credential.pk).last_used_at == first
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        api.get(ME)
    assert Credential.objects.get(pk=credential.pk).last_used_at > first


def test_retired_agent_token_is_refused(api, agent):
    _, token = services.credential_issue(agent=agent)
    services.agent_retire(agent=agent, by=agent.owner, reason="replaced")
    response = bearer(api, token).get(ME)
    assert response.status_code == 401
    assert error_code(response) == "credential_revoked"


@pytest.mark.parametrize("revoke", ["revoke_all", "retire"])
def test_revoking_every_credential_sets_the_idp_token_cutoff(agent, revoke):
    # Even with no credential of its own: the agent may use IdP bearer tokens only.
    before = timezone.now()
    if revoke == "retire":
        services.agent_retire(agent=agent, by=agent.owner, reason="replaced")
    else:
        assert services.agent_credentials_revoke(agent=agent, reason="leaked") == 0
    agent.refresh_from_db()
    assert before <= agent.tokens_valid_after <= timezone.now()


def test_revoking_one_credential_leaves_idp_tokens_alone(agent):
    credential, _ = services.credential_issue(agent=agent)
    services.credential_revoke(credential=credential, reason="leaked")
    agent.refresh_from_db()
    assert agent.tokens_valid_after is None


def test_person_calling_me_is_told_it_is_for_agents(api, it_admin):
    api.force_authenticate(it_admin)
    response = api.get(ME)
    assert response.status_code == 403
    assert error_code(response) == "not_an_agent"
