"""The demo's rollout (``demo.rollouts``): invoice processing opens in its second wave with the
third wave's criteria met; the measuring beat proposes the promotion, an officer approves it
once, and the next posting of a finance invoice processor is decided at the guarded level."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from agents.models import Agent, AgentStatus
from approvals import services as approvals
from approvals.models import ApprovalRequest
from autonomy import actions, levels
from autonomy.models import ActionStatus, RolloutPlan
from autonomy.rollouts import selectors, services

pytestmark = pytest.mark.django_db


def test_the_demo_rollout_is_promoted_by_one_approval_and_the_next_posting_follows(capsys):
    call_command("seed_demo", "--agents", "300")
    assert "1 rollout plans" in capsys.readouterr().out
    plan = RolloutPlan.objects.get(slug="invoice-processing")
    assert plan.current_wave == 2
    health = selectors.plan_health(plan=plan)
    assert health["next_wave"] == 3 and health["met"], health["criteria"]
    assert health["figures"]["agents"] == 15

    finance = Agent.objects.filter(
        role__slug="invoice-processor", business_unit__slug="finance", status=AgentStatus.ACTIVE
    ).order_by("slug")
    held = finance.last()  # no wave up to the second names it
    assert levels.level_for(agent=held, operation_key="erp.post-invoice").as_dict() == {
        "level": "shadow",
        "source": "rollout plan invoice-processing, not yet reached (held)",
    }

    assert services.plans_measure()["proposed"] == 1
    request = ApprovalRequest.objects.get(promotion__plan=plan)
    admin = get_user_model().objects.create_superuser("officer", "officer@example.com", "pw")
    approvals.approval_decide(
        request_id=request.pk, approver=admin, verdict="approve", channel="inbox",
        comment="Figures hold.",
    )  # fmt: skip

    plan.refresh_from_db()
    assert plan.current_wave == 3
    action, _ = actions.action_request(
        agent=held, operation_key="erp.post-invoice",
        params={"invoice_id": "INV-NEXT", "amount": 250, "currency": "EUR"},
    )  # fmt: skip
    assert action.autonomy_level == "guarded"
    assert action.status in (ActionStatus.APPROVED, ActionStatus.SUCCEEDED)
