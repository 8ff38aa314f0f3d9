"""The admin's "Object permissions" pages on connectors and operations grant through the one
rule: a new grant to a role or an agent waits for approval; removing one revokes it at once."""

import pytest
from django.contrib.auth.models import Group

from agents.models import RegistryChange
from agents.portal_roles import PortalRole, group_name
from autonomy import grants
from autonomy.models import AuditRecord
from tests.autonomy.gate_fixtures import build_registry
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def it_admin():
    user = UserFactory(username="ita", is_staff=True)
    user.groups.add(Group.objects.get(name=group_name(PortalRole.IT_ADMIN)))
    return user


def _page(operation, *, group=None, user=None) -> str:
    base = f"/admin/autonomy/operation/{operation.pk}/permissions/"
    return f"{base}group-manage/{group.pk}/" if group else f"{base}user-manage/{user.pk}/"


def test_a_role_grant_made_in_the_admin_waits_for_approval(client, it_admin):
    registry = build_registry()
    role, read = registry.agent.role, registry.read
    assert not grants.is_granted(operation=read, role=role)
    client.force_login(it_admin)

    answer = client.post(
        _page(read, group=role.group), {"permissions": [grants.grant_codename(read)]}
    )
    assert answer.status_code == 302, answer.content[:500]
    assert not grants.is_granted(operation=read, role=role)  # nothing granted yet
    change = RegistryChange.objects.get(kind="widen_grant", role=role, status="pending")
    assert change.payload["name"] == read.key

    # an existing grant removed on the same page is revoked at once, and audited
    assert grants.is_granted(operation=registry.post, role=role)
    removed = client.post(
        _page(registry.post, group=role.group), {"permissions": [], "submit_manage_group": "Save"}
    )
    assert removed.status_code == 302, removed.content.decode()[-2000:]
    assert not grants.is_granted(operation=registry.post, role=role)
    assert AuditRecord.objects.filter(kind="grant", payload__granted=False, actor="ita").exists()


def test_an_agent_grant_made_in_the_admin_waits_for_approval(client, it_admin):
    registry = build_registry()
    agent, read = registry.agent, registry.read
    client.force_login(it_admin)
    client.post(
        _page(read, user=agent.service_user), {"permissions": [grants.grant_codename(read)]}
    )
    assert not grants.is_granted(operation=read, agent=agent)
    assert RegistryChange.objects.filter(kind="widen_grant", agent=agent, status="pending").exists()
