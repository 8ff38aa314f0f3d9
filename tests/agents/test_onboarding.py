"""Onboarding through approval: registering an agent, raising its risk tier or widening its
grants waits for the business unit's owner, then security (the risk officers); the change
takes effect only when both approve, and the gate refuses a pending agent meanwhile."""

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from agents import services as agent_services
from agents.models import Agent, AgentStatus, RegistryChange, RegistryChangeKind, RiskTier
from agents.portal_roles import PortalRole, group_name
from approvals import services as approvals
from approvals.models import ApprovalKind, ApprovalRequest, ApprovalStatus, Channel
from autonomy import grants
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import AuditRecord
from tests.approvals.route_fixtures import fresh
from tests.autonomy.gate_fixtures import build_registry
from tests.autonomy.test_actions_api import agent_api
from tests.factories import BusinessUnitFactory, UserFactory

pytestmark = pytest.mark.django_db

AGENTS = "/api/v1/agents/"
ACTIONS = "/api/v1/actions/"
POST_INVOICE = {"operation": "erp.post-invoice", "params": {"invoice_id": "I-1", "amount": 1}}


def portal_user(username: str, role: str):
    user = UserFactory(username=username, is_staff=True)
    user.groups.add(Group.objects.get(name=group_name(role)))
    return user


@pytest.fixture
def world(db):
    """Finance (owned by Oscar) with the gate registry's operations; two risk officers; the
    thresholds opened so that a granted, active agent's small invoice is allowed."""
    registry = build_registry()
    unit = registry.agent.business_unit
    unit.owner = UserFactory(username="oscar", is_staff=True)
    unit.approval_threshold = unit.deny_threshold = 1000
    unit.save(update_fields=["owner", "approval_threshold", "deny_threshold"])
    registry.rita = portal_user("rita", PortalRole.RISK_OFFICER)
    registry.ron = portal_user("ron", PortalRole.RISK_OFFICER)
    return registry


def register_through_api(api, it_admin, *, slug="new-bot"):
    api.force_authenticate(it_admin)
    body = {"name": "New bot", "slug": slug, "owner": UserFactory(username=f"dev-{slug}").username,
            "business_unit": "finance", "role": "invoice-processor", "risk_tier": 1}  # fmt: skip
    response = api.post(AGENTS, body, format="json")
    assert response.status_code == 201, response.content
    api.force_authenticate(None)
    return Agent.objects.get(slug=slug)


def request_of(agent, kind=RegistryChangeKind.REGISTER) -> ApprovalRequest:
    return ApprovalRequest.objects.get(change__agent=agent, change__kind=kind)


def decide(request, user, verdict="approve"):
    return approvals.approval_decide(
        request_id=request.pk, approver=fresh(user), verdict=verdict, channel=Channel.INBOX
    )


def act(token, body=POST_INVOICE):
    response = agent_api(token).post(ACTIONS, body, format="json")
    assert response.status_code == 201, response.content
    return response.json()["decision"], {r["code"] for r in response.json()["reasons"]}


def approve_both(request, world):
    decide(request, world.agent.business_unit.owner)
    decide(request, world.rita)


def test_an_agent_registered_through_the_api_cant_act_until_approved(world, api, it_admin):
    agent = register_through_api(api, it_admin)
    _, token = agent_services.credential_issue(agent=agent)
    assert agent.status == AgentStatus.PENDING

    assert act(token) == ("deny", {ErrorCode.AGENT_PENDING_APPROVAL})

    request = request_of(agent)
    assert (request.kind, request.stages, request.stage_name) == (
        ApprovalKind.CHANGE,
        2,
        "Unit owner",
    )
    assert request.requested_by == it_admin and request.business_unit == agent.business_unit
    decide(request, world.agent.business_unit.owner)
    request.refresh_from_db()
    assert (request.status, request.stage, request.stage_name) == ("pending", 2, "Security")
    assert act(token) == ("deny", {ErrorCode.AGENT_PENDING_APPROVAL})

    decide(request, world.rita)
    request.refresh_from_db()
    agent.refresh_from_db()
    assert request.status == ApprovalStatus.APPROVED and agent.status == AgentStatus.ACTIVE
    assert act(token)[0] == "allow"
    kinds = list(
        AuditRecord.objects.filter(kind__startswith="registry_change").values_list(
            "kind", flat=True
        )
    )
    assert kinds == ["registry_change_requested", "registry_change_approved"]


def test_a_rejected_registration_leaves_the_agent_unable_to_act(world, api, it_admin):
    agent = register_through_api(api, it_admin)
    _, token = agent_services.credential_issue(agent=agent)

    decide(request_of(agent), world.agent.business_unit.owner, verdict="reject")

    agent.refresh_from_db()
    change = RegistryChange.objects.get(agent=agent)
    assert change.status == "rejected" and agent.status == AgentStatus.RETIRED
    response = agent_api(token).post(ACTIONS, POST_INVOICE, format="json")
    assert response.status_code == 401  # its credentials went with it
    assert AuditRecord.objects.filter(kind="registry_change_rejected").count() == 1


def test_a_pending_agent_cannot_be_resumed_into_activity(world, api, it_admin):
    agent = register_through_api(api, it_admin)
    with pytest.raises(DomainError) as refused:
        agent_services.agent_resume(agent=agent, by=it_admin)
    assert refused.value.code == ErrorCode.ILLEGAL_TRANSITION


def test_retiring_a_pending_agent_cancels_its_request(world, api, it_admin):
    agent = register_through_api(api, it_admin)
    agent_services.agent_retire(agent=agent, by=it_admin, reason="not needed")
    assert request_of(agent).status == ApprovalStatus.CANCELLED
    assert RegistryChange.objects.get(agent=agent).status == "cancelled"


def test_nobody_deciding_in_time_denies_the_registration(world, api, it_admin):
    agent = register_through_api(api, it_admin)
    with time_machine.travel(timezone.now() + timedelta(days=30)):
        approvals.approvals_sweep()
    agent.refresh_from_db()
    assert request_of(agent).status == ApprovalStatus.EXPIRED
    assert agent.status == AgentStatus.RETIRED


def test_raising_the_risk_tier_waits_for_approval(world, api, it_admin):
    agent = world.agent
    api.force_authenticate(it_admin)
    response = api.patch(f"{AGENTS}{agent.pk}/", {"risk_tier": RiskTier.HIGH}, format="json")
    assert response.status_code == 200 and response.json()["risk_tier"] == RiskTier.LOW
    waiting = response.json()["awaiting_approval"]
    assert [(w["kind"], w["summary"]) for w in waiting] == [
        ("raise_tier", "Raise AP bot's risk tier Low → High")
    ]
    listed = api.get(AGENTS, {"slug": agent.slug}).json()["results"]
    assert [a["awaiting_approval"] for a in listed if a["slug"] == agent.slug] == [waiting]

    again = api.patch(f"{AGENTS}{agent.pk}/", {"risk_tier": RiskTier.CRITICAL}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"

    request = request_of(agent, RegistryChangeKind.RAISE_TIER)
    assert request.subject == "Raise AP bot's risk tier Low → High"
    approve_both(request, world)
    agent.refresh_from_db()
    assert agent.risk_tier == RiskTier.HIGH


def test_lowering_the_risk_tier_applies_at_once(world, it_admin):
    agent = world.agent
    Agent.objects.filter(pk=agent.pk).update(risk_tier=RiskTier.HIGH)
    agent_services.agent_update(agent=agent, by=it_admin, risk_tier=RiskTier.MEDIUM)
    agent.refresh_from_db()
    assert agent.risk_tier == RiskTier.MEDIUM and not RegistryChange.objects.exists()


def test_widening_a_grant_waits_and_the_gate_says_grant_missing_until_approved(world):
    read = {"operation": "erp.read-invoice", "params": {}}
    change = agent_services.grant_request(target=world.read, to=world.agent, by=world.officer)
    assert change.kind == RegistryChangeKind.WIDEN_GRANT
    assert (
        agent_services.grant_request(target=world.read, to=world.agent, by=world.officer) == change
    )
    assert ErrorCode.GRANT_MISSING in act(world.token, read)[1]

    approve_both(change.approval, world)

    assert ErrorCode.GRANT_MISSING not in act(world.token, read)[1]
    assert grants.is_held(target=world.read, to=world.agent)


def test_asking_for_a_grant_already_held_asks_nobody(world):
    role = world.agent.role
    assert agent_services.grant_request(target=world.post, to=role, by=world.officer) is None
    assert not ApprovalRequest.objects.exists()


def test_a_grant_to_a_role_waits_for_two_risk_officers(world):
    change = agent_services.grant_request(target=world.read, to=world.agent.role, by=world.officer)
    request = change.approval
    assert (request.stages, request.quorum, request.approver_group.name) == (
        1, 2, group_name(PortalRole.RISK_OFFICER),
    )  # fmt: skip
    decide(request, world.rita)
    assert not grants.is_held(target=world.read, to=world.agent.role)
    decide(request, world.ron)
    assert grants.is_held(target=world.read, to=world.agent.role)


def test_the_owner_cannot_decide_the_security_stage(world, api, it_admin):
    agent = register_through_api(api, it_admin)
    request = request_of(agent)
    owner = world.agent.business_unit.owner
    decide(request, owner)
    with pytest.raises(DomainError) as refused:
        decide(request, owner)
    assert refused.value.code == ErrorCode.NOT_AN_APPROVER


def test_an_owner_who_is_also_a_risk_officer_cannot_approve_both_stages(world, api, it_admin):
    owner = world.agent.business_unit.owner
    owner.groups.add(Group.objects.get(name=group_name(PortalRole.RISK_OFFICER)))
    agent = register_through_api(api, it_admin)
    request = request_of(agent)
    decide(request, owner)
    with pytest.raises(DomainError) as refused:
        decide(request, owner)
    assert refused.value.code == ErrorCode.DECIDED_EARLIER_STAGE
    agent.refresh_from_db()
    assert agent.status == AgentStatus.PENDING


def test_an_owner_who_asked_does_not_pass_the_owner_stage_alone(world):
    owner = world.agent.business_unit.owner
    agent = agent_services.agent_register(
        name="Own bot", slug="own-bot", owner=UserFactory(), by=owner,
        business_unit=world.agent.business_unit, role=world.agent.role,
    )  # fmt: skip
    request = request_of(agent)
    decide(request, owner)
    request.refresh_from_db()
    assert (request.stage, request.approvals, request.status) == (1, 1, "pending")


@pytest.mark.parametrize("who", ["viewer", "other_owner", "rita"])
def test_people_outside_the_owner_stage_cannot_decide_it(world, api, client, it_admin, viewer, who):
    other_owner = UserFactory(username="uma", is_staff=True)
    BusinessUnitFactory(slug="sales", name="Sales", owner=other_owner)
    agent = register_through_api(api, it_admin)
    request = request_of(agent)
    person = {"viewer": viewer, "other_owner": other_owner, "rita": world.rita}[who]

    api.force_authenticate(person)
    response = api.post(f"/api/v1/approvals/{request.pk}/decide/", {"verdict": "approve"},
                        format="json")  # fmt: skip
    assert response.status_code == 403, response.content
    assert response.json()["error"]["code"] == "not_an_approver"
    client.force_login(person)
    assert client.get(reverse("approvals:detail", args=[request.pk])).status_code == 404
    agent.refresh_from_db()
    assert agent.status == AgentStatus.PENDING


def test_a_change_is_approved_or_rejected_never_changed(world, api, it_admin):
    agent = register_through_api(api, it_admin)
    with pytest.raises(DomainError) as refused:
        approvals.approval_decide(
            request_id=request_of(agent).pk, approver=fresh(world.agent.business_unit.owner),
            verdict="approve_with_changes", channel=Channel.INBOX, params={},
        )  # fmt: skip
    assert refused.value.code == ErrorCode.VALIDATION_FAILED


def test_the_owner_sees_the_change_in_the_inbox_and_the_api(world, api, client, it_admin):
    agent = register_through_api(api, it_admin)
    request = request_of(agent)
    owner = world.agent.business_unit.owner
    client.force_login(owner)
    page = client.get(reverse("approvals:detail", args=[request.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Register New bot" in html and 'id="registry-change"' in html
    listing = client.get(reverse("approvals:inbox"))
    assert "Register New bot" in listing.content.decode()

    api.force_authenticate(owner)
    body = api.get(f"/api/v1/approvals/{request.pk}/").json()
    assert body["kind"] == "change" and body["change"]["kind"] == "register"
    assert body["change"]["agent_status"] == "pending"


def test_the_agent_page_and_the_admin_link_a_pending_agent_to_its_request(
    world, api, client, it_admin
):
    agent = register_through_api(api, it_admin)
    request = request_of(agent)
    link = reverse("approvals:change", args=[RegistryChange.objects.get(agent=agent).pk])
    client.force_login(it_admin)
    page = client.get(reverse("agents:detail", args=[agent.slug])).content.decode()
    assert "Awaiting approval" in page and link in page
    admin_page = client.get(reverse("admin:agents_agent_change", args=[agent.pk])).content.decode()
    assert link in admin_page
    assert client.get(link).status_code == 404  # the IT admin decides none of it

    client.force_login(world.agent.business_unit.owner)
    response = client.get(link)
    assert response.status_code == 302
    assert response["Location"] == reverse("approvals:detail", args=[request.pk])


def _register_many(world, it_admin, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        agent_services.agent_register(
            name=f"Bot {n}", slug=f"bot-{n}", owner=UserFactory(), by=it_admin,
            business_unit=world.agent.business_unit, role=world.agent.role,
        )  # fmt: skip


def _page_queries(client, url) -> int:
    from django.core.cache import cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    cache.clear()
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_the_inbox_costs_the_same_queries_for_3_and_20_registry_changes(world, client, it_admin):
    client.force_login(world.agent.business_unit.owner)
    urls = (reverse("approvals:inbox"), reverse("approvals:inbox-list"))
    _register_many(world, it_admin, 3)
    few = {url: _page_queries(client, url) for url in urls}
    _register_many(world, it_admin, 17, start=3)
    assert {url: _page_queries(client, url) for url in urls} == few
    assert "Bot 19" in client.get(urls[1]).content.decode()


def test_the_owner_then_security_approve_through_their_e_mail_links(world, api, client, it_admin):
    from approvals import links

    agent = register_through_api(api, it_admin)
    request = request_of(agent)
    owner = world.agent.business_unit.owner

    path = links.link_path(request=request, approver=owner)
    page = client.get(path).content.decode()
    assert "Register New bot" in page and 'id="registry-change"' in page
    assert (
        "now waits for stage 2 of 2" in client.post(path, {"verdict": "approve"}).content.decode()
    )

    request.refresh_from_db()
    path = links.link_path(request=request, approver=world.rita)
    result = client.post(path, {"verdict": "approve"}).content.decode()
    assert "“Register New bot” takes effect now." in result
    agent.refresh_from_db()
    assert agent.status == AgentStatus.ACTIVE
