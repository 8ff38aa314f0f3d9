"""/api/v1/rollouts/ for people and /api/v1/agents/me/'s rollouts for agents: who reads, who
steers, the envelopes of a refusal, and what an agent learns of the plans it is in."""

import threading

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

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
from tests.autonomy.rollout_fixtures import build_rollout, officer
from tests.conftest import assert_envelope, bearer
from tests.factories import BusinessUnitFactory, make_agent

pytestmark = pytest.mark.django_db

PLAN = "/api/v1/rollouts/invoice-rollout/"


@pytest.fixture
def rollout():
    return build_rollout()


def test_a_viewer_lists_plans_with_their_waves_and_current_wave(rollout, api, viewer):
    api.force_authenticate(viewer)

    body = api.get("/api/v1/rollouts/").json()

    (plan,) = body["results"]
    assert (plan["slug"], plan["current_wave"], plan["current_level"]) == (
        "invoice-rollout", 2, "supervised",
    )  # fmt: skip
    assert [w["number"] for w in plan["waves"]] == [1, 2, 3, 4]
    assert plan["waves"][0]["agents"] == ["ap-bot"]
    assert plan["waves"][2]["business_units"] == ["procurement"]
    assert plan["role"] == "invoice-processor" and plan["pending_promotion"] is None
    assert plan["measured_at"] is None and plan["measured_met"] is None


def test_the_list_says_what_the_last_measurement_found(rollout, api, viewer):
    services.plans_measure()
    api.force_authenticate(viewer)

    (plan,) = api.get("/api/v1/rollouts/").json()["results"]

    assert plan["measured_at"] is not None and plan["measured_met"] is True


def test_a_plan_answers_with_its_health_measured_now(rollout, api, viewer):
    api.force_authenticate(viewer)

    body = api.get(PLAN).json()

    health = body["health"]
    assert health["next_wave"] == 3 and health["met"] is True
    assert health["figures"]["actions"] == 20 and health["figures"]["denial_ratio"] == 0.2
    assert {c["name"]: c["met"] for c in health["criteria"]} == {
        "actions": True, "denial_ratio": True, "failure_ratio": True,
    }  # fmt: skip


def test_an_unknown_plan_is_a_404_envelope(rollout, api, viewer):
    api.force_authenticate(viewer)
    assert_envelope(api.get("/api/v1/rollouts/nope/"), 404, "not_found")
    assert_envelope(api.post("/api/v1/rollouts/nope/promotions/"), 404, "not_found")


def test_agents_are_refused_whatever_their_users_groups(rollout, api):
    agent = rollout.registry.agent
    agent.service_user.groups.add(*officer().groups.all())  # even a risk officer's group
    client = bearer(api, rollout.registry.token)

    assert_envelope(client.get("/api/v1/rollouts/"), 403, "permission_denied")
    assert_envelope(client.get(PLAN), 403, "permission_denied")
    assert_envelope(client.post(PLAN + "promotions/"), 403, "permission_denied")
    assert_envelope(
        client.post(PLAN + "demote/", {"reason": "x"}, format="json"), 403, "permission_denied"
    )
    assert not RolloutEvent.objects.exists()


def test_nobody_signed_in_is_a_401_envelope(rollout, api):
    assert_envelope(api.get("/api/v1/rollouts/"), 401, "not_authenticated")


def test_a_viewer_may_not_propose_or_demote(rollout, api, viewer):
    api.force_authenticate(viewer)

    assert_envelope(api.post(PLAN + "promotions/"), 403, "permission_denied")
    assert_envelope(
        api.post(PLAN + "demote/", {"reason": "no"}, format="json"), 403, "permission_denied"
    )
    rollout.plan.refresh_from_db()
    assert rollout.plan.current_wave == 2 and not RolloutPromotion.objects.exists()


def test_a_risk_officer_proposes_and_the_promotion_waits_for_an_approval(rollout, api):
    person = officer()
    api.force_authenticate(person)

    response = api.post(PLAN + "promotions/")

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["from_wave"], body["to_wave"], body["status"]) == (2, 3, "pending")
    assert body["proposed_by"] == person.username and body["figures"]["met"] is True
    again = api.post(PLAN + "promotions/")
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    assert api.get(PLAN).json()["pending_promotion"]["id"] == body["id"]
    rollout.plan.refresh_from_db()
    assert rollout.plan.current_wave == 2


def test_a_proposal_whose_criteria_do_not_hold_is_a_409_with_the_criteria(api):
    build_rollout(actions=2)
    api.force_authenticate(officer())

    error = assert_envelope(api.post(PLAN + "promotions/"), 409, "rollout_criteria_not_met")

    criteria = {c["name"]: c for c in error["details"]["criteria"]}
    assert criteria["actions"]["value"] == 2 and criteria["actions"]["threshold"] == 10
    assert criteria["actions"]["met"] is False and criteria["denial_ratio"]["met"] is True
    assert not RolloutPromotion.objects.exists()


def test_a_proposal_at_the_last_wave_is_a_409(rollout, api):
    RolloutPlan.objects.filter(pk=rollout.plan.pk).update(current_wave=4)
    api.force_authenticate(officer())
    assert_envelope(api.post(PLAN + "promotions/"), 409, "rollout_no_next_wave")


def test_a_demotion_records_the_actor_and_reason_and_voids_a_waiting_one(rollout, api):
    person = officer()
    services.promotion_propose(plan_id=rollout.plan.pk, by=person)
    api.force_authenticate(person)

    response = api.post(PLAN + "demote/", {"reason": "totals look off"}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["current_wave"] == 1 and response.json()["health"]["next_wave"] == 2
    event = RolloutEvent.objects.get(kind=RolloutEventKind.DEMOTED)
    assert (event.actor, event.reason) == (person.username, "totals look off")
    assert RolloutPromotion.objects.get().status == PromotionStatus.VOID


@pytest.mark.parametrize(
    "body, code",
    [({}, "validation_failed"), ({"reason": "  "}, "validation_failed"),
     ({"reason": "x", "wave": 0}, "unknown_field")],
)  # fmt: skip
def test_a_demotion_needs_a_reason_and_nothing_else(rollout, api, body, code):
    api.force_authenticate(officer())
    assert_envelope(api.post(PLAN + "demote/", body, format="json"), 400, code)
    rollout.plan.refresh_from_db()
    assert rollout.plan.current_wave == 2


def test_steering_one_plan_leaves_the_others_alone(rollout, api):
    other = RolloutPlan.objects.create(
        slug="other-plan", name="Other", role=rollout.plan.role, current_wave=1
    )
    RolloutWave.objects.create(plan=other, number=1, level=AutonomyLevel.SUPERVISED)
    api.force_authenticate(officer())

    api.post(PLAN + "demote/", {"reason": "only this one"}, format="json")
    api.post(PLAN + "promotions/")

    other.refresh_from_db()
    assert other.current_wave == 1 and not other.events.exists()
    assert not other.promotions.exists()


def test_a_plan_not_started_cannot_be_demoted(rollout, api):
    RolloutPlan.objects.filter(pk=rollout.plan.pk).update(current_wave=0)
    api.force_authenticate(officer())
    assert_envelope(
        api.post(PLAN + "demote/", {"reason": "x"}, format="json"), 409, "rollout_not_started"
    )


def test_the_list_reads_in_a_constant_number_of_queries(rollout, api, viewer):
    api.force_authenticate(viewer)

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert api.get("/api/v1/rollouts/").status_code == 200
        return len(queries)

    count()  # the viewer's permissions are cached on it from here on
    few = count()
    for n in range(5):
        plan = RolloutPlan.objects.create(
            slug=f"more-{n}", name=f"More {n}", role=rollout.plan.role
        )
        for number in (1, 2, 3):
            wave = RolloutWave.objects.create(plan=plan, number=number, level=AutonomyLevel.GUARDED)
            wave.agents.add(*rollout.finance)
            wave.business_units.add(BusinessUnitFactory(slug=f"u-{n}-{number}"))
    assert count() == few


# --- an agent reads the plans it is in ---------------------------------------------------------


def test_agents_me_lists_the_plans_the_agent_is_in_with_its_wave_and_level(rollout, api):
    body = bearer(api, rollout.registry.token).get("/api/v1/agents/me/").json()

    assert body["rollouts"] == [
        {"plan": "invoice-rollout", "name": "Invoice processing", "wave": 2, "reached": True,
         "level": "supervised", "operations": []},
    ]  # fmt: skip


def test_an_agent_no_wave_reaches_yet_is_held_at_the_plans_held_level(rollout, api):
    from agents import services as agent_services

    _, token = agent_services.credential_issue(agent=rollout.procurement[0])

    body = bearer(api, token).get("/api/v1/agents/me/").json()

    assert [(r["plan"], r["reached"], r["level"]) for r in body["rollouts"]] == [
        ("invoice-rollout", False, "shadow")
    ]


def test_an_agent_of_another_role_is_in_no_plan(rollout, api):
    from agents import services as agent_services

    other = make_agent(slug="it-helper-1")
    _, token = agent_services.credential_issue(agent=other)
    assert bearer(api, token).get("/api/v1/agents/me/").json()["rollouts"] == []


# --- on PostgreSQL ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_proposals_make_one_promotion(postgres):
    """Officers pressing "Propose" at once: every answer is the same waiting promotion, one
    row, one event (the plan's row lock in ``promotion_propose``)."""
    build_rollout()
    people = [officer(f"officer-{i}") for i in range(6)]
    results, barrier = [], threading.Barrier(len(people))

    def propose(person):
        try:
            client = APIClient()
            client.force_authenticate(person)
            barrier.wait()
            response = client.post(PLAN + "promotions/")
            results.append((response.status_code, response.json().get("id")))
        finally:
            connection.close()

    threads = [threading.Thread(target=propose, args=(p,)) for p in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(results) == len(people)
    assert {code for code, _ in results} <= {200, 201}
    assert len({promotion for _, promotion in results}) == 1
    assert RolloutPromotion.objects.count() == 1
    assert RolloutEvent.objects.filter(kind=RolloutEventKind.PROPOSED).count() == 1
