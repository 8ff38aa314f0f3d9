"""Invariants of the gate over random registries, grants, policies and agent states.

Each example sets up its grants, policies and the agent's status inside a transaction that
is rolled back afterwards, asks through the real write path (``action_request``) and checks
the decision against an independent reading of the same facts.
"""

import secrets
from datetime import UTC, datetime

import pytest
import time_machine
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from guardian.models import GroupObjectPermission, UserObjectPermission
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents import services as agent_services
from agents.models import Agent, AgentStatus
from autonomy import actions, gate
from autonomy import grants as grant_rules
from autonomy.models import (
    ActionRequest,
    AuditRecord,
    Connector,
    ConnectorKind,
    Operation,
    Policy,
    PolicyStoreState,
)
from autonomy.policy import engine
from tests.factories import BusinessUnitFactory, UserFactory, make_role

pytestmark = pytest.mark.django_db

OPS = [("post", 2), ("pay", 4), ("read", 1)]


@pytest.fixture
def world(db):
    owner = UserFactory(username="owner")
    units = [BusinessUnitFactory(slug=s, name=s) for s in ("finance", "it")]
    roles = [make_role(s) for s in ("clerk", "buyer", "analyst")]
    agents = [
        agent_services.agent_register(
            approved=True, name=f"a{i}", slug=f"a{i}", owner=owner, business_unit=units[i % 2],
            role=roles[i % 3], risk_tier=1 + i % 4,
        )
        for i in range(6)
    ]  # fmt: skip
    erp = Connector.objects.create(slug="erp", name="ERP", kind=ConnectorKind.ERP)
    ops = [
        Operation.objects.create(
            connector=erp, slug=s, name=s, sensitivity=sens, amount_param="amount"
        )
        for s, sens in OPS
    ]
    return {"agents": agents, "roles": roles, "units": units, "erp": erp, "ops": ops}


def principal_scopes(world):
    return st.sampled_from(
        ["principal"]
        + [f'principal == Agent::"{a.pk}"' for a in world["agents"]]
        + [f'principal in Role::"{r.slug}"' for r in world["roles"]]
        + [f'principal in BusinessUnit::"{u.slug}"' for u in world["units"]]
    )


RESOURCES = st.sampled_from(
    ["resource", 'resource in Connector::"erp"']
    + [f'resource == Operation::"erp.{s}"' for s, _ in OPS]
)
CONDITIONS = st.sampled_from(
    [
        "",
        " when { context.risk_score < 40 }",
        " when { resource.sensitivity >= 3 }",
        " unless { principal.risk_tier > 2 }",
        " when { context has amount && context.amount > 500 }",
    ]
)


def statements(world):
    return st.tuples(
        st.sampled_from(["permit", "forbid"]), principal_scopes(world), RESOURCES, CONDITIONS
    ).map(lambda t: f"{t[0]} ({t[1]}, action, {t[2]}){t[3]};")


def grants(world):
    grantees = [("agent", a) for a in world["agents"]] + [("role", r) for r in world["roles"]]
    targets = [world["erp"], *world["ops"]]
    return st.lists(st.tuples(st.sampled_from(grantees), st.sampled_from(targets)), max_size=6)


def has_grant(agent, operation) -> bool:
    """The independent reading: a guardian row for the agent or its role on op or connector."""
    op_ct, conn_ct = (ContentType.objects.get_for_model(m) for m in (Operation, Connector))
    targets = [(op_ct, str(operation.pk)), (conn_ct, str(operation.connector_id))]
    return any(
        UserObjectPermission.objects.filter(
            user=agent.service_user, content_type=ct, object_pk=pk
        ).exists()
        or GroupObjectPermission.objects.filter(
            group=agent.role.group, content_type=ct, object_pk=pk
        ).exists()
        for ct, pk in targets
    )


@pytest.fixture(autouse=True)
def office_hours():
    with time_machine.travel(datetime(2026, 11, 25, 10, 0, tzinfo=UTC), tick=True):
        yield


def run_example(world, data, check):
    agent = data.draw(st.sampled_from(world["agents"]))
    operation = data.draw(st.sampled_from(world["ops"]))
    # Mostly active agents: the interesting decisions are theirs.
    status = data.draw(st.sampled_from([AgentStatus.ACTIVE] * 3 + list(AgentStatus)))
    texts = data.draw(st.lists(statements(world), max_size=6))
    granted = data.draw(grants(world))
    amount = data.draw(st.integers(min_value=0, max_value=5000))
    # Random grants rarely hit the chosen pair, so half the time grant it directly (to the
    # agent or its role, on the operation or its connector) and let the policies decide.
    if data.draw(st.integers(0, 3)):
        grantee = data.draw(st.sampled_from([agent, agent.role]))
        granted.append((("direct", grantee), data.draw(st.sampled_from([operation, world["erp"]]))))
    if data.draw(st.booleans()):
        texts.append("permit (principal, action, resource);")
    with transaction.atomic():
        for (_kind, grantee), target in granted:
            grant_rules.grant(target=target, to=grantee)
        Policy.objects.bulk_create(
            Policy(name=f"p{i}", text=t, enabled=True) for i, t in enumerate(texts)
        )
        PolicyStoreState.objects.update_or_create(pk=1, defaults={"version": secrets.randbits(62)})
        Agent.objects.filter(pk=agent.pk).update(status=status)
        fresh = Agent.objects.select_related("role__group", "business_unit", "service_user").get(
            pk=agent.pk
        )
        records_before = AuditRecord.objects.filter(kind="action_decision").count()
        action, _ = actions.action_request(
            agent=fresh, operation_key=operation.key, params={"amount": amount}
        )
        check(fresh, operation, action, amount, records_before)
        transaction.set_rollback(True)


PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY_SETTINGS
@given(data=st.data())
def test_never_allowed_without_a_grant_and_a_permit(world, data):
    def check(agent, operation, action, amount, _):
        if action.verdict == "deny":
            return
        assert has_grant(agent, operation)
        full = engine.evaluate_unsliced(agent=agent, operation=operation, context={
            "params": {"amount": amount}, "amount": amount, "risk_score": action.risk_score,
            "hour": 10, "weekday": 3, "flags": []})  # fmt: skip
        assert full.allowed and full.permits

    run_example(world, data, check)


@PROPERTY_SETTINGS
@given(data=st.data())
def test_a_matching_forbid_always_wins(world, data):
    def check(agent, operation, action, amount, _):
        full = engine.evaluate_unsliced(agent=agent, operation=operation, context={
            "params": {"amount": amount}, "amount": amount, "risk_score": action.risk_score,
            "hour": 10, "weekday": 3, "flags": []})  # fmt: skip
        if full.forbids:
            assert action.verdict == "deny"
            if agent.status == AgentStatus.ACTIVE:
                assert "policy_forbid" in [r["code"] for r in action.reasons]

    run_example(world, data, check)


@PROPERTY_SETTINGS
@given(data=st.data())
def test_inactive_agents_are_always_denied_and_every_decision_is_audited_once(world, data):
    def check(agent, operation, action, amount, records_before):
        if agent.status != AgentStatus.ACTIVE:
            assert action.verdict == "deny"
            # every status but active has its stable code (a pending registration included)
            assert action.reasons[0]["code"] == gate.STATUS_CODES[agent.status]
        assert AuditRecord.objects.filter(kind="action_decision").count() == records_before + 1
        assert AuditRecord.objects.filter(kind="action_decision", action_id=action.pk).count() == 1
        assert ActionRequest.objects.filter(pk=action.pk).exists()

    run_example(world, data, check)


@PROPERTY_SETTINGS
@given(data=st.data())
def test_a_revoked_credential_is_always_denied(world, data):
    agent = data.draw(st.sampled_from(world["agents"]))
    with transaction.atomic():
        credential, _ = agent_services.credential_issue(agent=agent)
        agent_services.credential_revoke(credential=credential)
        credential.refresh_from_db()
        grant_rules.grant(target=world["erp"], to=agent)
        Policy.objects.create(
            name="all", text="permit (principal, action, resource);", enabled=True
        )
        PolicyStoreState.objects.update_or_create(pk=1, defaults={"version": secrets.randbits(62)})
        action, _ = actions.action_request(
            agent=agent,
            operation_key=data.draw(st.sampled_from(world["ops"])).key,
            params={},
            credential=credential,
        )
        assert action.verdict == "deny"
        assert [r["code"] for r in action.reasons] == ["credential_revoked"]
        transaction.set_rollback(True)
