"""The approval load where people read it: the dashboard's panel, the strip over the inbox
and ``/metrics``."""

import re

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.test import override_settings
from django.utils import timezone

from agents.portal_roles import PortalRole, group_name
from approvals import load
from approvals.models import ApprovalStatus
from tests.approvals.conftest import approver
from tests.approvals.load_fixtures import Spec, seed_requests
from tests.autonomy.gate_fixtures import build_registry
from tests.autonomy.test_metrics import samples
from tests.factories import BusinessUnitFactory, UserFactory

A, E = ApprovalStatus.APPROVED, ApprovalStatus.EXPIRED


def text(html: bytes) -> str:
    """The page's words, tags dropped and spaces folded."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html.decode()))


@pytest.fixture
def demo_start(db):
    """The issue's demo after four minutes: 209 waiting, nobody deciding; and three old
    requests the clock closed half an hour ago."""
    registry = build_registry()
    group = Group.objects.get_or_create(name=group_name(PortalRole.APPROVER))[0]
    specs = [Spec(4 * i / 209, group=group) for i in range(209)]
    specs += [Spec(25 * 60, 30, E, expired=True, group=group) for _ in range(3)]
    seed_requests(registry=registry, specs=specs, now=timezone.now())
    return registry


def test_the_dashboard_says_nobody_decided_beside_what_arrived(demo_start, client):
    """The "0 decided" report: the count was right (nobody had decided), but it stood alone
    under a median, beside no arrivals; and the clock's expiries counted as decisions."""
    client.force_login(approver("ann"))
    page = text(client.get("/dashboard/").content)
    assert "209 arrived, 0 decided in the last hour" in page
    assert "0 decided by people of 209 arrived · 3 expired undecided" in page
    assert "Backlog 209, growing by 2,472/h — at this rate 2,681 in an hour." in page
    assert "Forecast: the arrivals of the last hour minus" in page


def test_the_dashboard_panel_charts_arrivals_against_outcomes(db, client):
    registry = build_registry()
    clerks = Group.objects.get_or_create(name=group_name(PortalRole.APPROVER))[0]
    ann = approver("ann")
    ops = BusinessUnitFactory(slug="ops", name="Operations")
    specs = [Spec(30, group=clerks), Spec(90, 30, A, group=clerks, by=ann),
             Spec(50, 20, A, group=clerks, unit=ops, by=ann)]  # fmt: skip
    seed_requests(registry=registry, specs=specs, now=timezone.now())
    client.force_login(ann)
    html = client.get("/dashboard/").content.decode()
    chart = re.search(r'<svg class="chart chart-bars" id="chart-load".*?</svg>', html, re.S)[0]
    assert 'data-total="3"' in chart  # three arrived over the day
    assert chart.count("bar-arrived") >= 1 and chart.count("bar-allow") >= 1
    page = text(html.encode())
    # Waiting, arrived in 1 h and in 24 h, decided, expired; then ann: decided, waiting for
    # her, median wait (30 and 60 min: nearest rank).
    assert f"Operations {clerks.name} 0 1 1 1 0" in page
    assert f"{ann.get_full_name() or 'ann'} 2 1 30 min" in page
    # One unit only: its figures, with a way back to all.
    filtered = text(client.get("/dashboard/?unit=ops").content)
    assert "Approval load, last 24 hours · Operations · all" in filtered
    assert "1 decided by people of 1 arrived" in filtered


@pytest.mark.parametrize("query", ["?group=abc", "?unit=%3Cscript%3E", "?group=999999&unit=x"])
def test_the_dashboard_shrugs_off_bad_filters(demo_start, client, query):
    client.force_login(approver("ann"))
    response = client.get(f"/dashboard/{query}")
    assert response.status_code == 200 and b"<script>" not in response.content


def test_the_live_partial_keeps_the_filter(demo_start, client):
    client.force_login(approver("ann"))
    html = client.get("/dashboard/?unit=finance").content.decode()
    assert 'data-live-url="/dashboard/live/?unit=finance"' in html
    assert b"Backlog 209" in client.get("/dashboard/live/?unit=finance").content
    assert b"Backlog 0" in client.get("/dashboard/live/?unit=ops").content


def test_people_without_a_portal_role_and_agents_see_no_load(demo_start, client):
    client.force_login(UserFactory(username="plain-staff", is_staff=True))
    assert client.get("/dashboard/?unit=finance").status_code == 403
    client.force_login(demo_start.agent.service_user)
    assert client.get("/dashboard/").status_code == 403
    assert client.get("/inbox/").status_code == 403


def test_the_inbox_strip_shows_the_load_and_the_persons_own_share(db, client):
    registry = build_registry()
    clerks = Group.objects.get_or_create(name=group_name(PortalRole.APPROVER))[0]
    controllers = Group.objects.create(name="Finance controllers")
    ann, bob = approver("ann"), approver("bob", group="Finance controllers")
    specs = [Spec(10, group=clerks) for _ in range(4)]
    specs += [Spec(20, group=controllers)]
    specs += [Spec(40, 30, A, group=clerks, by=ann), Spec(40, 20, A, group=clerks, by=ann)]
    specs += [Spec(50, 10, A, group=controllers, by=bob)]
    seed_requests(registry=registry, specs=specs, now=timezone.now())
    client.force_login(ann)
    strip = re.search(r"<aside class=\"load-strip\".*?</aside>", client.get("/inbox/").content
                      .decode(), re.S)[0]  # fmt: skip
    words = text(strip.encode())
    assert "5 waiting" in words
    assert "last hour 8 arrived, 3 decided" in words
    assert "yours 4 waiting, 2 decided in 24 h" in words  # bob's decision and request are his
    assert "median wait 20 min" in words  # 10, 20, 40 min
    assert 'href="/dashboard/#approval-load"' in strip


def test_the_inbox_strip_costs_a_constant_number_of_queries(
    db, client, django_assert_max_num_queries
):
    registry = build_registry()
    clerks = Group.objects.get_or_create(name=group_name(PortalRole.APPROVER))[0]
    ann = approver("ann")
    client.force_login(ann)

    def seed(n: int) -> None:
        seed_requests(registry=registry, now=timezone.now(),
                      specs=[Spec(i % 600, group=clerks) for i in range(n)]
                      + [Spec(700, i % 600, A, group=clerks, by=ann) for i in range(n)])  # fmt: skip

    seed(10)
    client.get("/inbox/")
    cache.delete(load.STRIP_CACHE_KEY)
    with django_assert_max_num_queries(40) as few:
        client.get("/inbox/")
    seed(300)
    with django_assert_max_num_queries(len(few) - 3):  # within STRIP_SECONDS: computed once
        assert b"10</strong> waiting" in client.get("/inbox/").content
    cache.delete(load.STRIP_CACHE_KEY)
    with django_assert_max_num_queries(len(few)):
        assert b"310</strong> waiting" in client.get("/inbox/").content


@override_settings(DEBUG=True)
def test_metrics_export_the_load(db, client):
    registry = build_registry()
    clerks = Group.objects.get_or_create(name=group_name(PortalRole.APPROVER))[0]
    ann = approver("ann")
    specs = [Spec(10, group=clerks) for _ in range(3)]
    specs += [Spec(40, 30, A, group=clerks, by=ann), Spec(120, 20, A, group=clerks, by=ann)]
    specs += [Spec(25 * 60, 5, E, expired=True, group=clerks)]
    seed_requests(registry=registry, specs=specs, now=timezone.now())
    got = samples(client.get("/metrics"))
    group = ("approver_group", clerks.name)
    assert got[("autonomy_approvals_backlog", (group, ("business_unit", "finance")))] == 3
    assert got[("autonomy_approvals_arrivals_1h", (group, ("business_unit", "finance")))] == 4
    assert got[("autonomy_approvals_decided_1h", (("outcome", "approved"),))] == 2
    assert got[("autonomy_approvals_decided_1h", (("outcome", "expired"),))] == 1
    assert got[("autonomy_approvals_decided_1h", (("outcome", "cancelled"),))] == 0
    assert got[("autonomy_approvals_expired_undecided_24h", ())] == 1
    assert got[("autonomy_approval_time_to_decision_seconds", (("quantile", "0.5"),))] == 600
    assert got[("autonomy_approval_time_to_decision_seconds", (("quantile", "0.9"),))] == 6000
    assert got[("autonomy_approver_decisions_24h", (("approver", "ann"),))] == 2
    assert got[("autonomy_approver_pending", (("approver", "ann"),))] == 3
    assert got[("autonomy_approvals_pending", ())] == 3
    # 4 arrived, 3 left in the last hour, arrivals going back two hours: +1/h.
    assert got[("autonomy_approvals_backlog_growth_per_hour", ())] == 1
    assert got[("autonomy_approvals_backlog_forecast_1h", ())] == 4
