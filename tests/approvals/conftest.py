import pytest
from django.contrib.auth.models import Group

from agents.portal_roles import PortalRole, group_name
from autonomy import actions
from tests.autonomy.gate_fixtures import build_registry
from tests.factories import UserFactory


@pytest.fixture
def tasks_run_in_process():
    """Celery tasks run in the test process, so their e-mail lands in mail.outbox; unlike
    the root conftest's ``eager``, on the ordinary (rolled-back) test database."""
    from config.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


def approver(username: str, group: str | None = None):
    user = UserFactory(username=username, is_staff=True)
    user.groups.add(Group.objects.get_or_create(name=group or group_name(PortalRole.APPROVER))[0])
    return user


def pending_action(registry, *, amount: int = 100, key: str | None = None):
    """An action the gate sends to people: the unit's approval threshold is lowered to 0."""
    unit = registry.agent.business_unit
    unit.approval_threshold = 0
    unit.save(update_fields=["approval_threshold"])
    action, _ = actions.action_request(
        agent=registry.agent,
        operation_key="erp.post-invoice",
        params={"invoice_id": "INV-1", "amount": amount},
        reason="needs a person",
        idempotency_key=key,
    )
    assert action.status == "pending_approval", action.reasons
    return action


@pytest.fixture
def waiting(db):
    registry = build_registry()
    return registry, pending_action(registry)
