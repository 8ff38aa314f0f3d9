"""The approval inbox at /inbox/: who sees what, in which order, and what deciding does."""

import re
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from guardian.shortcuts import assign_perm

from agents.models import Agent
from approvals.models import ApprovalRequest, ApprovalStatus, Decision
from autonomy import actions as lifecycle
from autonomy import grants
from autonomy.models import (
    ActionRequest,
    ActionStatus,
    DataClass,
    Effect,
    Operation,
    Verdict,
)
from autonomy.policy import services as policy_services
from tests.autonomy.gate_fixtures import build_registry
from tests.factories import BusinessUnitFactory, UserFactory, make_agent

pytestmark = pytest.mark.django_db

DECIDE = "approvals.decide_approvalrequest"
INBOX = "/inbox/"


@dataclass
class World:
    ap_bot: Agent
    ship_bot: Agent
    pay: Operation
    fiona: object  # decides Finance
    liam: object  # decides Logistics
    finance_approvers: Group


def person(username: str, *groups: Group):
    user = UserFactory(username=username, first_name=username.title(), last_name="Example")
    user.groups.add(*groups)
    return user


@pytest.fixture
def world(db) -> World:
    """Two business units, each with its own approver group; every action needs a person."""
    registry = build_registry()
    finance_approvers = Group.objects.create(name="Finance approvers")
    logistics_approvers = Group.objects.create(name="Logistics approvers")
    finance = registry.agent.business_unit
    finance.approver_group = finance_approvers
    finance.approval_threshold = 0
    finance.dual_control_risk = 100
    finance.save()
    logistics = BusinessUnitFactory(
        slug="logistics", name="Logistics", approver_group=logistics_approvers,
        approval_threshold=0, dual_control_risk=100,
    )  # fmt: skip
    ship_bot = make_agent(
        slug="ship-bot", business_unit=logistics, role=registry.agent.role, risk_tier=1
    )
    pay = Operation.objects.create(
        connector=registry.erp, slug="pay-supplier", name="Pay supplier", effect=Effect.WRITE,
        sensitivity=5, data_class=DataClass.RESTRICTED, financial=True, amount_param="amount",
        params_schema={"type": "object"},
    )  # fmt: skip
    grants.grant(target=pay, to=registry.agent.role)
    policy_services.registry_changed()
    return World(
        ap_bot=registry.agent,
        ship_bot=ship_bot,
        pay=pay,
        fiona=person("fiona", finance_approvers),
        liam=person("liam", logistics_approvers),
        finance_approvers=finance_approvers,
    )


def ask(agent, *, op: str = "erp.post-invoice", amount=5000, reason="") -> ApprovalRequest:
    """An agent's request that the gate sends to people, exactly as in production."""
    action, _ = lifecycle.action_request(
        agent=agent,
        operation_key=op,
        params={"invoice_id": "INV-7", "amount": amount},
        reason=reason,
    )
    assert action.status == ActionStatus.PENDING_APPROVAL, action.reasons
    return ApprovalRequest.objects.get(action=action)


def signed_in(client, user):
    client.force_login(user)
    return client


def listed_ids(response) -> list[str]:
    return re.findall(
        r'class="request-item[^"]*" data-id="([0-9a-f-]+)"', response.content.decode()
    )


def test_anonymous_visitor_is_sent_to_sign_in(client):
    response = client.get(INBOX)
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/inbox/"


def test_agents_service_user_is_refused(client, world):
    for url in (INBOX, "/inbox/list/"):
        assert signed_in(client, world.ap_bot.service_user).get(url).status_code == 403


def test_person_sees_only_requests_their_groups_may_decide(client, world):
    finance_request = ask(world.ap_bot)
    logistics_request = ask(world.ship_bot)

    ids = listed_ids(signed_in(client, world.fiona).get(INBOX))
    assert ids == [str(finance_request.pk)]
    ids = listed_ids(signed_in(client, world.liam).get(INBOX))
    assert ids == [str(logistics_request.pk)]
    assert signed_in(client, world.fiona).get(f"/inbox/{logistics_request.pk}/").status_code == 404


def test_inbox_is_sorted_by_risk_then_age(client, world):
    old_low, new_high, new_low, older_high = (ask(world.ap_bot) for _ in range(4))
    now = timezone.now()
    for request, risk, minutes_ago in (
        (old_low, 20, 30), (new_high, 80, 1), (new_low, 20, 2), (older_high, 80, 10)
    ):  # fmt: skip
        ApprovalRequest.objects.filter(pk=request.pk).update(
            risk_score=risk, created_at=now - timedelta(minutes=minutes_ago)
        )
    ids = listed_ids(signed_in(client, world.fiona).get(INBOX))
    assert ids == [str(r.pk) for r in (older_high, new_high, old_low, new_low)]


def test_detail_shows_everything_needed_to_decide_on_one_screen(client, world):
    request = ask(world.ap_bot, amount=4321, reason="Supplier invoice matched to PO-88.")
    response = signed_in(client, world.fiona).get(f"/inbox/{request.pk}/")
    text = response.content.decode()
    assert response.status_code == 200
    owner = world.ap_bot.owner
    for expected in (
        "AP bot", owner.username, "Invoice-Processor", "Finance",  # agent, owner, role, unit
        "erp.post-invoice", "&quot;invoice_id&quot;: &quot;INV-7&quot;", "4,321.00",  # action
        "Supplier invoice matched to PO-88.",  # the agent's reason
        "Operation sensitivity", "Moves or commits money",  # risk factors
        "risk_needs_approval", "Risk threshold of Finance", "baseline",  # gate and policies
        "0 of 1", "Expires in", "Not part of a workflow.",
        "recent actions", "(this request)",
    ):  # fmt: skip
        assert expected in text, expected
    partial = client.get(f"/inbox/{request.pk}/?partial=1").content.decode()
    assert "erp.post-invoice" in partial and "<html" not in partial


def test_detail_names_the_policy_that_asked_for_approval(client, world):
    finance = world.ap_bot.business_unit
    finance.approval_threshold = 100
    finance.save()
    policy_services.policy_save(
        name="Invoices over 1,000 need a person", enabled=True, by=world.ap_bot.owner,
        text='@approval("required")\npermit (principal, action, resource) when { context has amount && context.amount > 1000 };',
    )  # fmt: skip
    request = ask(world.ap_bot, amount=2000)
    text = signed_in(client, world.fiona).get(f"/inbox/{request.pk}/").content.decode()
    assert "policy_requires_approval" in text
    assert "Invoices over 1,000 need a person" in text


def test_approving_moves_the_action_to_approved_without_running_it_here(client, world):
    request = ask(world.ap_bot)
    response = signed_in(client, world.fiona).post(
        f"/inbox/{request.pk}/decide/", {"verdict": "approve", "comment": "Matches the PO."}
    )
    assert response.status_code == 302 and response["Location"] == f"/inbox/{request.pk}/"
    request.refresh_from_db()
    action = ActionRequest.objects.get(pk=request.action_id)
    assert request.status == ApprovalStatus.APPROVED
    assert action.status == ActionStatus.APPROVED  # the worker runs it, not the page
    assert action.outcome is None and action.started_at is None
    decision = Decision.objects.get(request=request)
    assert (decision.approver, decision.channel, decision.comment) == (
        world.fiona,
        "inbox",
        "Matches the PO.",
    )
    page = client.get(response["Location"]).content.decode()
    assert "The action is released to run." in page
    assert listed_ids(client.get(INBOX)) == []


def test_rejecting_moves_the_action_to_denied(client, world):
    request = ask(world.ap_bot)
    signed_in(client, world.fiona).post(
        f"/inbox/{request.pk}/decide/", {"verdict": "reject", "comment": "Duplicate invoice."}
    )
    request.refresh_from_db()
    assert request.status == ApprovalStatus.REJECTED
    assert ActionRequest.objects.get(pk=request.action_id).status == ActionStatus.DENIED


def test_second_decision_on_a_settled_request_shows_a_clear_error(client, world):
    request = ask(world.ap_bot)
    colleague = person("felix", world.finance_approvers)
    signed_in(client, colleague).post(f"/inbox/{request.pk}/decide/", {"verdict": "reject"})

    response = signed_in(client, world.fiona).post(
        f"/inbox/{request.pk}/decide/", {"verdict": "approve", "comment": "late"}
    )
    text = response.content.decode()
    assert response.status_code == 409
    assert "Your decision was not recorded." in text
    assert "This request is already rejected." in text
    assert Decision.objects.filter(request=request).count() == 1


def test_a_decision_without_a_verdict_is_refused(client, world):
    request = ask(world.ap_bot)
    response = signed_in(client, world.fiona).post(f"/inbox/{request.pk}/decide/", {"comment": "?"})
    assert response.status_code == 400
    assert "Choose Approve or Reject." in response.content.decode()
    assert not Decision.objects.exists()


def test_owner_approving_alone_does_not_settle_a_quorum_one_request(client, world):
    owner = world.ap_bot.owner
    owner.groups.add(world.finance_approvers)
    request = ask(world.ap_bot)
    assert request.quorum == 1

    response = signed_in(client, owner).post(
        f"/inbox/{request.pk}/decide/", {"verdict": "approve"}, follow=True
    )
    request.refresh_from_db()
    assert request.status == ApprovalStatus.PENDING and request.approvals == 1
    assert ActionRequest.objects.get(pk=request.action_id).status == ActionStatus.PENDING_APPROVAL
    text = response.content.decode()
    assert "1 of 1" in text
    assert "someone other than the owner must also approve" in text

    signed_in(client, world.fiona).post(f"/inbox/{request.pk}/decide/", {"verdict": "approve"})
    request.refresh_from_db()
    assert request.status == ApprovalStatus.APPROVED


def test_bulk_approve_accepts_only_low_risk_requests(client, world):
    low_a, low_b = ask(world.ap_bot), ask(world.ap_bot)
    high = ask(world.ap_bot, op="erp.pay-supplier", amount=100)
    assert max(low_a.risk_score, low_b.risk_score) < 40 <= high.risk_score
    listing = signed_in(client, world.fiona).get(INBOX).content.decode()
    assert f'name="ids" value="{low_a.pk}"' in listing
    assert f'name="ids" value="{high.pk}"' not in listing

    response = client.post(
        "/inbox/bulk/",
        {"ids": [low_a.pk, low_b.pk, high.pk], "verdict": "approve", "comment": "Routine."},
        follow=True,
    )
    statuses = dict(ApprovalRequest.objects.values_list("pk", "status"))
    assert statuses == {low_a.pk: "approved", low_b.pk: "approved", high.pk: "pending"}
    text = response.content.decode()
    assert "Approved 2 requests." in text
    assert f"risk {high.risk_score} is too high for a bulk decision" in text
    assert Decision.objects.filter(comment="Routine.", channel="inbox").count() == 2


def test_bulk_reports_requests_that_are_not_in_the_persons_inbox(client, world):
    theirs = ask(world.ship_bot)
    response = signed_in(client, world.fiona).post(
        "/inbox/bulk/", {"ids": [theirs.pk], "verdict": "reject"}, follow=True
    )
    assert "not pending in your inbox" in response.content.decode()
    theirs.refresh_from_db()
    assert theirs.status == ApprovalStatus.PENDING


def test_bulk_without_a_selection_says_what_is_missing(client, world):
    response = signed_in(client, world.fiona).post(
        "/inbox/bulk/", {"verdict": "approve"}, follow=True
    )
    assert "Select at least one low-risk request." in response.content.decode()


def test_list_poll_answers_not_modified_until_a_request_arrives(client, world):
    ask(world.ap_bot)
    signed_in(client, world.fiona)
    first = client.get("/inbox/list/")
    assert first.status_code == 200 and first["ETag"]
    assert "<html" not in first.content.decode()
    idle = client.get("/inbox/list/", HTTP_IF_NONE_MATCH=first["ETag"])
    assert idle.status_code == 304 and idle.content == b""

    arrived = ask(world.ap_bot)
    changed = client.get("/inbox/list/", HTTP_IF_NONE_MATCH=first["ETag"])
    assert changed.status_code == 200
    assert str(arrived.pk) in changed.content.decode()


def test_inbox_page_loads_its_script_from_a_static_file_only(client, world):
    text = signed_in(client, world.fiona).get(INBOX).content.decode()
    scripts = re.findall(r"<script[^>]*>", text)
    assert scripts == ['<script src="/static/portal/inbox.js" defer>']
    assert not re.search(r"\son[a-z]+=", text)  # no inline event handlers either


def _pending(world, count: int) -> None:
    """``count`` pending requests for Finance, written in bulk rather than through the gate."""
    op = Operation.objects.get(slug="post-invoice")
    now = timezone.now()
    actions = ActionRequest.objects.bulk_create(
        ActionRequest(
            agent=world.ap_bot, operation=op, params={"invoice_id": f"B-{i}", "amount": i},
            verdict=Verdict.NEEDS_APPROVAL, status=ActionStatus.PENDING_APPROVAL,
            risk_score=i % 100, created_at=now,
        )
        for i in range(count)
    )  # fmt: skip
    requests = ApprovalRequest.objects.bulk_create(
        ApprovalRequest(
            action=a, agent=world.ap_bot, business_unit=world.ap_bot.business_unit,
            subject=f"AP bot: erp.post-invoice #{i}", risk_score=a.risk_score,
            approver_group=world.finance_approvers, quorum=1 + i % 2,
            expires_at=now + timedelta(hours=1),
        )
        for i, a in enumerate(actions)
    )  # fmt: skip
    assign_perm(DECIDE, world.finance_approvers, requests)


def _queries(client, url: str) -> int:
    """What the page costs when the load strip's figures are computed too (they are cached
    for 30 s between page views: every measurement starts with them uncached)."""
    cache.clear()
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_inbox_and_its_list_cost_the_same_queries_for_10_and_300_requests(client, world):
    signed_in(client, world.fiona)
    _pending(world, 10)
    few = {url: _queries(client, url) for url in (INBOX, "/inbox/list/")}
    _pending(world, 290)
    many = {url: _queries(client, url) for url in (INBOX, "/inbox/list/")}
    assert many == few
    assert max(many.values()) <= 12
    page = client.get(INBOX)
    assert len(listed_ids(page)) == 50  # a page at a time
    assert 'id="inbox-count">300<' in page.content.decode()
    assert len(listed_ids(client.get(INBOX + "?page=6"))) == 50


def test_detail_costs_the_same_queries_however_long_the_agents_history(client, world):
    request = ask(world.ap_bot)
    signed_in(client, world.fiona)
    url = f"/inbox/{request.pk}/"
    few = _queries(client, url)
    _pending(world, 40)
    assert _queries(client, url) == few
