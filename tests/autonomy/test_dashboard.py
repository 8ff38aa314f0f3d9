from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.utils import timezone

from agents.portal_roles import PortalRole, group_name
from autonomy import actions as lifecycle
from autonomy.models import ActivityRollup, Verdict
from autonomy.observability.rollup import rollup_rebuild
from portal import dashboard as selectors
from tests.autonomy.dashboard_fixtures import history
from tests.autonomy.gate_fixtures import build_registry
from tests.factories import BusinessUnitFactory, UserFactory, make_agent

DASHBOARD = "/dashboard/"


@pytest.fixture
def fleet(db):
    registry = build_registry()
    unit = BusinessUnitFactory(slug="ops", name="Operations")
    other = make_agent(slug="ops-bot", business_unit=unit)
    return registry, [registry.agent, other]


def seed(fleet, n: int, *, span=timedelta(hours=2)):
    registry, agents = fleet
    rows = history(agents=agents, operation=registry.post, n=n, now=timezone.now(), span=span)
    rollup_rebuild()
    return rows


def rollup_totals() -> dict:
    return {(r.verdict, r.count, r.risk_sum) for r in ActivityRollup.objects.all()}


@pytest.mark.django_db
def test_a_decided_action_is_counted_in_its_minutes_rollup(fleet):
    registry, _ = fleet
    action, _ = lifecycle.action_request(
        agent=registry.agent,
        operation_key="erp.post-invoice",
        params={"invoice_id": "INV-1", "amount": 120},
    )
    row = ActivityRollup.objects.get()
    assert row.minute == action.created_at.replace(second=0, microsecond=0)
    assert (row.business_unit_id, row.operation_id) == (
        registry.agent.business_unit_id,
        registry.post.pk,
    )
    assert (row.verdict, row.count, row.risk_sum) == (action.verdict, 1, action.risk_score)


@pytest.mark.django_db
def test_actions_of_the_same_minute_unit_operation_and_verdict_share_one_row(fleet):
    registry, _ = fleet
    actions = [
        lifecycle.action_request(
            agent=registry.agent,
            operation_key="erp.post-invoice",
            params={"invoice_id": f"INV-{n}", "amount": 120},
        )[0]
        for n in range(3)
    ]
    rows = ActivityRollup.objects.all()
    assert sum(r.count for r in rows) == 3
    assert sum(r.risk_sum for r in rows) == sum(a.risk_score for a in actions)
    assert len(rows) == len({(a.created_at.replace(second=0, microsecond=0)) for a in actions})


@pytest.mark.django_db
def test_rebuild_recomputes_the_rollups_from_action_history(fleet):
    rows = seed(fleet, 50)
    assert sum(r.count for r in ActivityRollup.objects.all()) == 50
    assert sum(r.risk_sum for r in ActivityRollup.objects.all()) == sum(a.risk_score for a in rows)
    before = rollup_totals()
    rollup_rebuild()
    assert rollup_totals() == before


@pytest.mark.django_db
def test_rebuild_since_a_time_leaves_older_rows_alone(fleet):
    rows = seed(fleet, 40, span=timedelta(hours=4))
    cutoff = (timezone.now() - timedelta(hours=1)).replace(second=0, microsecond=0)
    ActivityRollup.objects.filter(minute__lt=cutoff).update(count=999)
    ActivityRollup.objects.filter(minute__gte=cutoff).update(count=0)
    rollup_rebuild(since=cutoff)
    assert {r.count for r in ActivityRollup.objects.filter(minute__lt=cutoff)} == {999}
    recent = sum(r.count for r in ActivityRollup.objects.filter(minute__gte=cutoff))
    assert recent == sum(1 for a in rows if a.created_at >= cutoff) > 0


@pytest.mark.django_db
def test_the_rollup_rebuild_command_reports_what_it_wrote(fleet, capsys):
    seed(fleet, 20)
    ActivityRollup.objects.all().delete()
    call_command("rollup_rebuild", "--hours", "24")
    assert "rollup rows written:" in capsys.readouterr().out
    assert sum(r.count for r in ActivityRollup.objects.all()) == 20


@pytest.mark.django_db
def test_dashboard_counts_actions_per_minute_by_decision(fleet):
    seed(fleet, 30, span=timedelta(minutes=30))
    data = selectors.dashboard()
    assert data.last_hour.totals == {
        Verdict.ALLOW: 18,
        Verdict.NEEDS_APPROVAL: 6,
        Verdict.DENY: 6,
    }
    assert len(data.last_hour.starts) == 60 and len(data.last_day.starts) == 48
    assert sum(data.last_day.totals.values()) == 30


@pytest.mark.django_db
def test_dashboard_ranks_agents_by_risk_and_units_by_use(fleet):
    _, agents = fleet
    seed(fleet, 40)
    data = selectors.dashboard()
    assert [a["agent__slug"] for a in data.risky_agents] == ["ops-bot", agents[0].slug]
    assert data.risky_agents[0]["actions"] == 20
    assert {u["name"]: u["total"] for u in data.units} == {"Finance": 20, "Operations": 20}


@pytest.mark.django_db
def test_actions_older_than_a_day_are_left_out_of_the_dashboard(fleet):
    seed(fleet, 10, span=timedelta(days=3))
    data = selectors.dashboard()
    assert sum(data.last_day.totals.values()) == sum(u["total"] for u in data.units) < 10


@pytest.mark.django_db
def test_median_time_to_decision_reads_decided_approvals(fleet):
    from approvals.models import ApprovalRequest, ApprovalStatus

    registry, _ = fleet
    group = Group.objects.get(name=group_name(PortalRole.APPROVER))
    now = timezone.now()
    for n, (action, minutes) in enumerate(zip(seed(fleet, 3), [2, 4, 30], strict=True)):
        approval = ApprovalRequest.objects.create(
            action=action,
            agent=action.agent,
            business_unit=action.agent.business_unit,
            subject=f"approval {n}",
            approver_group=group,
            expires_at=now + timedelta(hours=1),
            status=ApprovalStatus.APPROVED,
        )
        ApprovalRequest.objects.filter(pk=approval.pk).update(
            created_at=now - timedelta(minutes=minutes), decided_at=now
        )
    load = selectors.dashboard(now=now).approvals
    assert (load.backlog, load.decided_24h, load.median_seconds) == (0, 3, 240.0)


@pytest.mark.django_db
def test_open_flags_tile_reads_zero_without_flags(fleet):
    assert selectors.open_flags() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("n", [10, 1000])
def test_dashboard_costs_a_constant_number_of_queries(fleet, n, django_assert_max_num_queries):
    seed(fleet, n)
    # Seven for the fleet, nine for the approval load (approvals.load).
    with django_assert_max_num_queries(16):
        data = selectors.dashboard()
    assert sum(data.last_day.totals.values()) == n


@pytest.mark.django_db
def test_portal_staff_see_the_dashboard_with_its_charts(fleet, viewer, client):
    seed(fleet, 30)
    client.force_login(viewer)
    response = client.get(DASHBOARD)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('<svg class="chart') == 5
    assert 'class="bar bar-allow"' in html and 'class="bar bar-deny"' in html
    assert 'data-live-url="/dashboard/live/"' in html and "<script>" not in html


@pytest.mark.django_db
def test_the_live_partial_returns_the_dashboard_body(fleet, viewer, client):
    client.force_login(viewer)
    response = client.get("/dashboard/live/")
    assert response.status_code == 200
    assert b"Actions per minute by decision" in response.content
    assert b"<html" not in response.content


@pytest.mark.django_db
def test_staff_without_a_portal_role_are_refused(client):
    client.force_login(UserFactory(username="plain-staff", is_staff=True))
    assert client.get(DASHBOARD).status_code == 403


@pytest.mark.django_db
def test_an_agents_service_user_is_refused(fleet, client):
    registry, _ = fleet
    client.force_login(registry.agent.service_user)
    assert client.get(DASHBOARD).status_code == 403


@pytest.mark.django_db
def test_anonymous_visitors_are_sent_to_sign_in(client):
    response = client.get(DASHBOARD)
    assert response.status_code == 302 and "login" in response["Location"]
