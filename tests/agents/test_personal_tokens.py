"""People's own API tokens: created in the admin, shown once, stored hashed; they act as their
person with that person's permissions, narrowed by their scopes; they expire and are revoked."""

import re
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.utils import timezone
from rest_framework.test import APIClient

from agents import user_tokens
from agents.models import PersonalToken, PersonalTokenScope
from agents.portal_roles import PortalRole, group_name
from autonomy.errors import DomainError
from tests.conftest import bearer
from tests.factories import UserFactory, make_agent

pytestmark = pytest.mark.django_db

TOKEN = re.compile(r"aosu_[0-9a-f]+_\S+")


def person(username: str, role: str):
    user = UserFactory(username=username, is_staff=True)
    user.groups.add(Group.objects.get(name=group_name(role)))
    return user


def issue(user, *scopes, **kwargs) -> str:
    return user_tokens.user_token_issue(user=user, by=user, name="ci", scopes=scopes, **kwargs)[1]


def test_staff_create_their_own_token_in_the_admin_and_see_it_once(client):
    ita = person("ita", PortalRole.IT_ADMIN)
    client.force_login(ita)
    response = client.post(
        "/admin/agents/personaltoken/add/",
        {"user": ita.pk, "name": "terraform", "scopes": [PersonalTokenScope.READ]},
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    [token] = [
        TOKEN.search(str(m)).group(0)
        for m in get_messages(response.wsgi_request)
        if TOKEN.search(str(m))
    ]
    stored = PersonalToken.objects.get()
    assert stored.user == ita and stored.scopes == [PersonalTokenScope.READ]
    assert token.split("_")[1] == stored.prefix and token not in stored.token_hash
    assert stored.expires_at > timezone.now()

    answer = bearer(APIClient(), token).get("/api/v1/business-units/")
    assert answer.status_code == 200
    stored.refresh_from_db()
    assert stored.last_used_at is not None
    page = f"/admin/agents/personaltoken/{stored.pk}/change/"
    assert token in client.get(response.url).content.decode()  # shown once, after the save
    assert token not in client.get(page).content.decode()


def test_staff_cannot_create_a_token_for_someone_else(client):
    ita, colleague = person("ita", PortalRole.IT_ADMIN), person("vic", PortalRole.VIEWER)
    client.force_login(ita)
    response = client.post(
        "/admin/agents/personaltoken/add/",
        {"user": colleague.pk, "name": "borrowed", "scopes": [PersonalTokenScope.WRITE]},
    )
    assert response.status_code == 200  # the form again, with an error
    assert not PersonalToken.objects.exists()


def test_a_read_token_cannot_write_even_when_its_person_may():
    token = issue(person("ita", PortalRole.IT_ADMIN), PersonalTokenScope.READ)
    response = bearer(APIClient(), token).post(
        "/api/v1/business-units/", {"name": "Ops", "slug": "ops"}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "scope_missing"


def test_a_write_token_writes_only_what_its_person_may():
    admin_token = issue(person("ita", PortalRole.IT_ADMIN), *PersonalTokenScope.values)
    viewer_token = issue(person("vic", PortalRole.VIEWER), *PersonalTokenScope.values)
    body = {"name": "Ops", "slug": "ops"}
    assert (
        bearer(APIClient(), viewer_token)
        .post("/api/v1/business-units/", body, format="json")
        .status_code
        == 403
    )
    created = bearer(APIClient(), admin_token).post("/api/v1/business-units/", body, format="json")
    assert created.status_code == 201, created.content


@pytest.mark.parametrize("ending", ["expired", "revoked"])
def test_an_expired_or_revoked_token_is_refused_with_401(ending):
    user = person("ita", PortalRole.IT_ADMIN)
    token = issue(user, PersonalTokenScope.READ, expires_at=timezone.now() + timedelta(days=1))
    later = timezone.now()
    if ending == "revoked":
        user_tokens.user_token_revoke(token=PersonalToken.objects.get())
    else:
        later += timedelta(days=2)
    with time_machine.travel(later, tick=False):
        response = bearer(APIClient(), token).get("/api/v1/business-units/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == f"credential_{ending}"


def test_a_token_for_a_deactivated_person_or_a_wrong_secret_is_refused():
    user = person("ita", PortalRole.IT_ADMIN)
    token = issue(user, PersonalTokenScope.READ)
    assert bearer(APIClient(), token[:-2] + "xx").get("/api/v1/roles/").status_code == 401
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert bearer(APIClient(), token).get("/api/v1/roles/").status_code == 401


def test_an_agents_service_user_gets_no_personal_token_and_tokens_always_expire():
    agent = make_agent(slug="ap-bot")
    with pytest.raises(DomainError):
        issue(agent.service_user, PersonalTokenScope.READ)
    with pytest.raises(DomainError):
        issue(person("ita", PortalRole.IT_ADMIN), expires_at=timezone.now() + timedelta(days=900))


def test_revoking_a_token_in_the_admin_refuses_it_at_once(client):
    ita = person("ita", PortalRole.IT_ADMIN)
    token = issue(ita, PersonalTokenScope.READ)
    client.force_login(ita)
    response = client.post(
        "/admin/agents/personaltoken/",
        {"action": "revoke", "_selected_action": [str(PersonalToken.objects.get().pk)]},
    )
    assert response.status_code == 302
    answer = bearer(APIClient(), token).get("/api/v1/roles/")
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "credential_revoked"
