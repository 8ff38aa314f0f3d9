"""The demo's people in the loop (``demo.approvals``): the seed grants the payments clerks'
standing approval through the one grant service, and the desk works the inbox through the
inbox's own services: a group of similar requests in one action, a large payment through both
of its stages, never a rollout promotion."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from agents.models import Agent, AgentStatus
from approvals.models import (
    ApprovalRequest,
    ApprovalStatus,
    Decision,
    Suggestion,
    SuggestionKind,
    SuggestionStatus,
)
from autonomy import actions
from autonomy.models import ActionStatus, AuditRecord, StandingApproval
from demo.approvals import DESK, HISTORY, HISTORY_REASON, Desk

pytestmark = pytest.mark.django_db


def _agents(role, unit):
    return list(
        Agent.objects.filter(role__slug=role, business_unit__slug=unit, status=AgentStatus.ACTIVE)
        .select_related("role", "business_unit")
        .order_by("slug")
    )


@pytest.fixture
def demo(capsys):
    call_command("seed_demo", "--agents", "300")
    out = capsys.readouterr().out
    assert f"{len(DESK)} desk people" in out and "1 standing approvals" in out
    return out


def test_a_routine_payment_needs_nobody_and_a_large_one_goes_through_two_stages(demo):
    standing = StandingApproval.objects.get(role__slug="payments-clerk")
    assert standing.granted_by.username == "rita.risk"
    clerk = _agents("payments-clerk", "finance")[0]
    routine, _ = actions.action_request(
        agent=clerk, operation_key="erp.pay-invoice",
        params={"invoice_id": "INV-D1", "amount": 900, "currency": "EUR"},
    )  # fmt: skip
    assert routine.status in (ActionStatus.APPROVED, ActionStatus.SUCCEEDED), routine.reasons
    assert "standing_approval" in [r["code"] for r in routine.reasons]

    large, _ = actions.action_request(
        agent=clerk, operation_key="erp.pay-invoice",
        params={"invoice_id": "INV-D2", "amount": 25_000, "currency": "EUR"},
    )  # fmt: skip
    assert large.status == ActionStatus.PENDING_APPROVAL
    request = ApprovalRequest.objects.get(action=large)
    assert request.stages == 2

    desk = Desk(think_seconds=1)
    now = timezone.now()
    desk.tick(now=now)  # an approver passes stage 1, then the officer sees stage 2
    desk.tick(now=now + timedelta(seconds=5))
    request.refresh_from_db()
    assert request.status in (ApprovalStatus.APPROVED, ApprovalStatus.REJECTED)
    deciders = list(request.decisions.order_by("stage").values_list("stage", "approver__username"))
    assert [s for s, _ in deciders] == [1, 2]
    assert deciders[1][1] == "rita.risk" and deciders[0][1] != "rita.risk"


def test_the_desk_decides_a_group_in_one_action_each_member_on_its_own(demo):
    buyers = _agents("po-buyer", "procurement")
    waiting = []
    for n, buyer in enumerate(buyers[:5]):
        action, _ = actions.action_request(
            agent=buyer, operation_key="erp.create-purchase-order",
            params={"supplier": "Acme", "amount": 3000 + n},
        )  # fmt: skip
        if action.status == ActionStatus.PENDING_APPROVAL:
            waiting.append(action.pk)
    assert len(waiting) >= 3
    Desk(think_seconds=1).tick(now=timezone.now())
    decided = Decision.objects.filter(request__action_id__in=waiting)
    assert decided.count() == len(waiting)
    assert decided.values("approver").distinct().count() == 1  # one person, one action
    audited = AuditRecord.objects.filter(kind="approval_decision", action_id__in=waiting)
    assert audited.count() == len(waiting)
    # promotions are left for the person trying the demo
    assert not Decision.objects.filter(
        request__promotion__isnull=False, approver__username__in=[d[0] for d in DESK]
    ).exists()


def test_the_seeded_history_makes_a_suggestion_of_a_standing_approval(demo):
    assert f"{HISTORY} approval history" in demo and "1 suggestions" in demo
    suggestion = Suggestion.objects.get(status=SuggestionStatus.OPEN)
    assert (suggestion.operation.key, suggestion.role.slug, suggestion.business_unit.slug) == (
        "erp.create-purchase-order", "po-buyer", "procurement",
    )  # fmt: skip
    assert suggestion.kind == SuggestionKind.STANDING
    assert suggestion.evidence["approved"] == HISTORY and suggestion.evidence["rejected"] == 0
    # the history's decisions were made when their requests were, not at seed time: the last
    # hour's approval load counts none of them
    history = Decision.objects.filter(request__action__reason=HISTORY_REASON)
    assert history.count() == HISTORY
    assert not history.filter(created_at__gte=timezone.now() - timedelta(hours=1)).exists()
