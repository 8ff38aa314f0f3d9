"""Cedar policies: the generated schema, decisions, validation, the admin, caching, slicing."""

from dataclasses import dataclass

import cedarpy
import pytest
from django.urls import reverse
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agents.models import Agent
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import Connector, ConnectorKind, Operation, Policy, PolicyStoreState
from autonomy.policy import engine, services
from autonomy.policy.schema import build_schema
from tests.factories import BusinessUnitFactory, UserFactory, make_agent, make_role

pytestmark = pytest.mark.django_db

PAY_PARAMS = {
    "type": "object",
    "properties": {
        "amount": {"type": "integer"},
        "currency": {"type": "string"},
        "urgent": {"type": "boolean"},
        "ref": {"type": "string"},
    },
}
READ_PARAMS = {
    "type": "object",
    "properties": {
        "amount": {"type": "number"},
        "ref": {"type": "integer"},
        "limit": {"type": ["integer", "null"]},
        "filters": {"type": "object"},
    },
}


@dataclass
class Fleet:
    clerk: object
    auditor: object
    erp: Connector
    pay: Operation
    read: Operation
    ticket: Operation
    by: object


def ctx(**overrides) -> dict:
    return {"params": {}, "risk_score": 10, "hour": 10, "weekday": 2, "flags": [], **overrides}


@pytest.fixture
def fleet(db) -> Fleet:
    by = UserFactory(username="policy-author")
    finance = BusinessUnitFactory(slug="finance", name="Finance")
    audit = BusinessUnitFactory(slug="audit", name="Audit")
    clerk = make_agent(slug="clerk-bot", business_unit=finance, role=make_role("clerk"))
    auditor = make_agent(slug="audit-bot", business_unit=audit, role=make_role("auditor"))
    erp = Connector.objects.create(slug="erp", name="ERP", kind=ConnectorKind.ERP)
    itsm = Connector.objects.create(slug="itsm", name="ITSM", kind=ConnectorKind.ITSM)
    pay = Operation.objects.create(
        connector=erp, slug="pay", name="Pay", sensitivity=4, financial=True,
        params_schema=PAY_PARAMS, amount_param="amount",
    )  # fmt: skip
    read = Operation.objects.create(
        connector=erp, slug="read", name="Read", sensitivity=1, params_schema=READ_PARAMS
    )
    ticket = Operation.objects.create(connector=itsm, slug="ticket", name="Ticket", sensitivity=2)
    services.registry_changed()
    return Fleet(clerk, auditor, erp, pay, read, ticket, by)


def save(fleet: Fleet, name: str, text: str, *, enabled: bool = True) -> Policy:
    return services.policy_save(name=name, text=text, enabled=enabled, by=fleet.by)


# --- the schema ----------------------------------------------------------------------------


def test_schema_params_are_the_union_of_operation_parameters_without_conflicting_names(fleet):
    context = build_schema()[""]["actions"]["invoke"]["appliesTo"]["context"]
    params = context["attributes"]["params"]["attributes"]
    # the built-in shared-memory operations are in every registry (``autonomy.memory``)
    memory = {"key": "String", "prefix": "String", "scope": "String", "sensitivity": "String",
              "ttl_seconds": "Long"}  # fmt: skip
    assert params == {
        "amount": {"type": "Long", "required": False},
        "currency": {"type": "String", "required": False},
        "urgent": {"type": "Boolean", "required": False},
        "limit": {"type": "Long", "required": False},
        **{name: {"type": cedar, "required": False} for name, cedar in memory.items()},
    }  # "ref" is a string in one operation and an integer in another; "filters" has no scalar
    # "value" (memory.write) has no type at all, so no scalar either


def test_schema_describes_the_registry_entities_and_is_accepted_by_cedar(fleet):
    schema = build_schema()
    types = schema[""]["entityTypes"]
    assert types["Agent"]["memberOfTypes"] == ["Role", "BusinessUnit"]
    assert types["Operation"]["memberOfTypes"] == ["Connector"]
    assert types["Operation"]["shape"]["attributes"]["pii"] == {"type": "Boolean"}
    context = schema[""]["actions"]["invoke"]["appliesTo"]["context"]["attributes"]
    assert context["amount"] == {"type": "Long", "required": False}
    assert context["flags"] == {"type": "Set", "element": {"type": "String"}}
    assert "Agent" in str(cedarpy.Schema.from_json_str(__import__("json").dumps(schema)))


# --- decisions -----------------------------------------------------------------------------


def test_nothing_is_allowed_without_a_permit(fleet):
    result = engine.evaluate(agent=fleet.clerk, operation=fleet.pay, context=ctx())
    assert not result.allowed and result.permits == [] and result.forbids == []


def test_a_matching_permit_allows_and_names_the_policy(fleet):
    policy = save(fleet, "clerks pay", 'permit(principal in Role::"clerk", action, resource);')
    result = engine.evaluate(agent=fleet.clerk, operation=fleet.pay, context=ctx())
    assert result.allowed
    assert result.permits == [
        {"policy_id": policy.pk, "policy": "clerks pay", "version": 1, "statement": 0}
    ]
    other = engine.evaluate(agent=fleet.auditor, operation=fleet.pay, context=ctx())
    assert not other.allowed


def test_a_matching_forbid_wins_over_any_permit(fleet):
    save(fleet, "everyone", "permit(principal, action, resource);")
    forbid = save(
        fleet,
        "big payments",
        "permit(principal, action, resource) when { context.risk_score < 0 };\n"
        'forbid(principal, action, resource in Connector::"erp") when '
        "{ context.params has amount && context.params.amount > 1000 };",
    )
    denied = engine.evaluate(
        agent=fleet.clerk, operation=fleet.pay, context=ctx(params={"amount": 5000})
    )
    assert not denied.allowed and denied.permits == []
    assert denied.forbids == [
        {"policy_id": forbid.pk, "policy": "big payments", "version": 1, "statement": 1}
    ]
    small = engine.evaluate(
        agent=fleet.clerk, operation=fleet.pay, context=ctx(params={"amount": 5})
    )
    assert small.allowed and small.forbids == []


def test_a_permit_annotated_approval_required_asks_for_approval(fleet):
    save(
        fleet,
        "pay with approval",
        '@approval("required")\npermit(principal, action, resource == Operation::"erp.pay");',
    )
    save(fleet, "read freely", 'permit(principal, action, resource == Operation::"erp.read");')
    pay = engine.evaluate(agent=fleet.clerk, operation=fleet.pay, context=ctx())
    read = engine.evaluate(agent=fleet.clerk, operation=fleet.read, context=ctx())
    assert pay.allowed and pay.approval_required
    assert read.allowed and not read.approval_required


def test_conditions_see_agent_operation_and_context_attributes(fleet):
    save(
        fleet,
        "conditions",
        'permit(principal, action, resource) when { principal.status == "active" && '
        'principal.business_unit == BusinessUnit::"finance" && resource.sensitivity >= 4 && '
        'resource.connector.kind == "erp" && resource.financial && context.flags.isEmpty() };',
    )
    assert engine.evaluate(agent=fleet.clerk, operation=fleet.pay, context=ctx()).allowed
    flagged = ctx(flags=["drift"])
    assert not engine.evaluate(agent=fleet.clerk, operation=fleet.pay, context=flagged).allowed
    assert not engine.evaluate(agent=fleet.auditor, operation=fleet.pay, context=ctx()).allowed
    assert not engine.evaluate(agent=fleet.clerk, operation=fleet.read, context=ctx()).allowed


def test_a_mistyped_parameter_denies_instead_of_slipping_past_a_forbid(fleet):
    save(fleet, "everyone", "permit(principal, action, resource);")
    save(
        fleet,
        "cap",
        "forbid(principal, action, resource) when "
        "{ context.params has amount && context.params.amount > 1000 };",
    )
    result = engine.evaluate(
        agent=fleet.clerk, operation=fleet.ticket, context=ctx(params={"amount": "lots"})
    )
    assert not result.allowed
    assert result.errors == ["context.params.amount must be a Long"]


def test_a_draft_is_simulated_without_being_saved_and_can_replace_a_policy(fleet):
    strict = save(fleet, "strict", "forbid(principal, action, resource);")
    save(fleet, "everyone", "permit(principal, action, resource);")
    args = {"agent": fleet.clerk, "operation": fleet.pay, "context": ctx()}
    assert not engine.evaluate(**args).allowed
    draft = "forbid(principal, action, resource) when { principal.risk_tier > 3 };"
    simulated = engine.evaluate(**args, draft_text=draft, draft_replaces=strict.pk)
    assert simulated.allowed
    added = engine.evaluate(
        **args, draft_text='@approval("required") permit(principal, action, resource);'
    )
    assert not added.allowed  # the enabled forbid still applies
    assert Policy.objects.count() == 2
    broken = engine.evaluate(**args, draft_text="permit(")
    assert not broken.allowed and broken.errors


def test_an_enabled_policy_that_no_longer_compiles_fails_closed(fleet):
    save(fleet, "everyone", "permit(principal, action, resource);")
    Policy.objects.filter(name="everyone").update(text="forbid(principal, action")
    services.registry_changed()
    result = engine.evaluate(agent=fleet.clerk, operation=fleet.pay, context=ctx())
    assert not result.allowed
    assert "'everyone' does not compile" in result.errors[0]


# --- validation and saving -----------------------------------------------------------------


def test_validate_reports_a_syntax_error(fleet):
    errors = engine.validate("permit(principal, action, resource) whn { true };")
    assert errors and "whn" in errors[0]


def test_validate_reports_unknown_attributes_and_entity_types_from_the_schema(fleet):
    attribute = engine.validate("permit(principal, action, resource) when { principal.mood == 1 };")
    entity = engine.validate('permit(principal in Team::"x", action, resource);')
    param = engine.validate(
        "permit(principal, action, resource) when { context.params.nope == 1 };"
    )
    assert any("attribute `mood`" in e for e in attribute)
    assert any("unrecognized entity type `Team`" in e for e in entity)
    assert param  # an undeclared parameter cannot be read
    assert engine.validate('permit(principal in Role::"clerk", action, resource);') == []


def test_validate_refuses_templates_and_empty_text(fleet):
    assert "Templates" in engine.validate("permit(principal == ?principal, action, resource);")[0]
    assert engine.validate("// nothing here") == [
        "A policy needs at least one permit or forbid statement."
    ]


def test_an_invalid_policy_is_refused_and_nothing_is_saved(fleet):
    before = PolicyStoreState.current()
    with pytest.raises(DomainError) as refused:
        save(fleet, "bad", "permit(principal, action, resource) when { resource.colour };")
    assert refused.value.code == ErrorCode.VALIDATION_FAILED
    assert "colour" in refused.value.details["fields"]["text"][0]
    assert not Policy.objects.exists()
    assert PolicyStoreState.current() == before


def test_saving_moves_the_store_version_and_each_recorded_change_moves_the_policy_version(fleet):
    before = PolicyStoreState.current()
    policy = save(fleet, "p", "permit(principal, action, resource);")
    assert policy.version == 1 and policy.author == fleet.by
    assert PolicyStoreState.current() > before
    same = services.policy_save(
        policy=policy, name="p", text=policy.text, enabled=True, by=fleet.by
    )
    assert same.version == 1  # nothing changed: no new version
    described = services.policy_save(
        policy=policy, name="p", text=policy.text, description="why", enabled=True, by=fleet.by
    )
    assert described.version == 2
    changed = services.policy_save(
        policy=policy, name="p", text="forbid(principal, action, resource);", enabled=True,
        by=fleet.by,
    )  # fmt: skip
    assert changed.version == 3
    assert Policy.objects.get().version == 3


def test_a_missing_store_row_is_tolerated_and_recreated_by_the_next_save(fleet):
    PolicyStoreState.objects.all().delete()
    assert not engine.evaluate(agent=fleet.clerk, operation=fleet.pay, context=ctx()).allowed
    save(fleet, "everyone", "permit(principal, action, resource);")
    assert PolicyStoreState.current() > 0
    assert engine.evaluate(agent=fleet.clerk, operation=fleet.pay, context=ctx()).allowed


def test_a_duplicate_name_is_a_conflict(fleet):
    save(fleet, "p", "permit(principal, action, resource);")
    with pytest.raises(DomainError) as refused:
        save(fleet, "p", "forbid(principal, action, resource);")
    assert refused.value.code == ErrorCode.CONFLICT


# --- cache invalidation --------------------------------------------------------------------


def test_the_next_evaluate_obeys_a_newly_enabled_policy(fleet):
    args = {"agent": fleet.clerk, "operation": fleet.pay, "context": ctx()}
    save(fleet, "everyone", "permit(principal, action, resource);")
    assert engine.evaluate(**args).allowed
    block_text = f'forbid(principal == Agent::"{fleet.clerk.pk}", action, resource);'
    block = save(fleet, "block", block_text, enabled=False)
    assert engine.evaluate(**args).allowed
    services.policy_set_enabled(policy=block, enabled=True, by=fleet.by)
    assert not engine.evaluate(**args).allowed
    services.policy_set_enabled(policy=block, enabled=False, by=fleet.by)
    assert engine.evaluate(**args).allowed
    services.policy_delete(policy=Policy.objects.get(name="everyone"), by=fleet.by)
    assert not engine.evaluate(**args).allowed


def test_enabling_revalidates_against_the_registry_as_it_is_now(fleet):
    text = 'permit(principal, action, resource) when { context.params.currency == "EUR" };'
    policy = save(fleet, "currency", text.replace("{ ", "{ context.params has currency && "))
    services.policy_set_enabled(policy=policy, enabled=False, by=fleet.by)
    fleet.pay.params_schema = {"properties": {"currency": {"type": "integer"}}}
    fleet.pay.save()
    services.registry_changed()
    with pytest.raises(DomainError):
        services.policy_set_enabled(policy=policy, enabled=True, by=fleet.by)
    assert not Policy.objects.get().enabled


def test_a_registry_change_is_seen_by_the_next_validation(fleet):
    text = 'permit(principal, action, resource) when { context.params.region == "eu" };'
    assert engine.validate(text)
    fleet.ticket.params_schema = {"properties": {"region": {"type": "string"}}}
    fleet.ticket.save()
    services.registry_changed()
    assert engine.validate(text.replace("{ ", "{ context.params has region && ")) == []


def _bulk_policies(fleet: Fleet, count: int) -> None:
    """Policies spread over many roles, agents and operations, like a real estate of them."""
    texts = []
    for i in range(count):
        if i % 3 == 0:
            texts.append(f'permit(principal in Role::"role-{i}", action, resource);')
        elif i % 3 == 1:
            texts.append(
                f'forbid(principal == Agent::"{i:08d}-0000-0000-0000-000000000000", action, '
                f'resource == Operation::"erp.op-{i}");'
            )
        else:
            texts.append(
                f'permit(principal, action, resource == Operation::"erp.op-{i}") '
                f"when {{ context.risk_score < {i % 100} }};"
            )
    Policy.objects.bulk_create(
        Policy(name=f"bulk-{i}", text=text, enabled=True) for i, text in enumerate(texts)
    )
    save(fleet, "clerks pay", 'permit(principal in Role::"clerk", action, resource);')


@pytest.mark.parametrize("count", [10, 1000])
def test_evaluate_makes_one_query_however_many_policies(
    fleet, count, django_assert_max_num_queries
):
    _bulk_policies(fleet, count)
    args = {"agent": fleet.clerk, "operation": fleet.pay, "context": ctx()}
    with django_assert_max_num_queries(3):  # a cold compile: version, policies, operations
        assert engine.evaluate(**args).allowed
    fresh = {  # nothing related loaded: the engine must not fetch role, unit or connector
        "agent": Agent.objects.get(pk=fleet.clerk.pk),
        "operation": Operation.objects.get(pk=fleet.pay.pk),
        "context": ctx(),
    }
    for call in (args, args, fresh):
        with django_assert_max_num_queries(1):  # the store version (and slugs, if not loaded)
            result = engine.evaluate(**call)
        assert result.allowed and result.evaluated == 1


# --- the admin ------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client, fleet):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def test_the_admin_refuses_an_invalid_policy_and_shows_the_cedar_error(admin_client):
    before = PolicyStoreState.current()
    response = admin_client.post(
        reverse("admin:autonomy_policy_add"),
        {"name": "bad", "text": "permit(principal, action, resource) when { principal.mood };"},
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["text"]
    assert "attribute `mood`" in response.content.decode()
    assert not Policy.objects.exists()
    assert PolicyStoreState.current() == before


def test_the_admin_saves_a_valid_policy_through_the_service(admin_client):
    before = PolicyStoreState.current()
    response = admin_client.post(
        reverse("admin:autonomy_policy_add"),
        {"name": "ok", "text": "permit(principal, action, resource);", "enabled": "on"},
    )
    assert response.status_code == 302
    policy = Policy.objects.get()
    assert policy.enabled and policy.version == 1 and policy.author.username == "root"
    assert PolicyStoreState.current() > before
    admin_client.post(
        reverse("admin:autonomy_policy_change", args=[policy.pk]),
        {"name": "ok", "text": "forbid(principal, action, resource);", "enabled": "on"},
    )
    assert Policy.objects.get().version == 2


def test_the_admin_disable_action_goes_through_the_service(admin_client, fleet):
    policy = save(fleet, "everyone", "permit(principal, action, resource);")
    admin_client.post(
        reverse("admin:autonomy_policy_changelist"),
        {"action": "disable_policies", "_selected_action": [policy.pk]},
    )
    assert not Policy.objects.get().enabled
    assert not engine.evaluate(agent=fleet.clerk, operation=fleet.pay, context=ctx()).allowed


def test_the_admin_shows_the_generated_schema_linked_from_the_changelist(admin_client):
    url = reverse("admin:autonomy_policy_schema")
    assert url in admin_client.get(reverse("admin:autonomy_policy_changelist")).content.decode()
    page = admin_client.get(url).content.decode()
    assert "&quot;memberOfTypes&quot;" in page and "&quot;currency&quot;" in page


# --- properties of the engine ---------------------------------------------------------------

ROLES, UNITS = ["clerk", "auditor", "buyer"], ["finance", "audit"]
CONNECTORS = {"erp": ["pay", "read"], "itsm": ["ticket"]}
OP_SENSITIVITY = {"erp.pay": 4, "erp.read": 1, "itsm.ticket": 2}
AGENTS = [  # slug, role, unit, risk tier
    ("a-clerk", "clerk", "finance", 1),
    ("a-clerk2", "clerk", "audit", 3),
    ("a-auditor", "auditor", "audit", 2),
    ("a-buyer", "buyer", "finance", 4),
]


@pytest.fixture
def estate(db) -> dict:
    """A fixed registry for the property tests; each example varies policies and request."""
    units = {slug: BusinessUnitFactory(slug=slug, name=slug.title()) for slug in UNITS}
    roles = {slug: make_role(slug) for slug in ROLES}
    agents = {
        slug: make_agent(slug=slug, role=roles[role], business_unit=units[unit], risk_tier=tier)
        for slug, role, unit, tier in AGENTS
    }
    operations = {}
    for connector_slug, ops in CONNECTORS.items():
        connector = Connector.objects.create(slug=connector_slug, name=connector_slug, kind="erp")
        for op in ops:
            key = f"{connector_slug}.{op}"
            operations[key] = Operation.objects.create(
                connector=connector, slug=op, name=op, sensitivity=OP_SENSITIVITY[key],
                params_schema={"properties": {"amount": {"type": "integer"}}},
            )  # fmt: skip
    agents = {  # as the gate loads them
        slug: type(a).objects.select_related("role", "business_unit").get(pk=a.pk)
        for slug, a in agents.items()
    }
    return {"agents": agents, "operations": operations, "by": UserFactory(username="prop")}


@dataclass(frozen=True)
class Clause:
    effect: str
    principal: tuple  # ("all",) | ("agent", slug) | ("role", slug) | ("unit", slug)
    resource: tuple  # ("all",) | ("op", key) | ("connector", slug)
    condition: tuple | None  # (subject, operator, number)
    approval: bool

    def text(self, agent_ids: dict) -> str:
        principal = {
            "all": lambda: "principal",
            "agent": lambda: f'principal == Agent::"{agent_ids.get(self.principal[1], "nobody")}"',
            "role": lambda: f'principal in Role::"{self.principal[1]}"',
            "unit": lambda: f'principal in BusinessUnit::"{self.principal[1]}"',
        }[self.principal[0]]()
        resource = {
            "all": lambda: "resource",
            "op": lambda: f'resource == Operation::"{self.resource[1]}"',
            "connector": lambda: f'resource in Connector::"{self.resource[1]}"',
        }[self.resource[0]]()
        text = f"{self.effect}({principal}, action, {resource})"
        if self.condition:
            subject, operator, number = self.condition
            guard = "context.params has amount && " if subject == "context.params.amount" else ""
            text += f" when {{ {guard}{subject} {operator} {number} }}"
        return ('@approval("required")\n' if self.approval else "") + text + ";"

    def matches(self, agent: tuple, op_key: str, context: dict) -> bool:
        slug, role, unit, tier = agent
        kind, *value = self.principal
        if kind != "all" and value[0] != {"agent": slug, "role": role, "unit": unit}[kind]:
            return False
        kind, *value = self.resource
        if kind != "all" and value[0] != {"op": op_key, "connector": op_key.split(".")[0]}[kind]:
            return False
        if self.condition is None:
            return True
        subject, operator, number = self.condition
        actual = {
            "context.risk_score": context["risk_score"],
            "resource.sensitivity": OP_SENSITIVITY[op_key],
            "principal.risk_tier": tier,
            "context.params.amount": context["params"].get("amount"),
        }[subject]
        if actual is None:
            return False
        return {"<": actual < number, ">": actual > number, ">=": actual >= number,
                "<=": actual <= number, "==": actual == number}[operator]  # fmt: skip


OP_KEYS = list(OP_SENSITIVITY)
clauses = st.builds(
    Clause,
    effect=st.sampled_from(["permit", "permit", "forbid"]),
    principal=st.one_of(
        st.just(("all",)),
        st.sampled_from([("agent", a[0]) for a in AGENTS] + [("agent", "ghost")]),
        st.sampled_from([("role", r) for r in ROLES + ["nobody"]]),
        st.sampled_from([("unit", u) for u in UNITS]),
    ),
    resource=st.one_of(
        st.just(("all",)),
        st.sampled_from([("op", k) for k in OP_KEYS + ["erp.gone"]]),
        st.sampled_from([("connector", c) for c in CONNECTORS]),
    ),
    condition=st.one_of(
        st.none(),
        st.tuples(
            st.sampled_from(
                [
                    "context.risk_score",
                    "resource.sensitivity",
                    "principal.risk_tier",
                    "context.params.amount",
                ]
            ),
            st.sampled_from(["<", ">", ">=", "<=", "=="]),
            st.integers(0, 100),
        ),
    ),
    approval=st.booleans(),
)
policies = st.lists(st.lists(clauses, min_size=1, max_size=3), min_size=0, max_size=10)
requests = st.tuples(
    st.sampled_from(AGENTS),
    st.sampled_from(OP_KEYS),
    st.integers(0, 100),
    st.one_of(st.none(), st.integers(0, 100)),
)
PROPERTY = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _install(estate: dict, policy_clauses: list[list[Clause]]) -> list[tuple[Policy, list]]:
    agent_ids = {slug: str(agent.pk) for slug, agent in estate["agents"].items()}
    Policy.objects.all().delete()
    rows = Policy.objects.bulk_create(
        Policy(name=f"p{i}", text="\n".join(c.text(agent_ids) for c in group), enabled=True)
        for i, group in enumerate(policy_clauses)
    )
    services.registry_changed()
    return [(row, group) for row, group in zip(rows, policy_clauses, strict=True)]


def _decide(estate: dict, request: tuple, **simulate):
    agent, op_key, risk, amount = request
    context = ctx(risk_score=risk, params={} if amount is None else {"amount": amount})
    args = {
        "agent": estate["agents"][agent[0]],
        "operation": estate["operations"][op_key],
        "context": context,
        **simulate,
    }
    return engine.evaluate(**args), engine.evaluate_unsliced(**args), context


def _expected(installed, request: tuple, context: dict) -> tuple[list, list]:
    agent, op_key = request[0], request[1]
    permits, forbids = [], []
    for policy, group in installed:
        for number, clause in enumerate(group):
            if clause.matches(agent, op_key, context):
                ref = {
                    "policy_id": policy.pk,
                    "policy": policy.name,
                    "version": policy.version,
                    "statement": number,
                }
                (permits if clause.effect == "permit" else forbids).append(ref)
    return permits, forbids


@PROPERTY
@given(
    policy_clauses=policies,
    request_list=st.lists(requests, min_size=1, max_size=4),
    draft=st.one_of(st.none(), st.tuples(st.lists(clauses, min_size=1, max_size=2), st.booleans())),
)
def test_slicing_never_changes_a_decision(estate, policy_clauses, request_list, draft):
    installed = _install(estate, policy_clauses)
    simulate = {}
    if draft is not None:  # a simulated draft, replacing the first enabled policy or not
        agent_ids = {slug: str(agent.pk) for slug, agent in estate["agents"].items()}
        group, replaces = draft
        simulate["draft_text"] = "\n".join(c.text(agent_ids) for c in group)
        if replaces and installed:
            simulate["draft_replaces"] = installed[0][0].pk
    for request in request_list:
        sliced, whole, _ = _decide(estate, request, **simulate)
        assert (sliced.allowed, sliced.permits, sliced.forbids) == (
            whole.allowed,
            whole.permits,
            whole.forbids,
        )
        assert sliced.approval_required == whole.approval_required
        assert sliced.errors == whole.errors == []
        assert sliced.evaluated <= whole.evaluated


@PROPERTY
@given(policy_clauses=policies, request_list=st.lists(requests, min_size=1, max_size=4))
def test_any_matching_forbid_denies_and_no_permit_means_deny(estate, policy_clauses, request_list):
    installed = _install(estate, policy_clauses)
    for request in request_list:
        result, _, context = _decide(estate, request)
        permits, forbids = _expected(installed, request, context)
        event("forbidden" if forbids else "permitted" if permits else "no permit")
        if forbids:
            assert not result.allowed and result.forbids == forbids
        if not permits:
            assert not result.allowed
        assert result.allowed == (bool(permits) and not forbids)
        if result.allowed:
            assert result.permits == permits


@settings(PROPERTY, max_examples=30)
@given(clause_group=st.lists(clauses, min_size=1, max_size=3))
def test_every_statement_of_the_grammar_validates_against_the_schema(estate, clause_group):
    ids = {slug: str(agent.pk) for slug, agent in estate["agents"].items()}
    assert engine.validate("\n".join(c.text(ids) for c in clause_group)) == []
