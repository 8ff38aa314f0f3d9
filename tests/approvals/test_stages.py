"""Staged approvals: a route's stages go in order, each with its own approvers, quorum,
clocks and escalation; a rejection at any stage ends the request; e-mail links, the inbox and
the API say which stage waits and who decided the earlier ones."""

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail

from approvals import selectors, services
from approvals.models import (
    ApprovalStage,
    ApprovalStatus,
    Channel,
    Decision,
)
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import ActionStatus, AuditRecord
from tests.approvals.conftest import approver
from tests.approvals.route_fixtures import fresh, payments_route, people, staged_request
from tests.autonomy.gate_fixtures import build_registry
from tests.conftest import at_once

pytestmark = pytest.mark.django_db
LINK = re.compile(r"https?://\S+(/approvals/e/[^/\s]+/)")


def decide(request, user, verdict="approve", channel=Channel.INBOX):
    return services.approval_decide(
        request_id=request.pk, approver=fresh(user), verdict=verdict, channel=channel
    )


def track(request) -> list[tuple]:
    return list(
        ApprovalStage.objects.filter(request=request)
        .order_by("number")
        .values_list("name", "status")
    )


@pytest.fixture
def staged(db):
    registry = build_registry()
    payments_route(registry, stages=3)
    return registry, staged_request(registry), *people()


def test_a_payment_above_the_threshold_goes_through_two_stages_end_to_end(db):
    registry = build_registry()
    payments_route(registry)
    mia, fred, _, _ = people()
    request = staged_request(registry)
    assert (request.stage, request.stages, request.stage_name) == (1, 2, "Manager")
    assert request.route_label == "Approval route: Payments over 10k"
    assert track(request) == [("Manager", "pending"), ("Finance", "waiting")]

    decide(request, mia)
    request.refresh_from_db()
    request.action.refresh_from_db()
    assert request.status == ApprovalStatus.PENDING and request.stage == 2
    assert request.approver_group.name == "Finance approvers" and request.approvals == 0
    assert request.action.status == ActionStatus.PENDING_APPROVAL  # not released yet
    assert track(request) == [("Manager", "approved"), ("Finance", "pending")]

    decide(request, fred)
    request.refresh_from_db()
    request.action.refresh_from_db()
    assert request.status == ApprovalStatus.APPROVED
    assert request.action.status == ActionStatus.APPROVED
    assert track(request) == [("Manager", "approved"), ("Finance", "approved")]
    assert list(Decision.objects.filter(request=request).values_list("stage", "approver__username")) == [
        (1, "mia"), (2, "fred"),
    ]  # fmt: skip
    assert AuditRecord.objects.filter(kind="approval_stage_passed").count() == 1


def test_a_payment_below_the_threshold_keeps_the_one_default_stage(db):
    registry = build_registry()
    payments_route(registry)
    request = staged_request(registry, amount=9_999)
    assert (request.stage, request.stages, request.route_id, request.route_label) == (
        1, 1, None, "",
    )  # fmt: skip
    assert request.approver_group.name == "Portal: Approver"
    assert not ApprovalStage.objects.filter(request=request).exists()


def test_stage_twos_approvers_cannot_decide_during_stage_one(staged):
    _, request, mia, fred, _, _ = staged
    with pytest.raises(DomainError) as refused:
        decide(request, fred)
    assert refused.value.code == ErrorCode.NOT_AN_APPROVER
    assert list(selectors.inbox_for_user(user=fred)) == []
    assert list(selectors.inbox_for_user(user=mia)) == [request]

    decide(request, mia)
    assert list(selectors.inbox_for_user(user=fred)) == [request]
    assert list(selectors.inbox_for_user(user=mia)) == []  # stage 1's group no longer decides
    with pytest.raises(DomainError) as late:
        decide(request, approver("max", group="Managers"))
    assert late.value.code == ErrorCode.NOT_AN_APPROVER


def test_whoever_approved_stage_one_cannot_decide_stage_two(staged):
    _, request, _, _, _, bea = staged  # bea is in both groups
    decide(request, bea)
    request.refresh_from_db()
    assert request.stage == 2 and services.may_decide(user=fresh(bea), request=request)
    with pytest.raises(DomainError) as refused:
        decide(request, bea)
    assert refused.value.code == ErrorCode.DECIDED_EARLIER_STAGE
    assert refused.value.details == {"stage": 2, "decided_stage": 1}
    request.refresh_from_db()
    assert request.stage == 2 and request.approvals == 0


def test_a_rejection_at_stage_two_ends_the_request_and_the_action_is_denied(staged):
    _, request, mia, fred, sue, _ = staged
    decide(request, mia)
    decide(request, fred, verdict="reject")
    request.refresh_from_db()
    request.action.refresh_from_db()
    assert request.status == ApprovalStatus.REJECTED
    assert request.action.status == ActionStatus.DENIED
    assert request.action.reasons[-1]["code"] == "approval_rejected"
    assert track(request) == [
        ("Manager", "approved"), ("Finance", "rejected"), ("Security", "waiting"),
    ]  # fmt: skip
    with pytest.raises(DomainError) as after:
        decide(request, sue)
    assert after.value.code == ErrorCode.NOT_AN_APPROVER  # stage 3 never opened


def test_the_last_stage_releases_the_action_only_after_every_stage(staged):
    _, request, mia, fred, sue, _ = staged
    for person, stage_after in ((mia, 2), (fred, 3)):
        decide(request, person)
        request.refresh_from_db()
        assert request.stage == stage_after and request.status == ApprovalStatus.PENDING
    decide(request, sue)
    request.refresh_from_db()
    assert request.status == ApprovalStatus.APPROVED
    assert [s for _, s in track(request)] == ["approved"] * 3


START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_expiry_at_a_stage_escalates_by_its_rule_then_expires_on_a_frozen_clock(
    db, django_capture_on_commit_callbacks
):
    """Stage 2's clocks start when stage 2 starts: it escalates to Sam after ten minutes
    of its own, and expires (deny) after an hour of its own."""
    registry = build_registry()
    sam = approver("sam", group="Controllers")
    payments_route(registry, escalate_after_seconds=600, ttl_seconds=3600, escalate_to_user=sam)
    mia, fred, _, _ = people()
    with time_machine.travel(START, tick=False) as clock:
        request = staged_request(registry)
        clock.shift(timedelta(minutes=30))
        decide(request, mia)  # stage 2 starts at START + 30 min
        request.refresh_from_db()
        assert request.expires_at == START + timedelta(minutes=90)
        assert request.escalate_at == START + timedelta(minutes=40)

        assert services.approvals_sweep(now=START + timedelta(minutes=39))["escalated"] == 0
        assert not services.may_decide(user=fresh(sam), request=request)
        with django_capture_on_commit_callbacks(execute=False):
            counts = services.approvals_sweep(now=START + timedelta(minutes=40))
        assert counts == {"expired": 0, "escalated": 1, "reminded": 0}
        assert services.may_decide(user=fresh(sam), request=request)
        assert list(selectors.inbox_for_user(user=sam)) == [request]
        escalated = AuditRecord.objects.get(kind="approval_escalated")
        assert escalated.payload["to"] == "sam" and escalated.payload["stage"] == 2

        assert services.approvals_sweep(now=START + timedelta(minutes=89))["expired"] == 0
        assert services.approvals_sweep(now=START + timedelta(minutes=90))["expired"] == 1
    request.refresh_from_db()
    request.action.refresh_from_db()
    assert request.status == ApprovalStatus.EXPIRED
    assert request.action.status == ActionStatus.DENIED
    assert track(request) == [("Manager", "approved"), ("Finance", "expired")]


def test_a_stage_that_expires_with_outcome_approve_passes_to_the_next(db):
    registry = build_registry()
    route = payments_route(registry, stages=3)
    route.stages.filter(number=1).update(ttl_seconds=60, expiry_outcome="approve")
    with time_machine.travel(START, tick=False):
        request = staged_request(registry)
        assert services.approvals_sweep(now=START + timedelta(seconds=60))["expired"] == 1
    request.refresh_from_db()
    assert request.status == ApprovalStatus.PENDING and request.stage == 2
    assert request.expires_at > START + timedelta(seconds=60)  # stage 2's own clock
    assert track(request)[0] == ("Manager", "approved")


def test_a_cancelled_action_cancels_every_open_stage(staged):
    _, request, mia, _, _, _ = staged
    decide(request, mia)
    assert services.approval_cancel(action_id=request.action_id) == 1
    assert [s for _, s in track(request)] == ["approved", "cancelled", "cancelled"]


@pytest.mark.usefixtures("tasks_run_in_process")
def test_a_stage_one_email_link_no_longer_works_after_stage_one(
    db, client, django_capture_on_commit_callbacks
):
    registry = build_registry()
    payments_route(registry)
    mia, fred, _, bea = people()
    with django_capture_on_commit_callbacks(execute=True):
        request = staged_request(registry)
    links = {m.to[0]: LINK.search(m.body).group(1) for m in mail.outbox}
    assert set(links) == {"mia@example.com", "bea@example.com"}
    assert all("(stage 1 of 2)" in m.subject for m in mail.outbox)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(links["mia@example.com"], {"verdict": "approve"}).status_code == 200
    request.refresh_from_db()
    assert request.stage == 2

    stale = client.post(links["bea@example.com"], {"verdict": "approve"})
    assert stale.status_code == 410
    assert "This stage is already decided" in stale.content.decode()
    assert client.get(links["bea@example.com"]).status_code == 410
    request.refresh_from_db()
    assert (request.stage, request.approvals, request.decisions.count()) == (2, 0, 1)

    # Stage 2's e-mails go to finance (bea too: mia, not she, decided stage 1), naming the
    # stage, who decided stage 1 and the rule.
    assert sorted(m.to[0] for m in mail.outbox) == ["bea@example.com", "fred@example.com"]
    body = mail.outbox[0].body
    assert "Stage:       2 of 2 · Finance" in body
    assert "Stage 1 (Manager): approved by mia (approve" in body
    assert "Rule:        Approval route: Payments over 10k" in body


@pytest.mark.usefixtures("tasks_run_in_process")
def test_whoever_decided_stage_one_gets_no_link_for_stage_two(
    db, django_capture_on_commit_callbacks
):
    registry = build_registry()
    payments_route(registry)
    _, _, _, bea = people()
    approver("fred", group="Finance approvers")
    with django_capture_on_commit_callbacks(execute=True):
        request = staged_request(registry)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        decide(request, bea, channel=Channel.INBOX)
    assert [m.to[0] for m in mail.outbox] == ["fred@example.com"]


def test_the_inbox_row_and_the_pane_show_the_stage_and_who_decided_earlier(staged, client):
    _, request, mia, fred, _, _ = staged
    decide(request, mia)
    client.force_login(fred)
    page = client.get("/inbox/").content.decode()
    assert "Stage 2 of 3 · Finance" in page
    pane = client.get(f"/inbox/{request.pk}/?partial=1").content.decode()
    assert 'id="stage-track"' in pane
    assert "Approval route: Payments over 10k" in pane
    assert re.search(r"Manager</strong>.*?Approved.*?mia", pane, re.S)
    assert re.search(r"Finance</strong>.*?Current", pane, re.S)
    assert re.search(r"Security</strong>.*?Waiting", pane, re.S)


def test_the_api_shows_the_stage_the_rule_and_the_stage_history(staged):
    from rest_framework.test import APIClient

    _, request, mia, fred, _, _ = staged
    decide(request, mia)
    api = APIClient()
    api.force_authenticate(fresh(fred))
    (row,) = api.get("/api/v1/approvals/").json()["results"]
    assert (row["stage"], row["stages"], row["stage_name"]) == (2, 3, "Finance")
    assert row["route"] == "Approval route: Payments over 10k"
    history = row["stage_history"]
    assert [(s["name"], s["status"], s["current"]) for s in history] == [
        ("Manager", "approved", False), ("Finance", "pending", True),
        ("Security", "waiting", False),
    ]  # fmt: skip
    assert [(d["approver"], d["stage"]) for d in history[0]["decisions"]] == [("mia", 1)]

    api.force_authenticate(fresh(mia))  # stage 1's approver: no longer among its deciders
    assert api.get("/api/v1/approvals/").json()["results"] == []
    refused = api.post(f"/api/v1/approvals/{request.pk}/decide/", {"verdict": "approve"},
                       format="json")  # fmt: skip
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "not_an_approver"


@pytest.mark.django_db(transaction=True)
def test_two_stage_one_approvers_at_once_move_the_request_once(postgres):
    registry = build_registry()
    payments_route(registry, stages=3)
    mia, _, _, _ = people()
    max_ = approver("max", group="Managers")
    request = staged_request(registry)

    def approve(user):
        return lambda: services.approval_decide(
            request_id=request.pk, approver=fresh(user), verdict="approve", channel=Channel.API
        )

    outcomes = at_once(approve(mia), approve(max_))
    assert sorted(outcomes) == ["not_an_approver", "ok"]
    request.refresh_from_db()
    assert request.stage == 2 and request.approvals == 0
    assert Decision.objects.filter(request=request).count() == 1
    assert AuditRecord.objects.filter(kind="approval_stage_passed").count() == 1
    assert [s for _, s in track(request)] == ["approved", "pending", "waiting"]


def test_the_api_list_reads_every_stage_history_in_a_constant_number_of_queries(
    db,
):
    """Stage history and its deciders come prefetched: the same queries for 3 and 12."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from rest_framework.test import APIClient

    registry = build_registry()
    payments_route(registry, stages=3)
    mia, fred, _, _ = people()

    def listed(n_before):
        for n in range(n_before):
            decide(staged_request(registry, amount=20_000 + n), mia)
        api = APIClient()
        api.force_authenticate(fresh(fred))
        with CaptureQueriesContext(connection) as queries:
            rows = api.get("/api/v1/approvals/").json()["results"]
        assert all(r["stage_history"][0]["decisions"][0]["approver"] == "mia" for r in rows)
        return len(rows), len(queries)

    few = listed(3)
    many = listed(9)
    assert (few[0], many[0]) == (3, 12)
    assert few[1] == many[1]
