"""Approval load: arrivals against outcomes per hour, the backlog and its forecast, time to
decision, expiries and each approver's load, read at a frozen moment from seeded history and
checked against counts made by hand."""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from agents.portal_roles import PortalRole, group_name
from approvals import load as figures
from approvals import services
from approvals.models import ApprovalRequest, ApprovalStatus, ExpiryOutcome
from tests.approvals.conftest import approver, pending_action
from tests.approvals.load_fixtures import Spec, seed_requests
from tests.autonomy.gate_fixtures import build_registry
from tests.factories import BusinessUnitFactory, UserFactory

NOW = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
A, R, E, C, P = (ApprovalStatus.APPROVED, ApprovalStatus.REJECTED, ApprovalStatus.EXPIRED,
                 ApprovalStatus.CANCELLED, ApprovalStatus.PENDING)  # fmt: skip


@pytest.fixture
def history(db):
    """Two units, two groups, three people; every figure below is counted from this list."""
    registry = build_registry()
    finance = registry.agent.business_unit
    ops = BusinessUnitFactory(slug="ops", name="Operations")
    clerks = Group.objects.get_or_create(name=group_name(PortalRole.APPROVER))[0]
    controllers = Group.objects.create(name="Finance controllers")
    ann = approver("ann")
    bob = approver("bob")
    bob.groups.add(controllers)
    carl = UserFactory(username="carl")
    f = {"unit": finance, "group": clerks}
    o = {"unit": ops, "group": controllers}
    specs = [
        Spec(10, **f),  # p1, waiting, arrived 12:20
        Spec(20, **f),  # p2, waiting, 12:10
        Spec(130, **f),  # p3, waiting, 10:20
        Spec(180, 170, A, by=ann, **f),  # a1, 09:30 -> 09:40, 600 s
        Spec(30, 25, A, by=ann, **f),  # a2, 12:00 -> 12:05, 300 s
        Spec(50, 40, A, by=bob, **f),  # a3, 11:40 -> 11:50, 600 s
        Spec(300, 240, R, by=ann, **f),  # r1, 07:30 -> 08:30, 3600 s
        Spec(1500, 30, E, expired=True, **f),  # e1, arrived 25 h ago, expired at 12:00
        Spec(10, 5, C, **f),  # c1, 12:20 -> cancelled 12:25
        Spec(1800, 1560, A, by=carl, **f),  # o1, closed 26 h ago: outside the day
        Spec(15, -10, A, **f),  # f1, arrived 12:15, decided after NOW: waiting at NOW
        Spec(1, **o),  # q1, waiting, 12:29
        Spec(180, 90, A, by=bob, **o),  # b1, 09:30 -> 11:00, 5400 s
    ]
    seed_requests(registry=registry, specs=specs, now=NOW)
    return {"registry": registry, "ann": ann, "bob": bob, "carl": carl,
            "controllers": controllers}  # fmt: skip


def test_the_figures_match_a_count_by_hand(history):
    load = figures.approval_load(now=NOW)
    assert load.hours[-1] == datetime(2026, 3, 10, 12, tzinfo=UTC)
    assert load.hours[0] == datetime(2026, 3, 9, 13, tzinfo=UTC)
    assert load.backlog == 5  # p1 p2 p3 f1 q1
    assert (load.arrivals_24h, load.arrivals_1h) == (11, 7)
    assert load.closed_1h == {"approved": 2, "rejected": 0, "expired": 1, "cancelled": 1}
    assert (load.decided_24h, load.expired_24h) == (5, 1)
    assert (load.median_seconds, load.p90_seconds) == (600.0, 5400.0)


def test_arrivals_and_outcomes_fall_in_their_hours(history):
    load = figures.approval_load(now=NOW)
    arrivals = {load.hours[i].hour: n for i, n in enumerate(load.arrivals) if n}
    assert arrivals == {7: 1, 9: 2, 10: 1, 11: 1, 12: 6}
    closed = {
        outcome: {load.hours[i].hour: n for i, n in enumerate(counts) if n}
        for outcome, counts in load.closed.items()
    }
    assert closed == {
        "approved": {9: 1, 11: 2, 12: 1},
        "rejected": {8: 1},
        "expired": {12: 1},
        "cancelled": {12: 1},
    }


def test_figures_per_business_unit_and_approver_group(history):
    rows = {(g["unit"], g["group"]): g for g in figures.approval_load(now=NOW).groups}
    finance = rows[("Finance", group_name(PortalRole.APPROVER))]
    ops = rows[("Operations", "Finance controllers")]
    assert (finance["backlog"], finance["arrivals_24h"], finance["decided_24h"]) == (4, 9, 4)
    assert (ops["backlog"], ops["arrivals_24h"], ops["decided_24h"]) == (1, 2, 1)
    assert finance["expired_24h"] == 1 and ops["expired_24h"] == 0


def test_a_filter_reads_one_unit_or_one_group(history):
    ops = figures.approval_load(now=NOW, business_unit="ops")
    assert (ops.backlog, ops.decided_24h, ops.median_seconds, ops.arrivals_24h) == (
        1, 1, 5400.0, 2,
    )  # fmt: skip
    assert [a["username"] for a in ops.approvers] == ["bob"]
    group = figures.approval_load(now=NOW, approver_group=history["controllers"].pk)
    assert (group.backlog, group.decided_24h) == (1, 1)
    assert figures.approval_load(now=NOW, business_unit="nowhere").backlog == 0


def test_each_approvers_load_counts_their_decisions_and_what_waits_for_them(history):
    load = figures.approval_load(now=NOW)
    got = {a["username"]: a for a in load.approvers}
    assert list(got) == ["ann", "bob"]  # carl's decision is older than a day
    # Waiting for them: what their groups are granted (p1-p3 for both, q1 for bob's
    # controllers; f1 was decided since, its grant gone with it).
    assert (got["ann"]["decisions_24h"], got["ann"]["pending"]) == (3, 3)
    assert (got["bob"]["decisions_24h"], got["bob"]["pending"]) == (2, 4)
    assert got["ann"]["median_seconds"] == 600.0  # 300, 600, 3600
    assert got["bob"]["median_seconds"] == 600.0  # 600, 5400: nearest rank is the first


def test_the_forecast_carries_the_last_hours_net_rate_forward(history):
    load = figures.approval_load(now=NOW)
    # 7 arrived and 4 left in the last hour; arrivals go back further, so over one hour.
    assert (load.rate_per_hour, load.rate_span_minutes, load.forecast_1h) == (3.0, 60, 8)
    assert load.hours_to_clear is None
    assert figures.forecast_sentence(load) == (
        "Backlog 5, growing by 3/h — at this rate 8 in an hour."
    )


def test_a_fresh_backlog_is_measured_since_its_first_arrival(db):
    registry = build_registry()
    group = Group.objects.get_or_create(name=group_name(PortalRole.APPROVER))[0]
    # The demo's start: 200 requests in the last 4 minutes, nobody deciding.
    seed_requests(registry=registry, now=NOW,
                  specs=[Spec(4 * i / 200, group=group) for i in range(200)])  # fmt: skip
    load = figures.approval_load(now=NOW)
    assert (load.backlog, load.rate_span_minutes) == (200, 5)  # at least five minutes
    assert (load.rate_per_hour, load.forecast_1h) == (2400.0, 2600)


def test_a_shrinking_backlog_says_when_it_clears(db):
    registry = build_registry()
    group = Group.objects.get_or_create(name=group_name(PortalRole.APPROVER))[0]
    specs = [Spec(120, group=group) for _ in range(10)]
    specs += [Spec(120, 59 - i, A, group=group) for i in range(20)]
    seed_requests(registry=registry, specs=specs, now=NOW)
    load = figures.approval_load(now=NOW)
    assert (load.backlog, load.rate_per_hour, load.forecast_1h) == (10, -20.0, 0)
    assert load.hours_to_clear == 0.5
    assert figures.forecast_sentence(load) == (
        "Backlog 10, shrinking by 20/h — at this rate clear in about 30 min."
    )


def test_nearest_rank_positions():
    assert [figures.nearest_rank(0.5, n) for n in (1, 2, 3, 4, 5)] == [0, 0, 1, 1, 2]
    assert [figures.nearest_rank(0.9, n) for n in (1, 5, 10, 11)] == [0, 4, 8, 9]


@pytest.mark.django_db
def test_an_expired_request_is_counted_apart_from_peoples_decisions():
    """The "0 decided" report: an expiry is the clock closing a request nobody decided, not a
    decision; before, it counted as one and put its day-long wait into the median."""
    registry = build_registry()
    waiting = pending_action(registry)
    approved_on_expiry = pending_action(registry, amount=200, key="second")
    ApprovalRequest.objects.filter(action=approved_on_expiry).update(
        expiry_outcome=ExpiryOutcome.APPROVE
    )
    ApprovalRequest.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert services.approvals_sweep()["expired"] == 2
    closed = {r.action_id: r for r in ApprovalRequest.objects.all()}
    assert closed[waiting.pk].status == ApprovalStatus.EXPIRED
    assert closed[approved_on_expiry.pk].status == ApprovalStatus.APPROVED
    assert all(r.expired_undecided for r in closed.values())
    load = figures.approval_load()
    assert (load.decided_24h, load.expired_24h, load.median_seconds) == (0, 2, None)
    assert load.closed_1h == {"approved": 0, "rejected": 0, "expired": 2, "cancelled": 0}


@pytest.mark.django_db
def test_a_person_deciding_counts_as_a_decision_not_an_expiry():
    registry = build_registry()
    action = pending_action(registry)
    request = ApprovalRequest.objects.get(action=action)
    services.approval_decide(request_id=request.pk, approver=approver("dee"), verdict="approve",
                             channel="inbox")  # fmt: skip
    load = figures.approval_load()
    assert (load.decided_24h, load.expired_24h, load.backlog) == (1, 0, 0)
    assert load.approvers[0]["username"] == "dee"
    assert load.approvers[0]["decisions_24h"] == 1


@pytest.mark.django_db
@pytest.mark.parametrize("n", [10, 300])
def test_the_load_costs_a_constant_number_of_queries(n, django_assert_num_queries):
    registry = build_registry()
    group = Group.objects.get_or_create(name=group_name(PortalRole.APPROVER))[0]
    people = [approver(f"p{i}") for i in range(3)]
    units = [BusinessUnitFactory(slug=f"u{i}", name=f"U{i}") for i in range(3)]
    specs = [
        Spec(10 + i % 1400, 5 + i % 1400 if i % 2 else None, A if i % 2 else P,
             unit=units[i % 3], group=group, by=people[i % 3] if i % 2 else None)
        for i in range(n)
    ]  # fmt: skip
    seed_requests(registry=registry, specs=specs, now=NOW)
    figures.approval_load(now=NOW)  # the content type is cached from here on
    with django_assert_num_queries(9):
        load = figures.approval_load(now=NOW)
    assert load.backlog == n // 2 and len(load.approvers) == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", range(3))
def test_a_decision_racing_the_expiry_sweep_is_counted_once_either_way(postgres, attempt):
    """Whichever closes the request first, the load counts it once: as people's decision or
    as an expiry, never as both and never as neither."""
    from tests.conftest import at_once

    registry = build_registry()
    request = ApprovalRequest.objects.get(action=pending_action(registry))
    ApprovalRequest.objects.filter(pk=request.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    person = approver("dee")
    outcomes = at_once(
        lambda: services.approvals_sweep(),
        lambda: services.approval_decide(
            request_id=request.pk, approver=person, verdict="approve", channel="api"
        ),  # fmt: skip
    )
    assert outcomes[0] == "ok" and outcomes[1] in ("ok", "approval_not_pending")
    request.refresh_from_db()
    load = figures.approval_load()
    assert load.decided_24h + load.expired_24h == 1 and load.backlog == 0
    if outcomes[1] == "ok":
        assert (request.status, request.expired_undecided, load.decided_24h) == (A, False, 1)
    else:
        assert (request.status, request.expired_undecided, load.expired_24h) == (E, True, 1)
