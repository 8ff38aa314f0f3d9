"""The rollout plans' portal pages and their admin: who reads them, who steers, what a
refused promotion shows, what a demotion records, and a query count that does not grow with
waves or agents."""

import re
import uuid
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.portal_roles import PortalRole
from autonomy.models import (
    AutonomyLevel,
    PromotionStatus,
    RolloutEvent,
    RolloutEventKind,
    RolloutPlan,
    RolloutPromotion,
    RolloutWave,
)
from autonomy.rollouts import services
from tests.autonomy.rollout_fixtures import build_rollout, officer, person
from tests.factories import BusinessUnitFactory, UserFactory, make_agent

PAGE = "/rollouts/invoice-rollout/"

pytestmark = pytest.mark.django_db


@pytest.fixture
def rollout():
    return build_rollout()


def test_a_viewer_reads_the_waves_whom_they_reach_and_the_next_waves_criteria(
    rollout, client, viewer
):
    client.force_login(viewer)

    html = client.get(PAGE).content.decode()

    # Wave 1 names one agent; 2 adds finance (3); 3 adds procurement (5); 4: the whole role.
    rows = re.findall(r'data-wave="(\d+)".*?data-reaches="(\d+)"', html, re.S)
    assert rows == [("1", "1"), ("2", "3"), ("3", "5"), ("4", "5")]
    assert 'class="wave-row is-current" data-wave="2"' in html
    assert "adds Buyer 0, Buyer 1" in html
    # The third wave's criteria against the finance agents' 20 actions, 20 % denied.
    assert 'data-criterion="actions"' in html and 'data-criterion="denial_ratio"' in html
    assert "20.0 %" in html and 'data-criteria="met"' in html


def test_the_list_shows_each_plans_wave_level_last_measurement_and_waiting_promotion(
    rollout, client, viewer
):
    services.plans_measure()
    services.promotion_propose(plan_id=rollout.plan.pk, by=officer())
    client.force_login(viewer)

    html = client.get("/rollouts/").content.decode()

    assert "Invoice processing" in html and "wave 2" in html and "supervised" in html
    assert "met" in html and "wave 2 → 3 waits" in html


def test_the_live_fragment_answers_with_the_figures_measured_now(rollout, client, viewer):
    client.force_login(viewer)

    html = client.get(PAGE + "live/").content.decode()

    assert '<dd class="num" data-figure="actions">20</dd>' in html
    assert "<html" not in html


def test_an_agents_user_is_refused_and_nobody_signed_in_is_sent_to_sign_in(rollout, client):
    assert client.get(PAGE)["Location"].startswith("/admin/login/")
    client.force_login(rollout.registry.agent.service_user)
    assert client.get(PAGE).status_code == 403
    assert client.get("/rollouts/").status_code == 403
    assert client.post(PAGE + "demote/", {"reason": "x"}).status_code == 403


def test_staff_without_a_portal_role_is_refused(rollout, client):
    client.force_login(UserFactory(username="plain-staff", is_staff=True))
    assert client.get(PAGE).status_code == 403


def test_an_unknown_plan_is_not_found(rollout, client, viewer):
    client.force_login(viewer)
    assert client.get("/rollouts/no-such-plan/").status_code == 404


def test_only_a_risk_officer_sees_the_buttons_and_may_press_them(rollout, client, viewer):
    client.force_login(viewer)
    html = client.get(PAGE).content.decode()
    assert "propose-promotion" not in html and "demote-wave" not in html
    assert client.post(PAGE + "promote/").status_code == 403
    assert client.post(PAGE + "demote/", {"reason": "no"}).status_code == 403
    assert not RolloutEvent.objects.exists()

    client.force_login(officer())
    html = client.get(PAGE).content.decode()
    assert 'id="propose-promotion"' in html and 'id="demote-wave"' in html


def test_a_refused_promotion_shows_the_criteria_that_do_not_hold(client):
    build_rollout(actions=2)
    client.force_login(officer())

    response = client.post(PAGE + "promote/", follow=True)

    html = response.content.decode()
    assert response.redirect_chain[-1][0] == PAGE
    assert "Wave 3&#x27;s entry criteria do not hold yet." in html
    assert "actions taken 2 (needs at least 10)" in html
    assert "denial ratio" not in html.split("flash-error")[1].split("</div>")[0]  # it holds
    assert not RolloutPromotion.objects.exists()


def test_a_promotion_proposed_on_the_page_waits_for_an_approval(rollout, client):
    person = officer()
    client.force_login(person)

    html = client.post(PAGE + "promote/", follow=True).content.decode()

    promotion = RolloutPromotion.objects.get()
    assert (promotion.from_wave, promotion.to_wave, promotion.status) == (2, 3, "pending")
    assert promotion.proposed_by == person
    assert "Promotion to wave 3 waits for an approval" in html
    assert 'data-kind="proposed"' in html
    rollout.plan.refresh_from_db()
    assert rollout.plan.current_wave == 2  # only the approval carries it out


def test_a_waiting_promotion_links_to_its_approval_once_there_is_one(rollout, client, monkeypatch):
    """The approvals app opens the request (``promotion.approval``); the page links to it."""
    services.promotion_propose(plan_id=rollout.plan.pk, by=officer())
    approval = SimpleNamespace(pk=uuid.uuid4())
    monkeypatch.setattr(RolloutPromotion, "approval", approval, raising=False)
    client.force_login(officer("another-officer"))

    html = client.get(PAGE).content.decode()

    assert f'href="/inbox/{approval.pk}/"' in html


def test_a_demotion_records_who_and_why_and_voids_a_waiting_promotion(rollout, client):
    person = officer()
    services.promotion_propose(plan_id=rollout.plan.pk, by=person)
    client.force_login(person)

    html = client.post(
        PAGE + "demote/", {"reason": "invoice totals look off"}, follow=True
    ).content.decode()

    rollout.plan.refresh_from_db()
    assert rollout.plan.current_wave == 1
    event = RolloutEvent.objects.get(kind=RolloutEventKind.DEMOTED)
    assert (event.actor, event.reason, event.from_wave, event.to_wave) == (
        person.username, "invoice totals look off", 2, 1,
    )  # fmt: skip
    assert RolloutPromotion.objects.get().status == PromotionStatus.VOID
    assert "Demoted to wave 1." in html and "invoice totals look off" in html


def test_a_demotion_without_a_reason_is_refused(rollout, client):
    client.force_login(officer())

    html = client.post(PAGE + "demote/", {"reason": "  "}, follow=True).content.decode()

    assert "Say why the wave is demoted." in html
    rollout.plan.refresh_from_db()
    assert rollout.plan.current_wave == 2 and not RolloutEvent.objects.exists()


def test_the_charts_draw_each_figure_over_time_against_the_next_waves_threshold(
    rollout, client, viewer
):
    services.plans_measure()
    services.plans_measure()
    client.force_login(viewer)

    html = client.get(PAGE).content.decode()

    assert html.count('class="chart chart-line"') == 4  # the override ratio has no sample
    assert 'id="chart-actions"' in html and "threshold 10" in html
    assert '<line class="threshold"' in html


def _grow(rollout, *, waves: int, agents_per_wave: int) -> None:
    """More waves, each naming agents of its own unit: the page must not read per wave."""
    plan, role = rollout.plan, rollout.registry.agent.role
    RolloutWave.objects.filter(plan=plan, number=4).update(number=4 + waves)
    for n in range(4, 4 + waves):
        unit = BusinessUnitFactory(slug=f"grow-{n}", name=f"Grow {n}")
        named = [
            make_agent(slug=f"grow-{n}-{i}", business_unit=unit, role=role)
            for i in range(agents_per_wave)
        ]
        wave = RolloutWave.objects.create(plan=plan, number=n, level=AutonomyLevel.GUARDED)
        wave.business_units.add(unit)
        wave.agents.add(*named[:2])
    for _ in range(5):
        services.plans_measure()


def _page_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(PAGE).status_code == 200
    return len(queries)


def test_the_plan_page_reads_in_a_constant_number_of_queries(
    rollout, client, django_assert_max_num_queries
):
    services.promotion_propose(plan_id=rollout.plan.pk, by=officer())
    client.force_login(officer("reader"))
    few = _page_queries(client)

    _grow(rollout, waves=10, agents_per_wave=6)
    many = _page_queries(client)

    assert many == few
    with django_assert_max_num_queries(25):
        client.get(PAGE)


# --- the admin --------------------------------------------------------------------------------


def _plan_form(**changes) -> dict:
    data = {
        "name": "Procurement", "slug": "procurement", "description": "", "role": "",
        "template_key": "invoice-approval", "operations": "[]", "held_level": "shadow",
        "window_minutes": "1440", "auto_propose": "on", "active": "on", "owner": "",
        "approver_group": "",
        "waves-TOTAL_FORMS": "0", "waves-INITIAL_FORMS": "0",
        "promotions-TOTAL_FORMS": "0", "promotions-INITIAL_FORMS": "0",
    }  # fmt: skip
    return data | changes


def test_the_admin_refuses_unknown_operation_keys_with_the_levels_rule(rollout, client):
    client.force_login(officer())

    response = client.post(
        "/admin/autonomy/rolloutplan/add/", _plan_form(operations='["erp.nope"]')
    )

    assert response.status_code == 200
    assert "No such operation: erp.nope." in response.content.decode()
    assert not RolloutPlan.objects.filter(slug="procurement").exists()


def test_a_risk_officer_writes_a_plan_and_its_waves_in_the_admin(rollout, client):
    client.force_login(officer())
    agent = rollout.procurement[0]

    response = client.post(
        "/admin/autonomy/rolloutplan/add/",
        _plan_form(operations='["erp.post-invoice"]')
        | {
            "waves-TOTAL_FORMS": "1", "waves-0-number": "1", "waves-0-name": "one buyer",
            "waves-0-level": "supervised", "waves-0-agents": [str(agent.pk)],
            "waves-0-business_units": [], "waves-0-min_actions": "5",
            "waves-0-guard_window_minutes": "10",
        },
    )  # fmt: skip

    assert response.status_code == 302, response.content.decode()[-3000:]
    plan = RolloutPlan.objects.get(slug="procurement")
    assert (plan.current_wave, plan.operations) == (0, ["erp.post-invoice"])
    (wave,) = plan.waves.all()
    assert (wave.level, wave.min_actions, list(wave.agents.all())) == ("supervised", 5, [agent])


def test_the_admin_never_moves_the_wave(rollout, client):
    client.force_login(officer())
    url = f"/admin/autonomy/rolloutplan/{rollout.plan.pk}/change/"
    page = client.get(url).content.decode()
    assert 'name="current_wave"' not in page and "Open the plan’s page" in page

    data = _plan_form(
        name="Invoice processing", slug="invoice-rollout", role=str(rollout.plan.role_id),
        template_key="", current_wave="4", operations='["erp.post-invoice"]',
    )  # fmt: skip
    data |= {
        "waves-TOTAL_FORMS": "0", "waves-INITIAL_FORMS": "0",  # the waves are left alone
    }  # fmt: skip
    response = client.post(url, data)

    assert response.status_code == 302, response.content.decode()[-3000:]
    rollout.plan.refresh_from_db()
    assert rollout.plan.current_wave == 2 and rollout.plan.operations == ["erp.post-invoice"]


@pytest.mark.parametrize("model", ["rolloutpromotion", "rolloutevent", "rolloutmeasurement"])
def test_the_plans_records_are_view_only_in_the_admin(rollout, client, model):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    assert client.get(f"/admin/autonomy/{model}/").status_code == 200
    assert client.get(f"/admin/autonomy/{model}/add/").status_code == 403


def test_an_approver_reads_plans_but_may_not_steer_them(rollout, client):
    client.force_login(person("approver-1", PortalRole.APPROVER))
    assert client.get(PAGE).status_code == 200
    assert client.post(PAGE + "promote/").status_code == 403
