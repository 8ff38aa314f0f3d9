from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from agents.portal_roles import PortalRole, group_name
from agents.services import portal_roles_sync
from autonomy import actions
from autonomy.models import AutonomyLevel, RolloutPlan, RolloutWave
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


def officer(username: str):
    """A risk officer: decides promotions the plan names no group for, may propose them."""
    portal_roles_sync()
    return approver(username, group=group_name(PortalRole.RISK_OFFICER))


def seed_plan(registry, *, actions_taken: int = 3) -> RolloutPlan:
    """A plan over the registry's role at wave 1 (its agent, guarded); wave 2 asks for three
    actions and at most a fifth denied; the agent has taken ``actions_taken`` allowed ones."""
    plan = RolloutPlan.objects.create(
        slug="invoices", name="Invoice rollout", role=registry.agent.role, current_wave=1,
        wave_since=timezone.now() - timedelta(hours=1), auto_propose=False,
    )  # fmt: skip
    first = RolloutWave.objects.create(plan=plan, number=1, level=AutonomyLevel.GUARDED)
    first.agents.add(registry.agent)
    RolloutWave.objects.create(
        plan=plan, number=2, name="Finance", level=AutonomyLevel.GUARDED, min_actions=3,
        max_denial_ratio=0.2,
    )  # fmt: skip
    RolloutWave.objects.create(plan=plan, number=3, level=AutonomyLevel.AUTONOMOUS, everyone=True)
    for n in range(actions_taken):
        action, _ = actions.action_request(
            agent=registry.agent,
            operation_key="erp.post-invoice",
            params={"invoice_id": f"INV-{n}", "amount": 10},
            reason="history",
        )
        assert action.verdict == "allow", action.reasons
    return plan
