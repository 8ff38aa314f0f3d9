"""The demo's onboarding data: unit owners, and one registration waiting in the inbox."""

import pytest

from agents.models import Agent, AgentStatus, BusinessUnit
from approvals.models import ApprovalRequest
from demo import onboarding, registry

pytestmark = pytest.mark.django_db


def test_seed_onboarding_gives_units_owners_and_one_waiting_registration_once():
    registry.seed(agents=12)
    assert onboarding.seed_onboarding() == BusinessUnit.objects.count() + 1
    assert onboarding.seed_onboarding() == 0

    assert BusinessUnit.objects.get(slug="finance").owner.username == "dana.ross"
    waiting = Agent.objects.get(slug=onboarding.WAITING_SLUG)
    assert waiting.status == AgentStatus.PENDING
    request = ApprovalRequest.objects.get(change__agent=waiting)
    assert (request.stage_name, request.approver_group.user_set.get().username) == (
        "Unit owner", "jon.kim",
    )  # fmt: skip
