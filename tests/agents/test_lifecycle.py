import pytest
from auditlog.models import LogEntry
from django.contrib.contenttypes.models import ContentType

from agents import services
from agents.models import Agent, AgentStatus
from autonomy.errors import IllegalTransition
from tests.factories import make_agent

pytestmark = pytest.mark.django_db


def history(agent):
    return LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(Agent), object_pk=str(agent.pk)
    ).order_by("timestamp", "pk")


def test_register_gives_the_agent_its_own_principal_in_its_role_group(agent):
    user = agent.service_user
    assert user.username == "agent-invoice-bot"
    assert not user.has_usable_password()
    assert list(user.groups.all()) == [agent.role.group]
    assert agent.owner.has_perm("agents.view_agent", agent)
    assert not agent.owner.has_perm("agents.view_agent")  # object grant, not a global one


def test_register_takes_the_role_default_risk_tier(db):
    role = services.role_create(name="Payments", slug="payments", default_risk_tier=4)
    assert make_agent(slug="payer", role=role).risk_tier == 4


def test_each_lifecycle_change_is_in_the_history_with_its_actor(agent, it_admin):
    services.agent_pause(agent=agent, by=it_admin, reason="review")
    services.agent_resume(agent=agent, by=it_admin)
    services.agent_quarantine(agent=agent, by=it_admin, reason="odd hours")
    entries = list(history(agent))
    assert [e.action for e in entries] == [LogEntry.Action.CREATE] + [LogEntry.Action.UPDATE] * 3
    assert [e.changes_dict["status"][1] for e in entries[1:]] == ["paused", "active", "quarantined"]
    assert all(e.actor == it_admin for e in entries[1:])
    assert entries[1].changes_dict["status_reason"][1] == "review"


@pytest.mark.parametrize(
    "first, then",
    [
        (services.agent_retire, services.agent_resume),
        (services.agent_retire, services.agent_pause),
        (services.agent_pause, services.agent_pause),
    ],
)
def test_illegal_transitions_are_refused_and_change_nothing(agent, it_admin, first, then):
    first(agent=agent, by=it_admin)
    before = Agent.objects.get(pk=agent.pk).status
    with pytest.raises(IllegalTransition):
        then(agent=agent, by=it_admin)
    assert Agent.objects.get(pk=agent.pk).status == before


def test_retire_revokes_every_credential_and_disables_the_principal(agent, it_admin):
    creds = [services.credential_issue(agent=agent)[0] for _ in range(3)]
    services.agent_retire(agent=agent, by=it_admin, reason="decommissioned")
    agent.refresh_from_db()
    assert agent.status == AgentStatus.RETIRED
    assert all(c.state() == "revoked" for c in agent.credentials.all())
    assert len(creds) == 3
    agent.service_user.refresh_from_db()
    assert agent.service_user.is_active is False


def test_role_change_moves_the_principal_between_groups(agent, it_admin):
    new_role = services.role_create(name="Auditor bot", slug="auditor-bot")
    services.agent_update(agent=agent, by=it_admin, role=new_role)
    agent.refresh_from_db()
    assert list(agent.service_user.groups.all()) == [new_role.group]


@pytest.mark.parametrize(
    "sub, readable",
    [("alice", True), ("auth0|5f7c8ec7c33c6c004bbafe82", False), ("x" * 200, False)],
)
def test_oidc_usernames_are_valid_and_distinct(sub, readable):
    from django.contrib.auth.validators import UnicodeUsernameValidator

    name = services.oidc_username(sub)
    UnicodeUsernameValidator()(name)
    assert len(name) <= 150
    assert (name == f"oidc-{sub}") is readable
    assert services.oidc_username(sub + "y") != name


def test_person_who_lost_every_mapped_group_loses_portal_roles(db):
    from django.contrib.auth.models import Group

    user = services.portal_user_sync(claims={"sub": "rita", "groups": ["autonomy-risk-officers"]})
    assert user.groups.filter(name="Portal: Risk officer").exists()
    services.portal_user_strip_roles(sub="rita")
    user.refresh_from_db()
    assert not user.is_staff
    assert not user.groups.filter(name__in=Group.objects.values("name")).exists()
