"""Rollout plans in the kernel (``autonomy.rollouts``): the level a plan gives an agent, its
figures against the next wave's criteria (checked against a recount by hand), promotion only
through ``promotion_settle``, and guards that demote before the next action."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone
from rest_framework.test import APIClient

from agents.models import DriftFlag, DriftKind, FlagStatus
from agents.portal_roles import PortalRole, group_name
from autonomy import actions, levels
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import (
    ActionRequest,
    ActionStatus,
    AuditRecord,
    AutonomyLevel,
    AutonomySetting,
    HumanDecision,
    PromotionStatus,
    RolloutEvent,
    RolloutMeasurement,
    RolloutPlan,
    RolloutPromotion,
    RolloutWave,
    Verdict,
)
from autonomy.policy import engine
from autonomy.policy import services as policy_services
from autonomy.rollouts import selectors, services
from tests.autonomy.gate_fixtures import build_registry
from tests.conftest import bearer, wait_for
from tests.factories import BusinessUnitFactory, UserFactory, make_agent

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
KEY = "erp.post-invoice"


@pytest.fixture(autouse=True)
def office_hours():
    with time_machine.travel(NOW, tick=True):
        yield


def bulk_set(queryset, **fields):
    """A bulk UPDATE sends no signal: say the registry changed, as bulk writers must."""
    queryset.update(**fields)
    policy_services.registry_changed()


def officer(username="rita"):
    user = UserFactory(username=username, is_staff=True)
    user.groups.add(Group.objects.get(name=group_name(PortalRole.RISK_OFFICER)))
    return user


def make_plan(registry, *, wave=0, **plan_fields) -> RolloutPlan:
    """Invoice processing: wave 1 the one agent in shadow, wave 2 finance supervised, wave 3
    finance and procurement guarded, wave 4 everyone autonomous."""
    agent = registry.agent
    plan = RolloutPlan.objects.create(
        slug="invoices", name="Invoice processing", role=agent.role, **plan_fields
    )
    procurement = BusinessUnitFactory(slug="procurement", name="Procurement")
    one = RolloutWave.objects.create(plan=plan, number=1, level=AutonomyLevel.SHADOW)
    one.agents.add(agent)
    two = RolloutWave.objects.create(
        plan=plan, number=2, level=AutonomyLevel.SUPERVISED, min_actions=3,
        max_denial_ratio=0.2, max_open_drift_flags=0,
    )  # fmt: skip
    two.business_units.add(agent.business_unit)
    three = RolloutWave.objects.create(
        plan=plan, number=3, level=AutonomyLevel.GUARDED, min_actions=4,
        max_denial_ratio=0.25, max_failure_ratio=0.5, max_open_drift_flags=0,
        max_override_ratio=0.5, guard_failures=2, guard_window_minutes=10,
    )  # fmt: skip
    three.business_units.add(agent.business_unit, procurement)
    RolloutWave.objects.create(plan=plan, number=4, level=AutonomyLevel.AUTONOMOUS, everyone=True)
    bulk_set(RolloutPlan.objects.filter(pk=plan.pk), current_wave=wave, wave_since=timezone.now())
    plan.refresh_from_db()
    return plan


def record(agent, *, status, verdict=Verdict.ALLOW, human="", ago=timedelta(minutes=5), op=None):
    """One action in the agent's history, as the lifecycle leaves it."""
    return ActionRequest.objects.create(
        agent=agent, operation=op, params={}, verdict=verdict, status=status,
        human_decision=human, created_at=timezone.now() - ago,
    )  # fmt: skip


# --- the level a plan gives ----------------------------------------------------------------


def test_a_plan_holds_the_agents_no_wave_reached_and_gives_the_reached_its_current_wave(registry):
    agent = registry.agent
    plan = make_plan(registry, wave=0)
    other_role = make_agent(slug="hr-bot", business_unit=agent.business_unit)

    assert levels.level_for(agent=agent, operation_key=KEY).as_dict() == {
        "level": "shadow",
        "source": "rollout plan invoices, not yet reached (held)",
    }
    assert levels.level_for(agent=other_role, operation_key=KEY) == levels.DEFAULT

    for wave, expected in [(1, "shadow"), (2, "supervised"), (3, "guarded"), (4, "autonomous")]:
        bulk_set(RolloutPlan.objects.filter(pk=plan.pk), current_wave=wave)
        assert levels.level_for(agent=agent, operation_key=KEY).as_dict() == {
            "level": expected,
            "source": f"rollout plan invoices, wave {wave}",
        }


def test_a_wave_reaches_the_agents_of_the_waves_before_it_and_holds_the_rest(registry):
    agent = registry.agent
    make_plan(registry, wave=1, held_level=AutonomyLevel.SUPERVISED)
    colleague = make_agent(slug="ap-bot-2", business_unit=agent.business_unit, role=agent.role)
    buyer = make_agent(
        slug="buyer", business_unit=BusinessUnitFactory(slug="procurement"), role=agent.role
    )

    # Wave 1 names one agent: its colleague in finance is held.
    assert levels.level_for(agent=agent).level == "shadow"
    assert levels.level_for(agent=colleague).as_dict() == {
        "level": "supervised",
        "source": "rollout plan invoices, not yet reached (held)",
    }
    bulk_set(RolloutPlan.objects.all(), current_wave=3)  # finance and procurement
    assert {levels.level_for(agent=a).level for a in (agent, colleague, buyer)} == {"guarded"}


def test_the_most_restrictive_of_plan_and_settings_wins_and_is_named(registry):
    agent = registry.agent
    make_plan(registry, wave=4)  # autonomous
    AutonomySetting.objects.create(
        level=AutonomyLevel.SUPERVISED, business_unit=agent.business_unit
    )
    assert levels.level_for(agent=agent, operation_key=KEY).as_dict() == {
        "level": "supervised",
        "source": "business unit finance",
    }
    bulk_set(RolloutPlan.objects.all(), current_wave=1)  # shadow, below the unit's setting
    assert levels.level_for(agent=agent, operation_key=KEY).source == (
        "rollout plan invoices, wave 1"
    )


def test_a_plan_narrowed_to_operations_or_a_template_covers_only_those(registry):
    agent = registry.agent
    make_plan(registry, wave=1, operations=["erp.read-invoice"])
    assert levels.level_for(agent=agent, operation_key=KEY) == levels.DEFAULT
    assert levels.level_for(agent=agent, operation_key="erp.read-invoice").level == "shadow"

    bulk_set(RolloutPlan.objects.all(), operations=[], template_key="month-end", role=None)
    assert levels.level_for(agent=agent, operation_key=KEY) == levels.DEFAULT
    in_template = levels.level_for(agent=agent, operation_key=KEY, template_key="month-end")
    assert in_template.as_dict() == {"level": "shadow", "source": "rollout plan invoices, wave 1"}


def test_an_inactive_plan_gives_no_level(registry):
    make_plan(registry, wave=1, active=False)
    assert levels.level_for(agent=registry.agent, operation_key=KEY) == levels.DEFAULT


def test_the_gate_decides_at_the_plans_level_and_the_audit_names_the_plan(registry):
    make_plan(registry, wave=1)
    action, _ = actions.action_request(
        agent=registry.agent, operation_key=KEY, params={"invoice_id": "INV-1", "amount": 10}
    )
    assert action.status == ActionStatus.SHADOWED and action.autonomy_level == "shadow"
    decision = AuditRecord.objects.get(kind="action_decision", action_id=action.pk)
    assert decision.payload["decision"]["autonomy_level"] == {
        "level": "shadow",
        "source": "rollout plan invoices, wave 1",
    }


def test_a_decision_asks_nothing_for_its_level_once_its_process_read_the_version(
    registry, django_assert_num_queries
):
    make_plan(registry, wave=2)
    agent, version = registry.agent, engine.store_version()
    levels.level_for(agent=agent, operation_key=KEY, version=version)  # read once per version
    with django_assert_num_queries(0):
        level = levels.level_for(agent=agent, operation_key=KEY, version=version)
    assert level.level == "supervised"
    # A wave's new members move the version: the next decision reads them.
    RolloutWave.objects.get(plan__slug="invoices", number=1).agents.remove(agent)
    moved = engine.store_version()
    assert moved != version
    assert levels.level_for(agent=agent, operation_key=KEY, version=moved).as_dict() == {
        "level": "supervised",
        "source": "rollout plan invoices, wave 2",  # still reached: finance is in wave 2
    }
    RolloutWave.objects.get(plan__slug="invoices", number=2).business_units.clear()
    assert levels.level_for(agent=agent, operation_key=KEY).source == (
        "rollout plan invoices, not yet reached (held)"
    )


# --- figures and criteria ------------------------------------------------------------------


def test_the_figures_match_a_recount_by_hand_of_seeded_history(registry):
    agent, post = registry.agent, registry.post
    plan = make_plan(registry, wave=2, window_minutes=60)
    colleague = make_agent(slug="ap-bot-2", business_unit=agent.business_unit, role=agent.role)
    outsider = make_agent(slug="hr-bot")  # another role: not in the plan
    history = [
        # (agent, status, verdict, what people said, minutes ago)
        (agent, ActionStatus.SUCCEEDED, Verdict.ALLOW, "", 5),
        (agent, ActionStatus.SUCCEEDED, Verdict.NEEDS_APPROVAL, HumanDecision.APPROVED, 6),
        (agent, ActionStatus.FAILED, Verdict.NEEDS_APPROVAL, HumanDecision.CHANGED, 7),
        (agent, ActionStatus.DENIED, Verdict.NEEDS_APPROVAL, HumanDecision.REJECTED, 8),
        (agent, ActionStatus.DENIED, Verdict.DENY, "", 9),
        (colleague, ActionStatus.SUCCEEDED, Verdict.NEEDS_APPROVAL, HumanDecision.APPROVED, 10),
        (colleague, ActionStatus.PENDING_APPROVAL, Verdict.NEEDS_APPROVAL, "", 11),
        (colleague, ActionStatus.SHADOWED, Verdict.ALLOW, "", 12),
        (agent, ActionStatus.FAILED, Verdict.ALLOW, "", 90),  # outside the window
        (outsider, ActionStatus.FAILED, Verdict.DENY, "", 5),  # not in the plan
    ]
    for who, status, verdict, human, ago in history:
        record(who, status=status, verdict=verdict, human=human, ago=timedelta(minutes=ago),
               op=post)  # fmt: skip
    DriftFlag.objects.create(agent=colleague, kind=DriftKind.FIRST_CONNECTOR, subject="crm")
    DriftFlag.objects.create(agent=outsider, kind=DriftKind.FIRST_CONNECTOR, subject="crm")
    DriftFlag.objects.create(
        agent=agent, kind=DriftKind.FIRST_CONNECTOR, subject="hr", status=FlagStatus.DISMISSED
    )

    figures = selectors.measure(plan=plan)

    # By hand: 8 actions of the two finance agents in the hour; denied by the gate: 1 of 8;
    # executed 4 (3 succeeded, 1 failed); people answered 4 (approved 2, changed 1, rejected
    # 1), so 2 overrides; one open flag (the colleague's; the dismissed one does not count).
    assert {k: figures[k] for k in (
        "agents", "actions", "denied", "denial_ratio", "executed", "failed", "failure_ratio",
        "open_drift_flags", "answered", "overridden", "override_ratio",
    )} == {
        "agents": 2, "actions": 8, "denied": 1, "denial_ratio": 0.125, "executed": 4,
        "failed": 1, "failure_ratio": 0.25, "open_drift_flags": 1, "answered": 4,
        "overridden": 2, "override_ratio": 0.5,
    }  # fmt: skip
    health = selectors.plan_health(plan=plan)
    assert health["next_wave"] == 3
    assert {c["name"]: (c["value"], c["threshold"], c["met"]) for c in health["criteria"]} == {
        "actions": (8, 4, True),
        "denial_ratio": (0.125, 0.25, True),
        "failure_ratio": (0.25, 0.5, True),
        "open_drift_flags": (1, 0, False),
        "override_ratio": (0.5, 0.5, True),
    }
    assert health["met"] is False


def test_a_ratio_with_no_sample_is_not_shown_to_hold(registry):
    plan = make_plan(registry, wave=2)
    RolloutWave.objects.filter(plan=plan, number=3).update(min_actions=0)
    health = selectors.plan_health(plan=plan)
    assert {c["name"]: c["met"] for c in health["criteria"]}["failure_ratio"] is False
    assert health["met"] is False


# --- promotion: only through promotion_settle ----------------------------------------------


def healthy(registry, plan):
    """Enough clean history of the plan's agent for wave 2's criteria (from wave 1)."""
    for _ in range(3):
        record(registry.agent, status=ActionStatus.SHADOWED, op=registry.post)


def test_a_promotion_is_refused_while_the_criteria_do_not_hold(registry):
    plan = make_plan(registry, wave=1)
    record(registry.agent, status=ActionStatus.SHADOWED, op=registry.post)

    with pytest.raises(DomainError) as refused:
        services.promotion_propose(plan_id=plan.pk, by=officer())

    assert refused.value.code == ErrorCode.ROLLOUT_CRITERIA_NOT_MET
    assert refused.value.status_code == 409
    actions_criterion = refused.value.details["criteria"][0]
    assert actions_criterion == {
        "name": "actions", "label": "actions taken", "value": 1, "threshold": 3,
        "at_least": True, "met": False,
    }  # fmt: skip
    assert not RolloutPromotion.objects.exists()


def test_only_people_allowed_to_steer_may_propose_or_demote(registry):
    plan = make_plan(registry, wave=1)
    healthy(registry, plan)
    viewer = UserFactory(username="vic", is_staff=True)
    viewer.groups.add(Group.objects.get(name=group_name(PortalRole.VIEWER)))
    for call in (
        lambda: services.promotion_propose(plan_id=plan.pk, by=viewer),
        lambda: services.plan_demote(plan_id=plan.pk, by=viewer, reason="no"),
    ):
        with pytest.raises(DomainError) as refused:
            call()
        assert refused.value.status_code == 403
    plan.refresh_from_db()
    assert plan.current_wave == 1 and not RolloutPromotion.objects.exists()


def test_a_proposal_waits_and_moves_the_plan_only_when_settled_approved_once(registry):
    plan = make_plan(registry, wave=1)
    healthy(registry, plan)
    rita = officer()

    promotion = services.promotion_propose(plan_id=plan.pk, by=rita)
    again = services.promotion_propose(plan_id=plan.pk, by=rita)

    assert again.pk == promotion.pk  # one waits at a time
    assert (promotion.from_wave, promotion.to_wave, promotion.status) == (1, 2, "pending")
    assert promotion.figures["met"] is True and promotion.figures["figures"]["actions"] == 3
    plan.refresh_from_db()
    assert plan.current_wave == 1  # proposing moves nothing

    assert services.promotion_settle(promotion_id=promotion.pk, approved=True, actor="olga",
                                     reason="Figures look right.") == "approved"  # fmt: skip
    assert services.promotion_settle(promotion_id=promotion.pk, approved=True, actor="olga") == (
        "approved"
    )  # a second settle changes nothing
    plan.refresh_from_db()
    assert plan.current_wave == 2
    assert list(plan.events.values_list("kind", "from_wave", "to_wave", "actor")) == [
        ("promoted", 1, 2, "olga"),
        ("proposed", 1, 2, "rita"),
    ]
    assert AuditRecord.objects.filter(kind="rollout_promoted").count() == 1
    assert levels.level_for(agent=registry.agent, operation_key=KEY).level == "supervised"


def test_a_rejected_promotion_leaves_the_plan_and_a_void_one_never_moves_it(registry):
    plan = make_plan(registry, wave=1)
    healthy(registry, plan)
    first = services.promotion_propose(plan_id=plan.pk)
    assert services.promotion_settle(promotion_id=first.pk, approved=False, actor="olga") == (
        "rejected"
    )
    second = services.promotion_propose(plan_id=plan.pk)
    # The plan moves while it waits (a person demotes it): the waiting promotion is void.
    services.plan_demote(plan_id=plan.pk, by=officer(), reason="Shadow output looks wrong.")
    second.refresh_from_db()
    assert second.status == PromotionStatus.VOID
    assert services.promotion_settle(promotion_id=second.pk, approved=True, actor="olga") == (
        "void"
    )
    plan.refresh_from_db()
    assert plan.current_wave == 0


def test_the_beat_measures_every_plan_and_proposes_when_the_criteria_hold(registry):
    plan = make_plan(registry, wave=1)
    assert services.plans_measure() == {"measured": 1, "proposed": 0}
    healthy(registry, plan)
    assert services.plans_measure() == {"measured": 1, "proposed": 1}
    assert services.plans_measure() == {"measured": 1, "proposed": 0}  # one waits already
    assert RolloutMeasurement.objects.filter(plan=plan).count() == 3
    assert list(RolloutMeasurement.objects.order_by("at").values_list("met", flat=True)) == [
        False, True, True,
    ]  # fmt: skip
    assert RolloutPromotion.objects.get().proposed_by is None


# --- guards --------------------------------------------------------------------------------


def test_failures_up_to_the_guard_demote_the_wave_once_and_tell_the_people_responsible(
    registry, mailoutbox, eager
):
    agent = registry.agent
    plan = make_plan(registry, wave=3, owner=registry.officer)
    RolloutWave.objects.filter(plan=plan, number=2).update(guard_failures=2)
    rita = officer()
    first = record(agent, status=ActionStatus.EXECUTING, op=registry.post)
    second = record(agent, status=ActionStatus.EXECUTING, op=registry.post)
    third = record(agent, status=ActionStatus.EXECUTING, op=registry.post)
    for action in (first, second, third):
        action.started_at = timezone.now()
        action.save(update_fields=["started_at"])

    def fail(action):  # what a worker records when the connector call failed
        action.status, action.error = ActionStatus.FAILED, {"message": "ERP answered 422"}
        with transaction.atomic():
            actions.action_settle(action=action)

    fail(first)
    plan.refresh_from_db()
    assert plan.current_wave == 3  # one failure is within the guard
    fail(second)
    plan.refresh_from_db()
    assert plan.current_wave == 2
    fail(third)  # wave 2 guards too, but the failures before it began are not its own
    plan.refresh_from_db()
    assert plan.current_wave == 2
    tripped = RolloutEvent.objects.get(plan=plan, kind="guard_tripped")
    assert (tripped.from_wave, tripped.to_wave, tripped.actor) == (3, 2, "guard")
    assert tripped.figures["guard"] == "failures" and tripped.figures["failures"] == 2
    assert "2 failed actions within 10 min" in tripped.reason
    assert AuditRecord.objects.filter(kind="rollout_guard_tripped").count() == 1
    assert levels.level_for(agent=agent, operation_key=KEY).level == "supervised"
    [mail] = mailoutbox
    assert set(mail.to) == {registry.officer.email, rita.email}
    assert "guard tripped" in mail.subject and "Wave 3 → wave 2" in mail.body


def test_a_new_drift_flag_demotes_a_wave_that_guards_on_drift(registry):
    agent = registry.agent
    plan = make_plan(registry, wave=3)
    RolloutWave.objects.filter(plan=plan, number=3).update(guard_drift_flag=True)

    DriftFlag.objects.create(agent=agent, kind=DriftKind.FIRST_CONNECTOR, subject="crm")

    plan.refresh_from_db()
    assert plan.current_wave == 2
    tripped = plan.events.get()
    assert tripped.kind == "guard_tripped" and tripped.figures["guard"] == "drift_flag"


def test_a_guard_ignores_agents_its_wave_does_not_reach(registry):
    plan = make_plan(registry, wave=1)
    RolloutWave.objects.filter(plan=plan, number=1).update(guard_drift_flag=True)
    colleague = make_agent(
        slug="ap-bot-2", business_unit=registry.agent.business_unit, role=registry.agent.role
    )
    DriftFlag.objects.create(agent=colleague, kind=DriftKind.FIRST_CONNECTOR, subject="crm")
    plan.refresh_from_db()
    assert plan.current_wave == 1


def test_demoting_needs_a_reason_and_a_current_wave(registry):
    plan = make_plan(registry, wave=0)
    rita = officer()
    with pytest.raises(DomainError) as no_reason:
        services.plan_demote(plan_id=plan.pk, by=rita, reason=" ")
    assert no_reason.value.code == ErrorCode.VALIDATION_FAILED
    with pytest.raises(DomainError) as nothing:
        services.plan_demote(plan_id=plan.pk, by=rita, reason="stop")
    assert nothing.value.code == ErrorCode.ROLLOUT_NOT_STARTED


# --- on PostgreSQL, with a real worker -------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_tripped_guard_demotes_the_wave_before_the_next_action(
    postgres, celery_worker, http_system
):
    """The worker records the second failure and the demotion in one transaction: the
    agent's very next action, asked the moment the failure shows, is decided at wave 2's
    level. No sleep: the test waits only for the failures to be recorded."""
    registry = build_registry()
    erp = registry.erp
    erp.config = {"base_url": http_system.url, "retries": 0}
    erp.save()
    http_system.routes["/post-invoice"] = (422, {"error": "invoice rejected"})
    make_plan(registry, wave=3, owner=registry.officer)
    agent = bearer(APIClient(), registry.token)

    def post(n):
        response = agent.post(
            "/api/v1/actions/",
            {"operation": KEY, "params": {"invoice_id": f"INV-{n}", "amount": 10}},
            format="json",
        )
        assert response.status_code == 201, response.content
        return response.json()

    first, second = post(1), post(2)
    assert first["autonomy_level"] == second["autonomy_level"] == "guarded"
    assert first["decision"] == "allow"
    wait_for(
        lambda: ActionRequest.objects.filter(
            pk__in=[first["id"], second["id"]], status=ActionStatus.FAILED
        ).count() == 2,
        what=f"both actions to fail\n{celery_worker.log()}",
    )  # fmt: skip

    third = post(3)

    assert third["autonomy_level"] == "supervised"
    assert third["status"] == "pending_approval"
    supervised = next(r for r in third["reasons"] if r["code"] == "autonomy_supervised")
    assert "rollout plan invoices, wave 2" in supervised["message"]
    assert len(http_system.received()) == 2  # the third never reached the ERP
    tripped = RolloutEvent.objects.get(kind="guard_tripped")
    assert (tripped.from_wave, tripped.to_wave, tripped.figures["failures"]) == (3, 2, 2)
    mail = wait_for(lambda: celery_worker.mails(), what="the guard's e-mail")
    assert "guard tripped" in mail[0] and registry.officer.email in mail[0]


def test_a_second_demote_of_the_wave_a_person_saw_moves_nothing(registry):
    plan = make_plan(registry, wave=3)
    rita = officer()
    services.plan_demote(plan_id=plan.pk, by=rita, reason="Too many changes.", from_wave=3)
    with pytest.raises(DomainError) as moved:
        services.plan_demote(plan_id=plan.pk, by=rita, reason="Too many changes.", from_wave=3)
    assert moved.value.code == ErrorCode.ROLLOUT_WAVE_MOVED
    assert moved.value.details == {"current_wave": 2}
    plan.refresh_from_db()
    assert plan.current_wave == 2 and plan.events.count() == 1


def test_figures_measured_for_a_past_moment_leave_out_what_came_after_it(registry):
    plan = make_plan(registry, wave=2, window_minutes=60)
    record(
        registry.agent, status=ActionStatus.SUCCEEDED, op=registry.post, ago=timedelta(minutes=30)
    )
    record(
        registry.agent, status=ActionStatus.SUCCEEDED, op=registry.post, ago=timedelta(minutes=5)
    )
    then = timezone.now() - timedelta(minutes=10)
    assert selectors.measure(plan=plan, now=then)["actions"] == 1
    assert selectors.measure(plan=plan)["actions"] == 2
