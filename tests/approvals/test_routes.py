"""Escalation rules and routes: the most specific enabled rule that matches an action's
operation, business unit, risk band and amount sets its stages, reminders and escalation
target (a group, a named person or a portal role), for actions in workflows or not; the
request names the rule that applied."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.core import mail
from django.db import IntegrityError, transaction
from django.test import Client

from agents.portal_roles import PortalRole, group_name
from agents.services import portal_roles_sync
from approvals import selectors, services
from approvals.models import ApprovalRoute, ApprovalStatus, Channel, RouteStage
from autonomy.models import AuditRecord
from tests.approvals.conftest import approver
from tests.approvals.route_fixtures import fresh, route, staged_request
from tests.autonomy.gate_fixtures import build_registry
from tests.factories import BusinessUnitFactory, UserFactory

pytestmark = pytest.mark.django_db
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
RULE = [{"name": "Approval", "escalate_after_seconds": 600}]  # clocks only: an escalation rule


@pytest.fixture
def registry(db):
    return build_registry()


def test_the_most_specific_rule_wins_and_the_request_names_it(registry):
    unit = registry.agent.business_unit
    route("Anything", RULE)
    route("Finance unit", RULE, business_unit=unit)
    route("Invoices", RULE, operation=registry.post)
    route("Finance invoices", RULE, operation=registry.post, business_unit=unit)
    route("Big finance invoices", RULE, operation=registry.post, business_unit=unit,
          min_amount=Decimal("50"))  # fmt: skip
    request = staged_request(registry, amount=100)
    assert request.route.name == "Big finance invoices"
    assert request.route_label == "Escalation rule: Big finance invoices"
    assert (
        request.stages == 1
        and request.escalate_at
        == request.created_at.replace(microsecond=request.escalate_at.microsecond)
        or request.escalate_at - request.created_at < timedelta(seconds=601)
    )
    opened = AuditRecord.objects.get(kind="approval_opened", action_id=request.action_id)
    assert opened.payload["route"] == "Escalation rule: Big finance invoices"


@pytest.mark.parametrize(
    ("routes", "winner"),
    [
        # an operation outranks a unit, even with a narrower band on the unit's route
        ([("op", {"operation": True}), ("unit", {"unit": True, "min_risk": 0, "max_risk": 99})],
         "op"),
        # a unit outranks a risk band
        ([("band", {"min_risk": 0, "max_risk": 99}), ("unit", {"unit": True})], "unit"),
        # a narrower band outranks a wider one
        ([("wide", {"min_risk": 0, "max_risk": 100}), ("narrow", {"min_risk": 0, "max_risk": 99})],
         "narrow"),
        # a threshold on the amount outranks none, a higher one a lower one
        ([("none", {}), ("low", {"min_amount": 10}), ("high", {"min_amount": 50})], "high"),
        # a tie: the older rule wins, whatever order the database returns them in
        ([("first", {"unit": True}), ("second", {"unit": True})], "first"),
    ],
)  # fmt: skip
def test_specificity_is_operation_then_unit_then_band_then_amount(registry, routes, winner):
    for name, match in routes:
        match = dict(match)
        if match.pop("operation", False):
            match["operation"] = registry.post
        if match.pop("unit", False):
            match["business_unit"] = registry.agent.business_unit
        route(name, RULE, **match)
    assert staged_request(registry, amount=100).route.name == winner


def test_rules_that_do_not_match_are_ignored(registry):
    other_unit = BusinessUnitFactory(slug="hr", name="HR")
    route("Other unit", RULE, business_unit=other_unit)
    route("Other operation", RULE, operation=registry.read)
    route("Over a million", RULE, min_amount=1_000_000)
    route("Disabled", RULE, enabled=False)
    route("No stages", [])
    request = staged_request(registry, amount=100)
    route("Risky only", RULE, min_risk=request.risk_score + 1)
    route("Calm only", RULE, max_risk=max(request.risk_score - 1, 0), min_risk=0)
    assert selectors.route_for(action=request.action) is None
    assert (request.route_id, request.route_label, request.stages) == (None, "", 1)


def test_an_action_without_an_amount_never_matches_a_threshold(registry):
    route("Over 10", RULE, min_amount=10)
    request = staged_request(registry, amount=100)
    request.action.amount = None
    assert selectors.route_for(action=request.action) is None


def test_escalation_to_a_named_person_puts_the_request_in_their_inbox(
    registry, django_capture_on_commit_callbacks, tasks_run_in_process
):
    nina = approver("nina", group="Controllers")
    route("Invoices to Nina", [{"name": "Approval", "escalate_after_seconds": 600,
                                "escalate_to_user": nina}], operation=registry.post)  # fmt: skip
    request = staged_request(registry)
    assert list(selectors.inbox_for_user(user=nina)) == []
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        counts = services.approvals_sweep(now=request.created_at + timedelta(seconds=600))
    assert counts["escalated"] == 1
    assert list(selectors.inbox_for_user(user=fresh(nina))) == [request]
    assert "nina@example.com" in [m.to[0] for m in mail.outbox]
    other = approver("oscar", group="Controllers")  # nina's group: not named, not escalated to
    assert not services.may_decide(user=fresh(other), request=request)
    services.approval_decide(request_id=request.pk, approver=fresh(nina), verdict="approve",
                             channel=Channel.INBOX)  # fmt: skip
    request.refresh_from_db()
    assert request.status == ApprovalStatus.APPROVED


def test_escalation_to_a_portal_role_goes_to_that_roles_group(registry):
    route("Invoices to IT", [{"name": "Approval", "escalate_after_seconds": 60,
                              "escalate_to_role": PortalRole.IT_ADMIN}])  # fmt: skip
    request = staged_request(registry)
    assert request.escalation_group.name == group_name(PortalRole.IT_ADMIN)
    admin = approver("ivy", group=group_name(PortalRole.IT_ADMIN))
    assert not services.may_decide(user=fresh(admin), request=request)
    services.approvals_sweep(now=request.created_at + timedelta(seconds=60))
    assert services.may_decide(user=fresh(admin), request=request)


def test_escalation_to_another_group_and_the_rules_reminder_time(
    registry, django_capture_on_commit_callbacks
):
    route("Invoices", [{"name": "Approval", "remind_after_seconds": 120,
                        "escalate_after_seconds": 900, "escalate_to_group":
                        Group.objects.create(name="Treasury")}])  # fmt: skip
    request = staged_request(registry)
    at = request.created_at
    with django_capture_on_commit_callbacks():
        assert services.approvals_sweep(now=at + timedelta(seconds=119))["reminded"] == 0
        assert services.approvals_sweep(now=at + timedelta(seconds=120))["reminded"] == 1
        assert services.approvals_sweep(now=at + timedelta(seconds=899))["escalated"] == 0
        assert services.approvals_sweep(now=at + timedelta(seconds=900))["escalated"] == 1
    record = AuditRecord.objects.get(kind="approval_escalated")
    assert record.payload["to"] == "Treasury"
    assert record.payload["rule"] == "Escalation rule: Invoices"


def test_without_a_rule_the_built_in_default_holds(registry, settings):
    with time_machine.travel(START, tick=False):
        request = staged_request(registry)
    assert request.escalation_group.name == group_name(PortalRole.RISK_OFFICER)
    assert request.escalation_user is None
    escalate = timedelta(seconds=settings.AUTONOMY_APPROVAL_ESCALATE_SECONDS)
    assert (request.escalate_at, request.remind_at) == (START + escalate, START + escalate / 2)
    assert request.expires_at == START + timedelta(seconds=settings.AUTONOMY_APPROVAL_TTL_SECONDS)


def test_a_stage_escalates_to_one_target_only(registry):
    made = ApprovalRoute.objects.create(name="Two targets")
    with pytest.raises(IntegrityError), transaction.atomic():
        RouteStage.objects.create(
            route=made, number=1, name="x", escalate_to_group=Group.objects.create(name="G"),
            escalate_to_role=PortalRole.IT_ADMIN,
        )  # fmt: skip


def test_a_route_edited_later_changes_no_waiting_request(registry):
    made = route("Payments", [{"name": "Manager", "group": "Managers"},
                              {"name": "Finance", "group": "Finance approvers"}],
                 operation=registry.post)  # fmt: skip
    request = staged_request(registry)
    made.stages.filter(number=2).update(approver_group=Group.objects.create(name="Others"))
    services.approval_decide(request_id=request.pk, approver=approver("mia", "Managers"),
                             verdict="approve", channel=Channel.INBOX)  # fmt: skip
    request.refresh_from_db()
    assert request.approver_group.name == "Finance approvers"


def test_risk_officers_write_routes_in_the_admin_and_approvers_may_not(registry):
    portal_roles_sync()
    risk = UserFactory(username="rita", is_staff=True)
    risk.groups.add(Group.objects.get(name=group_name(PortalRole.RISK_OFFICER)))
    plain = UserFactory(username="amy", is_staff=True)
    plain.groups.add(Group.objects.get(name=group_name(PortalRole.APPROVER)))
    client = Client()
    client.force_login(risk)
    assert client.get("/admin/approvals/approvalroute/add/").status_code == 200
    created = client.post(
        "/admin/approvals/approvalroute/add/",
        {
            "name": "Payments over 10k", "enabled": "on", "operation": registry.post.pk,
            "min_amount": "10000",
            "stages-TOTAL_FORMS": "2", "stages-INITIAL_FORMS": "0",
            "stages-MIN_NUM_FORMS": "1", "stages-MAX_NUM_FORMS": "1000",
            "stages-0-number": "1", "stages-0-name": "Manager", "stages-0-quorum": "1",
            "stages-0-expiry_outcome": "deny",
            "stages-1-number": "2", "stages-1-name": "Finance", "stages-1-quorum": "1",
            "stages-1-expiry_outcome": "deny", "stages-1-escalate_to_role": "risk_officer",
            "stages-1-escalate_to_user": plain.pk,
        },
    )  # fmt: skip
    assert created.status_code == 200  # two targets on stage 2: the form says so
    assert "Escalate to one target" in created.content.decode()
    client.force_login(plain)
    assert client.get("/admin/approvals/approvalroute/add/").status_code == 403
    assert not ApprovalRoute.objects.exists()
