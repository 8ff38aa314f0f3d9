"""Standing approvals as an input of the gate: what they allow, what they never lift, their
time box, revocation, the daily bound (under concurrency too) and who may grant one."""

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.models import Agent
from agents.portal_roles import PortalRole, group_name
from autonomy import actions as lifecycle
from autonomy import gate
from autonomy.errors import DomainError
from autonomy.models import (
    ActionStatus,
    AuditRecord,
    AutonomyLevel,
    AutonomySetting,
    StandingApproval,
    StandingApprovalUse,
)
from autonomy.policy import services as policy_services
from autonomy.standing import services as standing
from tests.autonomy.gate_fixtures import build_registry
from tests.conftest import at_once
from tests.factories import BusinessUnitFactory, UserFactory, make_agent, make_role

pytestmark = pytest.mark.django_db
OFFICE_HOURS = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # a Wednesday
BIG = {"invoice_id": "1", "amount": 200_000}  # risk above 30 (the threshold set below)


def codes(reasons) -> list[str]:
    return [r["code"] for r in reasons]


@pytest.fixture(autouse=True)
def office_hours(settings):
    settings.AUTONOMY_DEFAULT_DAILY_SPEND = None  # many big invoices: no budget in the way
    with time_machine.travel(OFFICE_HOURS, tick=True):
        yield


def person(username: str, role: str = PortalRole.RISK_OFFICER):
    user = UserFactory(username=username, is_staff=True)
    user.groups.add(Group.objects.get(name=group_name(role)))
    return user


@pytest.fixture
def officer(db):
    return person("risk-officer")


@pytest.fixture
def asked(registry):
    """The unit asks a person above risk 30: a big invoice needs approval by risk."""
    unit = registry.agent.business_unit
    unit.approval_threshold = 30
    unit.save()
    return registry


def grant(by, registry, **overrides) -> StandingApproval:
    values = dict(
        operation=registry.post, role=registry.agent.role, max_risk=80, days=7,
        reason="month-end invoices",
    )  # fmt: skip
    values.update(overrides)
    return standing.standing_grant(by=by, **values)


def ask(registry, params=BIG, agent=None, **kwargs):
    action, _ = lifecycle.action_request(
        agent=agent or registry.agent, operation_key="erp.post-invoice", params=params, **kwargs
    )
    return action


def test_a_matching_action_is_allowed_with_the_standing_approval_as_its_reason(asked, officer):
    assert ask(asked).status == ActionStatus.PENDING_APPROVAL
    granted = grant(officer, asked, daily_limit=200)
    action = ask(asked)
    assert action.status in (ActionStatus.APPROVED, ActionStatus.EXECUTING, ActionStatus.SUCCEEDED)
    assert codes(action.reasons) == ["standing_approval"]
    details = action.reasons[0]["details"]
    assert details["standing"]["id"] == granted.pk
    assert details["standing"]["granted_by"] == "risk-officer"
    assert details["standing"]["daily_limit"] == 200
    assert codes(details["waived"]) == ["risk_needs_approval"]
    assert f"#{granted.pk}" in action.reasons[0]["message"]
    assert StandingApprovalUse.objects.get(standing=granted).count == 1
    assert AuditRecord.objects.filter(kind="standing_granted").count() == 1


def test_an_approval_policy_is_settled_too(registry, officer):
    policy_services.policy_save(
        name="big invoices", enabled=True, by=registry.officer,
        text='@approval("required")\npermit (principal, action, resource) when { context has amount && context.amount > 1000 };',
    )  # fmt: skip
    params = {"invoice_id": "1", "amount": 2000}
    before = gate.decide(agent=registry.agent, operation=registry.post, params=params)
    assert codes(before.reasons) == ["policy_requires_approval"]
    grant(officer, registry)
    after = gate.decide(agent=registry.agent, operation=registry.post, params=params)
    assert after.verdict == "allow"
    assert codes(after.reasons) == ["standing_approval"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"max_risk": 20},  # the action's risk is above it
        {"max_amount": Decimal("1000")},  # the amount is above it
        {"role": None, "business_unit": None, "agent": "other"},  # another agent
        {"role": "other"},  # another role
        {"business_unit": "other", "role": None},  # another unit
        {"operation": "read"},  # another operation
        {"starts_at": OFFICE_HOURS + timedelta(hours=1)},  # not started yet
    ],
    ids=["risk", "amount", "agent", "role", "unit", "operation", "before-start"],
)
def test_an_action_outside_its_bounds_is_not_allowed(asked, officer, overrides):
    if overrides.get("agent") == "other":
        overrides["agent"] = make_agent(slug="someone-else", role=asked.agent.role)
    if overrides.get("role") == "other":
        overrides["role"] = make_role("another-role")
    if overrides.get("business_unit") == "other":
        overrides["business_unit"] = BusinessUnitFactory(slug="elsewhere")
    if overrides.get("operation") == "read":
        overrides["operation"] = asked.read
    grant(officer, asked, **overrides)
    decision = gate.decide(agent=asked.agent, operation=asked.post, params=BIG)
    assert decision.verdict == "needs_approval"
    assert codes(decision.reasons) == ["risk_needs_approval"]


def test_scopes_match_by_agent_role_and_unit_most_specific_first(asked, officer):
    unit = asked.agent.business_unit
    by_unit = grant(officer, asked, role=None, business_unit=unit, days=1)
    by_role = grant(officer, asked, days=1)
    by_both = grant(officer, asked, business_unit=unit, days=2)
    by_agent = grant(officer, asked, role=None, agent=asked.agent, days=3)
    decision = gate.decide(agent=asked.agent, operation=asked.post, params=BIG)
    assert [s.pk for s in decision.standing] == [by_agent.pk, by_both.pk, by_role.pk, by_unit.pk]
    assert decision.reasons[0]["details"]["standing"]["id"] == by_agent.pk


@pytest.mark.parametrize("deny", ["forbid", "deny_threshold"])
def test_it_never_lifts_a_denial(asked, officer, deny):
    if deny == "forbid":
        policy_services.policy_save(
            name="no", enabled=True, by=asked.officer, text="forbid (principal, action, resource);"
        )
    else:
        unit = asked.agent.business_unit
        unit.deny_threshold = 31
        unit.save()
    grant(officer, asked, max_risk=30 if deny == "deny_threshold" else 80)
    decision = gate.decide(agent=asked.agent, operation=asked.post, params=BIG)
    assert decision.verdict == "deny"
    assert "standing_approval" not in codes(decision.reasons)


def test_it_never_settles_the_supervised_level_or_a_workflow_gate(asked, officer):
    grant(officer, asked)
    ask_gate = gate.ApprovalAsk(reason="Step 2 asks finance.")
    gated = gate.decide(agent=asked.agent, operation=asked.post, params=BIG, approval=ask_gate)
    assert gated.verdict == "needs_approval"
    assert codes(gated.reasons) == ["risk_needs_approval", "approval_gate"]
    AutonomySetting.objects.create(level=AutonomyLevel.SUPERVISED, agent=asked.agent)
    supervised = gate.decide(agent=asked.agent, operation=asked.post, params=BIG)
    assert supervised.verdict == "needs_approval"
    assert "standing_approval" not in codes(supervised.reasons)


def test_a_revoked_standing_approval_stops_allowing_at_the_next_request(asked, officer):
    granted = grant(officer, asked)
    assert codes(ask(asked).reasons) == ["standing_approval"]
    standing.standing_revoke(standing_id=granted.pk, by=officer, reason="audit finding")
    assert ask(asked).status == ActionStatus.PENDING_APPROVAL
    assert AuditRecord.objects.filter(kind="standing_revoked").count() == 1
    with pytest.raises(DomainError) as again:
        standing.standing_revoke(standing_id=granted.pk, by=officer, reason="twice")
    assert again.value.code == "illegal_transition"


def test_an_expired_standing_approval_stops_allowing_on_its_own(asked, officer):
    grant(officer, asked, days=1)
    assert codes(ask(asked).reasons) == ["standing_approval"]
    with time_machine.travel(OFFICE_HOURS + timedelta(days=1, seconds=1), tick=True):
        # nothing moved the store version: the time box is checked at the decision's time
        assert ask(asked).status == ActionStatus.PENDING_APPROVAL


def test_the_daily_bound_sends_the_rest_to_a_person(asked, officer):
    granted = grant(officer, asked, daily_limit=2)
    statuses = [ask(asked).status for _ in range(3)]
    assert statuses[:2] == [ActionStatus.APPROVED] * 2
    last = ask(asked)
    assert last.status == ActionStatus.PENDING_APPROVAL
    assert codes(last.reasons) == ["risk_needs_approval", "standing_approval_used_up"]
    assert StandingApprovalUse.objects.get(standing=granted).count == 2
    with time_machine.travel(OFFICE_HOURS + timedelta(days=1), tick=True):
        assert ask(asked).status == ActionStatus.APPROVED  # a new day


def test_a_used_up_standing_approval_hands_over_to_the_next_that_matches(asked, officer):
    first = grant(officer, asked, role=None, agent=asked.agent, daily_limit=1)
    second = grant(officer, asked, daily_limit=1)
    reasons = [ask(asked).reasons[0]["details"].get("standing", {}).get("id") for _ in range(2)]
    assert reasons == [first.pk, second.pk]
    assert ask(asked).status == ActionStatus.PENDING_APPROVAL


def test_a_shadowed_action_uses_nothing(asked, officer):
    granted = grant(officer, asked, daily_limit=1)
    AutonomySetting.objects.create(level=AutonomyLevel.SHADOW, agent=asked.agent)
    assert ask(asked).status == ActionStatus.SHADOWED
    assert not StandingApprovalUse.objects.filter(standing=granted, count__gt=0).exists()


@pytest.mark.django_db(transaction=True)
def test_the_daily_bound_holds_under_concurrent_requests_of_several_agents(postgres):
    with time_machine.travel(OFFICE_HOURS, tick=True):
        registry = build_registry()
        unit = registry.agent.business_unit
        unit.approval_threshold = 30
        unit.save()
        agents = [registry.agent] + [
            make_agent(slug=f"ap-{i}", role=registry.agent.role, business_unit=unit)
            for i in range(11)
        ]
        granted = grant(person("ro-concurrent"), registry, daily_limit=5)

        def request(agent):
            return lambda: ask(registry, agent=Agent.objects.get(pk=agent.pk))

        outcomes = at_once(*(request(a) for a in agents))
        assert outcomes == ["ok"] * 12
        statuses = sorted(
            lifecycle.ActionRequest.objects.values_list("status", flat=True)
        )  # fmt: skip
        assert statuses.count(ActionStatus.APPROVED) == 5, statuses
        assert statuses.count(ActionStatus.PENDING_APPROVAL) == 7, statuses
        assert StandingApprovalUse.objects.get(standing=granted).count == 5


def test_a_person_without_the_policy_permission_may_not_grant(asked):
    approver = person("approver", PortalRole.APPROVER)
    with pytest.raises(DomainError) as refused:
        grant(approver, asked)
    assert (refused.value.code, refused.value.status_code) == ("permission_denied", 403)
    assert not StandingApproval.objects.exists()


def test_the_owner_of_an_agent_may_not_grant_it_standing_approval(asked):
    owner = asked.officer
    owner.is_staff = True
    owner.save()
    owner.groups.add(Group.objects.get(name=group_name(PortalRole.RISK_OFFICER)))
    with pytest.raises(DomainError) as refused:
        grant(owner, asked, role=None, agent=asked.agent)
    assert refused.value.code == "permission_denied"
    assert "own" in refused.value.message


def test_who_asked_for_the_source_request_may_not_grant_from_it(asked, officer):
    refused = standing.may_grant(user=officer, source_requested_by_id=officer.pk)
    assert "asked for" in refused
    with pytest.raises(DomainError):
        grant(officer, asked, source_request_id=uuid.uuid4(), source_requested_by_id=officer.pk)


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"max_risk": 85}, "max_risk"),  # at the unit's deny threshold
        ({"days": 91}, "expires_at"),
        ({"daily_limit": 0}, "daily_limit"),
        ({"role": None}, "role"),
        ({"reason": " "}, "reason"),
    ],
)
def test_bad_bounds_are_refused(asked, officer, overrides, field):
    if field == "max_risk":
        overrides["business_unit"] = asked.agent.business_unit
    with pytest.raises(DomainError) as refused:
        grant(officer, asked, **overrides)
    assert refused.value.code == "validation_failed"
    assert field in refused.value.details.get("fields", {field: 1})


def test_decision_query_count_is_unchanged_with_1000_standing_approvals(asked, officer):
    def queries() -> int:
        gate.decide(agent=asked.agent, operation=asked.post, params=BIG)  # warm the caches
        with CaptureQueriesContext(connection) as ctx:
            gate.decide(agent=asked.agent, operation=asked.post, params=BIG)
        return len(ctx.captured_queries)

    without = queries()
    roles = [make_role(f"role-{i}") for i in range(10)]
    now = OFFICE_HOURS
    StandingApproval.objects.bulk_create(
        StandingApproval(
            operation=asked.read if i % 2 else asked.post, role=roles[i % 10], max_risk=80,
            starts_at=now, expires_at=now + timedelta(days=7), granted_by=officer, reason="x",
        )
        for i in range(999)
    )  # fmt: skip
    grant(officer, asked)  # moves the version (the bulk insert sent no signal)
    assert StandingApproval.objects.count() == 1000
    assert queries() == without
    assert gate.decide(agent=asked.agent, operation=asked.post, params=BIG).verdict == "allow"


def test_the_admin_lists_them_by_state_and_revokes_through_the_service(client, asked, officer):
    live = grant(officer, asked)
    gone = grant(officer, asked, days=1)
    standing.standing_revoke(standing_id=gone.pk, by=officer, reason="no longer needed")
    client.force_login(officer)
    url = "/admin/autonomy/standingapproval/"
    page = client.get(url, {"state": "active"})
    assert page.status_code == 200
    assert list(page.context["cl"].result_list) == [live]
    assert "revoke" in dict(page.context["action_form"].fields["action"].choices)
    assert client.get(f"{url}add/").status_code == 403  # granted on the portal or the API only
    done = client.post(url, {"action": "revoke", "_selected_action": [live.pk]})
    assert done.status_code == 302
    live.refresh_from_db()
    assert live.revoked_at is not None and live.revoked_by == officer
    assert AuditRecord.objects.filter(kind="standing_revoked").count() == 2
    viewer = person("viewer", PortalRole.VIEWER)
    client.force_login(viewer)
    page = client.get(url)
    assert page.status_code == 200 and page.context["action_form"] is None  # no revoke


def test_simulate_reads_the_daily_bound_without_counting(asked, officer):
    granted = grant(officer, asked, daily_limit=1)

    def simulated():
        _, decision = lifecycle.action_simulate(
            agent=asked.agent, operation_key="erp.post-invoice", params=BIG
        )
        return codes(decision.reasons)

    assert simulated() == simulated() == ["standing_approval"]
    assert not StandingApprovalUse.objects.filter(standing=granted, count__gt=0).exists()
    assert ask(asked).status == ActionStatus.APPROVED
    assert simulated() == ["risk_needs_approval", "standing_approval_used_up"]
