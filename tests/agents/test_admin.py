import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from agents import services
from agents.models import Agent, AgentStatus, Credential
from tests.factories import BusinessUnitFactory, UserFactory, make_agent, make_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_logged_in(client, it_admin):
    client.force_login(it_admin)
    return client


def test_bulk_pause_goes_through_the_service_and_reports_skips(admin_client_logged_in, it_admin):
    a, b, c = (make_agent(slug=f"bot-{i}") for i in range(3))
    services.agent_retire(agent=c, by=it_admin)
    response = admin_client_logged_in.post(
        reverse("admin:agents_agent_changelist"),
        {"action": "bulk_pause", "_selected_action": [a.pk, b.pk, c.pk]},
        follow=True,
    )
    assert response.status_code == 200
    statuses = dict(Agent.objects.values_list("slug", "status"))
    assert statuses == {"bot-0": "paused", "bot-1": "paused", "bot-2": "retired"}
    text = response.content.decode()
    assert "Paused 2 agent(s)." in text and "Skipped" in text


def test_bulk_revoke_revokes_every_live_credential(admin_client_logged_in):
    agents = [make_agent(slug=f"bot-{i}") for i in range(2)]
    for agent in agents:
        services.credential_issue(agent=agent)
        services.credential_issue(agent=agent)
    admin_client_logged_in.post(
        reverse("admin:agents_agent_changelist"),
        {"action": "_bulk_revoke", "_selected_action": [a.pk for a in agents]},
    )
    assert Credential.objects.filter(revoked_at=None).count() == 0


def test_issue_credential_page_shows_the_token_once(admin_client_logged_in, agent):
    url = reverse("admin:agents_agent_issue_credential", args=[agent.pk])
    response = admin_client_logged_in.post(url, {"name": "laptop", "scopes": ["agent:read"]})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    credential = Credential.objects.get(agent=agent)
    text = response.content.decode()
    assert f"aos_{credential.prefix}_" in text
    change = admin_client_logged_in.get(reverse("admin:agents_agent_change", args=[agent.pk]))
    assert credential.prefix in change.content.decode()
    assert f"aos_{credential.prefix}_" not in change.content.decode()


def test_rotate_and_revoke_buttons_post_to_the_services(admin_client_logged_in, agent):
    credential, _ = services.credential_issue(agent=agent)
    base = reverse("admin:agents_agent_credential", args=[agent.pk, credential.pk, "rotate"])
    assert admin_client_logged_in.get(base).status_code == 405  # never by GET
    response = admin_client_logged_in.post(base)
    assert response.status_code == 200 and "Credential issued" in response.content.decode()
    successor = Credential.objects.get(rotated_from=credential)
    revoke = reverse("admin:agents_agent_credential", args=[agent.pk, successor.pk, "revoke"])
    admin_client_logged_in.post(revoke)
    successor.refresh_from_db()
    assert successor.state() == "revoked"


def test_agent_history_page_lists_lifecycle_changes(admin_client_logged_in, agent, it_admin):
    services.agent_quarantine(agent=agent, by=it_admin, reason="odd hours")
    response = admin_client_logged_in.get(reverse("admin:agents_agent_auditlog", args=[agent.pk]))
    assert response.status_code == 200
    text = response.content.decode()
    assert "quarantined" in text and "odd hours" in text


def test_viewer_sees_the_registry_but_cannot_change_it(client, viewer, agent):
    client.force_login(viewer)
    assert client.get(reverse("admin:agents_agent_changelist")).status_code == 200
    client.post(
        reverse("admin:agents_agent_changelist"),
        {"action": "bulk_pause", "_selected_action": [agent.pk]},
    )
    agent.refresh_from_db()
    assert agent.status == AgentStatus.ACTIVE


def _changelist_queries(client) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(reverse("admin:agents_agent_changelist")).status_code == 200
    return len(ctx.captured_queries)


def test_agent_changelist_query_count_does_not_grow_with_agents(admin_client_logged_in):
    units = [BusinessUnitFactory(slug=f"u{i}") for i in range(3)]
    roles = [make_role(f"r{i}") for i in range(3)]
    owners = [UserFactory(username=f"o{i}") for i in range(4)]
    for i in range(10):
        make_agent(
            slug=f"a-{i}", business_unit=units[i % 3], role=roles[i % 3], owner=owners[i % 4]
        )
    small = _changelist_queries(admin_client_logged_in)
    for i in range(10, 300):
        make_agent(
            slug=f"a-{i}", business_unit=units[i % 3], role=roles[i % 3], owner=owners[i % 4]
        )
    assert _changelist_queries(admin_client_logged_in) == small
