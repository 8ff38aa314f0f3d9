"""A rollout plan moves up a wave only through an approval request: the same rules (quorum,
separation of duties, expiry, inbox, e-mail links, API) as an agent's waiting action."""

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import Group
from django.core import mail
from django.core.cache import cache
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from agents.portal_roles import PortalRole, group_name
from approvals import services
from approvals.models import ApprovalRequest, ApprovalStatus, Channel, ExpiryOutcome
from autonomy.errors import DomainError
from autonomy.models import (
    AuditRecord,
    AutonomyLevel,
    PromotionStatus,
    RolloutEvent,
    RolloutPlan,
    RolloutWave,
)
from autonomy.rollouts import services as rollouts
from tests.approvals.conftest import approver, officer, pending_action, seed_plan
from tests.autonomy.gate_fixtures import build_registry
from tests.conftest import assert_envelope, at_once

OFFICERS = group_name(PortalRole.RISK_OFFICER)


@pytest.fixture
def proposed(db):
    """A promotion of the plan to wave 2, proposed by a risk officer (``paula``)."""
    registry = build_registry()
    plan = seed_plan(registry)
    paula = officer("paula")
    promotion = rollouts.promotion_propose(plan_id=plan.pk, by=paula)
    request = ApprovalRequest.objects.get(promotion=promotion)
    return plan, promotion, request, paula


def decide(request, user, verdict="approve", **kwargs):
    return services.approval_decide(
        request_id=request.pk, approver=user, verdict=verdict, channel=Channel.INBOX, **kwargs
    )


def wave_of(plan) -> int:
    plan.refresh_from_db()
    return plan.current_wave


# --- opening ------------------------------------------------------------------------------


def test_a_proposed_promotion_opens_one_request_and_the_plan_stays_where_it_is(proposed):
    plan, promotion, request, paula = proposed
    assert request.kind == "promotion" and request.action is None and request.agent is None
    assert request.subject == "Promote Invoice rollout to wave 2 (guarded)"
    assert request.status == ApprovalStatus.PENDING and request.quorum == 1
    assert request.approver_group.name == OFFICERS and request.requested_by == paula
    assert request.expiry_outcome == ExpiryOutcome.DENY
    assert wave_of(plan) == 1 and promotion.status == PromotionStatus.PENDING
    opened = AuditRecord.objects.get(kind="approval_opened", payload__approval_id=str(request.pk))
    assert opened.payload["plan"] == "invoices" and opened.payload["to_wave"] == 2


def test_the_plans_own_approver_group_decides_its_promotions(db):
    registry = build_registry()
    plan = seed_plan(registry)
    plan.approver_group = Group.objects.create(name="Rollout board")
    plan.save()
    promotion = rollouts.promotion_propose(plan_id=plan.pk)
    request = ApprovalRequest.objects.get(promotion=promotion)
    assert request.approver_group.name == "Rollout board" and request.requested_by is None
    assert services.may_decide(user=approver("bo", group="Rollout board"), request=request)
    assert not services.may_decide(user=approver("ann"), request=request)


# --- deciding -----------------------------------------------------------------------------


def test_approving_moves_the_plan_up_exactly_once(proposed):
    plan, promotion, request, _ = proposed
    ola = officer("ola")
    request = decide(request, ola, comment="figures look right")
    assert request.status == ApprovalStatus.APPROVED
    assert wave_of(plan) == 2
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.APPROVED
    event = RolloutEvent.objects.get(plan=plan, kind="promoted")
    assert event.actor == "ola" and "figures look right" in event.reason
    with pytest.raises(DomainError) as exc:
        decide(request, officer("oscar"))
    assert exc.value.code == "approval_not_pending"
    assert wave_of(plan) == 2
    assert RolloutEvent.objects.filter(plan=plan, kind="promoted").count() == 1


def test_rejecting_leaves_the_plan_where_it_is(proposed):
    plan, promotion, request, _ = proposed
    request = decide(request, officer("ola"), "reject", comment="too early")
    assert request.status == ApprovalStatus.REJECTED and wave_of(plan) == 1
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.REJECTED


def test_proposing_again_while_one_waits_opens_no_second_request(proposed):
    plan, promotion, request, paula = proposed
    assert rollouts.promotion_propose(plan_id=plan.pk, by=paula) == promotion
    assert ApprovalRequest.objects.filter(promotion__plan=plan).count() == 1


def test_an_approval_after_the_plan_moved_another_way_changes_nothing(client, proposed):
    plan, promotion, request, _ = proposed
    RolloutPlan.objects.filter(pk=plan.pk).update(current_wave=2)  # e.g. edited in the admin
    client.force_login(officer("ola"))
    response = client.post(f"/inbox/{request.pk}/decide/", {"verdict": "approve"}, follow=True)
    assert "the plan moved while it waited: nothing changed" in response.content.decode()
    promotion.refresh_from_db()
    assert promotion.status == PromotionStatus.VOID and wave_of(plan) == 2
    assert not RolloutEvent.objects.filter(plan=plan, kind="promoted").exists()


def test_the_proposer_may_approve_but_never_alone(proposed):
    plan, _, request, paula = proposed
    request = decide(request, paula)
    assert request.status == ApprovalStatus.PENDING and request.approvals == 1
    assert wave_of(plan) == 1
    request = decide(request, officer("ola"))
    assert request.status == ApprovalStatus.APPROVED and wave_of(plan) == 2


def test_a_promotion_is_never_approved_with_changes(proposed):
    plan, _, request, _ = proposed
    with pytest.raises(DomainError) as exc:
        decide(request, officer("ola"), "approve_with_changes", params={"amount": 1})
    assert exc.value.code == "validation_failed" and exc.value.status_code == 400
    request.refresh_from_db()
    assert request.status == ApprovalStatus.PENDING and wave_of(plan) == 1
    assert not request.decisions.exists()


def test_a_redirected_promotion_waits_for_the_new_group(proposed):
    plan, _, request, _ = proposed
    board = Group.objects.create(name="Rollout board")
    request = decide(request, officer("ola"), "redirect", redirect_to=board)
    assert request.status == ApprovalStatus.PENDING and request.approver_group == board
    request = decide(request, approver("bo", group="Rollout board"))
    assert request.status == ApprovalStatus.APPROVED and wave_of(plan) == 2


def test_someone_without_the_decide_permission_cannot_decide(proposed):
    plan, _, request, _ = proposed
    with pytest.raises(DomainError) as exc:
        decide(request, approver("ann"))  # an approver of actions, not of this plan
    assert exc.value.code == "not_an_approver" and exc.value.status_code == 403
    assert wave_of(plan) == 1


def test_promotions_are_never_decided_in_bulk(proposed):
    plan, _, request, _ = proposed
    done, refused = services.approvals_decide_bulk(
        approver=officer("ola"), ids=[request.pk], verdict="approve", channel=Channel.INBOX
    )
    assert done == 0 and "never decided in bulk" in refused[0]
    assert wave_of(plan) == 1


# --- closed without people -----------------------------------------------------------------


def test_a_demotion_while_it_waits_cancels_the_request(proposed):
    plan, promotion, request, paula = proposed
    rollouts.plan_demote(plan_id=plan.pk, by=paula, reason="failures in finance")
    request.refresh_from_db()
    promotion.refresh_from_db()
    assert request.status == ApprovalStatus.CANCELLED and request.decided_at is not None
    assert promotion.status == PromotionStatus.VOID and wave_of(plan) == 0
    with pytest.raises(DomainError) as exc:
        decide(request, officer("ola"))
    assert exc.value.code == "approval_not_pending"
    assert wave_of(plan) == 0


@pytest.mark.parametrize("outcome", [ExpiryOutcome.DENY, ExpiryOutcome.APPROVE])
def test_expiry_never_promotes(proposed, outcome):
    plan, promotion, request, _ = proposed
    ApprovalRequest.objects.filter(pk=request.pk).update(expiry_outcome=outcome)
    counts = services.approvals_sweep(now=request.expires_at + timedelta(seconds=1))
    assert counts["expired"] == 1
    request.refresh_from_db()
    promotion.refresh_from_db()
    assert request.status == ApprovalStatus.EXPIRED
    assert promotion.status == PromotionStatus.REJECTED and wave_of(plan) == 1
    expired = AuditRecord.objects.get(kind="approval_expired")
    assert expired.payload["outcome"] == "deny"


# --- the inbox ----------------------------------------------------------------------------


def test_the_inbox_lists_the_promotion_and_its_page_shows_figures_against_thresholds(
    client, proposed
):
    plan, _, request, _ = proposed
    client.force_login(officer("ola"))
    listed = client.get("/inbox/").content.decode()
    assert f'data-id="{request.pk}"' in listed and "Promote Invoice rollout" in listed
    assert f'name="ids" value="{request.pk}"' not in listed  # never in bulk
    page = client.get(f"/inbox/{request.pk}/").content.decode()
    assert "Invoice rollout: wave 1 → 2" in page
    figures = page[page.index('id="promotion-figures"') :]
    for text in ("actions taken", "≥ 3", "denial ratio", "0.0%", "≤ 20.0%", "✓", "1 day"):
        assert text in figures, text
    assert 'value="approve"' in page and 'value="reject"' in page and 'value="redirect"' in page
    assert "approve_with_changes" not in page


def test_the_promotion_links_to_its_plans_page(client, proposed):
    client.force_login(officer("ola"))
    page = client.get(f"/inbox/{proposed[2].pk}/").content.decode()
    assert 'href="/rollouts/invoices/" id="plan-link"' in page
    assert client.get("/rollouts/invoices/").status_code == 200


def _promotions_waiting(registry, n: int, start: int = 0) -> None:
    """``n`` more plans over the registry's role, each with a promotion waiting (wave 2 asks
    for nothing the empty record cannot show)."""
    for i in range(start, start + n):
        plan = RolloutPlan.objects.create(
            slug=f"plan-{i}", name=f"Plan {i}", role=registry.agent.role, current_wave=1,
            auto_propose=False,
        )  # fmt: skip
        RolloutWave.objects.create(plan=plan, number=1, level=AutonomyLevel.SHADOW)
        RolloutWave.objects.create(plan=plan, number=2, level=AutonomyLevel.SUPERVISED)
        rollouts.promotion_propose(plan_id=plan.pk)


def _queries(client, url: str) -> int:
    """What the page costs when the load strip's figures are computed too (they are cached
    for 30 s between page views: every measurement starts with them uncached)."""
    cache.clear()
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_the_inbox_costs_the_same_queries_for_2_and_12_promotions(client, db):
    registry = build_registry()
    client.force_login(officer("ola"))
    _promotions_waiting(registry, 2)
    few = {url: _queries(client, url) for url in ("/inbox/", "/inbox/list/")}
    _promotions_waiting(registry, 10, start=2)
    assert {url: _queries(client, url) for url in ("/inbox/", "/inbox/list/")} == few
    request = ApprovalRequest.objects.filter(promotion__isnull=False).first()
    assert _queries(client, f"/inbox/{request.pk}/?partial=1") <= 12


def test_a_criterion_that_failed_shows_a_cross(client, proposed):
    _, promotion, request, _ = proposed
    promotion.figures["criteria"][0].update(value=1, met=False)
    promotion.save()
    client.force_login(officer("ola"))
    page = client.get(f"/inbox/{request.pk}/").content.decode()
    assert 'title="not met">✗' in page


def test_approving_in_the_inbox_promotes_the_plan(client, proposed):
    plan, _, request, _ = proposed
    client.force_login(officer("ola"))
    response = client.post(f"/inbox/{request.pk}/decide/", {"verdict": "approve"})
    assert response.status_code == 302
    assert wave_of(plan) == 2
    page = client.get(response["Location"]).content.decode()
    assert "The plan is at wave 2 now." in page


def test_the_proposer_is_told_their_approval_does_not_count_alone(client, proposed):
    plan, _, request, paula = proposed
    client.force_login(paula)
    assert "You proposed this promotion" in client.get(f"/inbox/{request.pk}/").content.decode()
    response = client.post(f"/inbox/{request.pk}/decide/", {"verdict": "approve"}, follow=True)
    assert "not approve it alone" in response.content.decode() and wave_of(plan) == 1


def test_redirecting_in_the_inbox_hands_the_promotion_to_another_group(client, proposed):
    plan, _, request, _ = proposed
    Group.objects.create(name="Rollout board")
    client.force_login(officer("ola"))
    response = client.post(
        f"/inbox/{request.pk}/decide/", {"verdict": "redirect", "redirect_to": "Rollout board"}
    )
    assert response.status_code == 302
    request.refresh_from_db()
    assert request.approver_group.name == "Rollout board" and wave_of(plan) == 1


def test_a_person_who_may_not_decide_the_promotion_does_not_see_it(client, proposed):
    plan, _, request, _ = proposed
    client.force_login(approver("ann"))
    assert client.get(f"/inbox/{request.pk}/").status_code == 404
    assert client.post(f"/inbox/{request.pk}/decide/", {"verdict": "approve"}).status_code == 404
    assert wave_of(plan) == 1


# --- e-mail -------------------------------------------------------------------------------

LINK = re.compile(r"https?://\S+/approvals/e/[^/\s]+/")


@pytest.fixture
def mailed(db, tasks_run_in_process, django_capture_on_commit_callbacks):
    """A promotion proposed by ``paula``, both officers e-mailed; the plan's name needs
    escaping in HTML, never in a plain-text e-mail."""
    registry = build_registry()
    plan = seed_plan(registry)
    plan.name = "Invoices & credit notes"
    plan.save()
    paula, ola = officer("paula"), officer("ola")
    with django_capture_on_commit_callbacks(execute=True):
        promotion = rollouts.promotion_propose(plan_id=plan.pk, by=paula)
    return plan, ApprovalRequest.objects.get(promotion=promotion), paula, ola


def test_the_e_mail_carries_the_figures_in_plain_text_and_the_proposer_gets_no_link(mailed):
    plan, request, paula, ola = mailed
    (message,) = mail.outbox  # ola's; paula proposed it and may not approve alone
    assert message.to == [ola.email]
    assert "Promote Invoices & credit notes to wave 2" in message.subject
    body = message.body
    assert '"Invoices & credit notes" may move from wave 1 to wave 2' in body
    assert "&amp;" not in body and "&#x27;" not in body and "&quot;" not in body
    assert "[met]     actions taken: 3 (threshold ≥ 3)" in body
    assert "denial ratio: 0.0% (threshold ≤ 20.0%)" in body
    assert "Proposed by: paula" in body and LINK.search(body)


def test_the_e_mail_link_shows_the_promotion_and_approving_there_promotes_the_plan(client, mailed):
    plan, request, _, _ = mailed
    path = urlsplit(LINK.search(mail.outbox[0].body).group(0)).path
    page = client.get(path)
    assert page.status_code == 200
    text = page.content.decode()
    assert "Promote Invoices &amp; credit notes to wave 2" in text and "≤ 20.0%" in text
    result = client.post(path, {"verdict": "approve", "comment": "good figures"})
    assert result.status_code == 200
    assert "is at wave 2 now" in result.content.decode()
    assert wave_of(plan) == 2
    assert request.decisions.get().channel == Channel.EMAIL


# --- API ----------------------------------------------------------------------------------


def api_as(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_the_api_shows_what_kind_of_work_waits_and_the_promotions_figures(proposed):
    plan, promotion, request, paula = proposed
    (row,) = api_as(officer("ola")).get("/api/v1/approvals/").json()["results"]
    assert row["id"] == str(request.pk) and row["kind"] == "promotion"
    assert row["action"] is None and row["agent"] is None and row["operation"] is None
    assert row["requested_by"] == "paula"
    assert row["promotion"]["id"] == str(promotion.pk) and row["promotion"]["plan"] == "invoices"
    assert (row["promotion"]["from_wave"], row["promotion"]["to_wave"]) == (1, 2)
    assert row["promotion"]["figures"]["met"] is True
    assert row["promotion"]["figures"]["figures"]["actions"] == 3


def test_deciding_through_the_api_promotes_the_plan(proposed):
    plan, _, request, _ = proposed
    answer = api_as(officer("ola")).post(
        f"/api/v1/approvals/{request.pk}/decide/", {"verdict": "approve"}, format="json"
    )
    assert answer.status_code == 200 and answer.json()["status"] == "approved"
    assert wave_of(plan) == 2


def test_the_api_refuses_to_approve_a_promotion_with_changes(proposed):
    plan, _, request, _ = proposed
    answer = api_as(officer("ola")).post(
        f"/api/v1/approvals/{request.pk}/decide/",
        {"verdict": "approve_with_changes", "params": {"amount": 1}},
        format="json",
    )
    assert_envelope(answer, 400, "validation_failed")
    assert wave_of(plan) == 1


def test_the_api_refuses_a_person_without_the_decide_permission(proposed):
    plan, _, request, _ = proposed
    ann = api_as(approver("ann"))
    assert ann.get("/api/v1/approvals/").json()["results"] == []
    answer = ann.post(
        f"/api/v1/approvals/{request.pk}/decide/", {"verdict": "approve"}, format="json"
    )
    assert_envelope(answer, 403, "not_an_approver")
    assert wave_of(plan) == 1


def test_the_api_still_shows_an_actions_request_as_before(db):
    registry = build_registry()
    action = pending_action(registry)
    (row,) = api_as(approver("ann")).get("/api/v1/approvals/").json()["results"]
    assert row["kind"] == "action" and row["action"] == str(action.pk)
    assert row["operation"] == "erp.post-invoice" and row["promotion"] is None
    assert row["owner"] == registry.agent.owner.username and row["requested_by"] is None


# --- pages that count requests --------------------------------------------------------------


def test_escalation_reaches_the_risk_officers_for_a_plans_own_group(db):
    registry = build_registry()
    plan = seed_plan(registry)
    plan.approver_group = Group.objects.create(name="Rollout board")
    plan.save()
    request = ApprovalRequest.objects.get(promotion=rollouts.promotion_propose(plan_id=plan.pk))
    ola = officer("ola")
    assert not services.may_decide(user=ola, request=request)
    assert services.approvals_sweep(now=request.escalate_at + timedelta(seconds=1))["escalated"]
    request = ApprovalRequest.objects.get(pk=request.pk)
    assert services.may_decide(user=ola, request=request)
    escalated = AuditRecord.objects.get(kind="approval_escalated")
    assert escalated.payload["promotion_id"] == str(request.promotion_id)


@override_settings(DEBUG=True)
def test_the_dashboard_and_metrics_count_a_promotions_request(client, proposed):
    plan, _, request, _ = proposed
    client.force_login(officer("ola"))
    dashboard = client.get("/dashboard/")
    assert dashboard.status_code == 200
    assert 'data-tile="approvals-pending"' in dashboard.content.decode()
    metrics = client.get("/metrics").content.decode()
    assert "autonomy_approvals_pending 1.0" in metrics
    decide(request, officer("oscar"))
    assert client.get("/dashboard/").status_code == 200


def test_the_admin_shows_a_promotions_request(admin_client, proposed):
    _, _, request, _ = proposed
    listed = admin_client.get("/admin/approvals/approvalrequest/")
    assert listed.status_code == 200 and "Promote Invoice rollout" in listed.content.decode()
    assert (
        admin_client.get(f"/admin/approvals/approvalrequest/{request.pk}/change/").status_code
        == 200
    )


# --- concurrency (PostgreSQL) ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_officers_approving_at_once_move_the_plan_exactly_once(postgres):
    registry = build_registry()
    plan = seed_plan(registry)
    request = ApprovalRequest.objects.get(promotion=rollouts.promotion_propose(plan_id=plan.pk))
    people = [officer(f"o{i}") for i in range(8)]
    outcomes = at_once(*(lambda p=p: decide(request, p) for p in people))
    assert outcomes.count("ok") == 1 and outcomes.count("approval_not_pending") == 7
    assert wave_of(plan) == 2
    assert RolloutEvent.objects.filter(plan=plan, kind="promoted").count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", range(5))
def test_an_approval_racing_a_demotion_never_deadlocks_and_one_of_them_wins(postgres, attempt):
    registry = build_registry()
    plan = seed_plan(registry)
    paula, ola = officer("paula"), officer("ola")
    request = ApprovalRequest.objects.get(promotion=rollouts.promotion_propose(plan_id=plan.pk))
    outcomes = at_once(
        lambda: decide(request, ola),
        lambda: rollouts.plan_demote(plan_id=plan.pk, by=paula, reason="failures"),
    )
    request.refresh_from_db()
    if outcomes == ["ok", "ok"]:  # approved first, demoted after: back to wave 1
        assert request.status == ApprovalStatus.APPROVED and wave_of(plan) == 1
    else:  # demoted first: the request was cancelled before anyone could approve it
        assert outcomes == ["approval_not_pending", "ok"], outcomes
        assert request.status == ApprovalStatus.CANCELLED and wave_of(plan) == 0
