"""A small world for workflow tests: a finance unit, two roles of agents, ERP operations
with grants and a baseline permit, and templates built through the import service."""

from dataclasses import dataclass, field

from agents import services as agent_services
from agents.models import Agent, Role
from autonomy import grants
from autonomy.models import Connector, ConnectorKind, DataClass, Effect, Operation, Policy
from autonomy.policy import services as policy_services
from tests.factories import BusinessUnitFactory, UserFactory, make_role
from workflows import authoring
from workflows.models import Template

BASELINE = 'permit (principal, action == Action::"invoke", resource);'
AMOUNT_SCHEMA = {"type": "object", "properties": {"amount": {"type": "number"}}}


@dataclass
class World:
    officer: object
    clerks: Role
    seniors: Role
    agents: list[Agent]
    seniors_agents: list[Agent]
    erp: Connector
    ops: dict[str, Operation] = field(default_factory=dict)


def build_world(*, clerks: int = 2, latency_ms: int = 0) -> World:
    officer = UserFactory(username="wf-officer", is_staff=True, is_superuser=True)
    unit = BusinessUnitFactory(slug="finance", name="Finance")
    clerk_role = make_role("wf-clerk")
    senior_role = make_role("wf-senior")
    agents = [
        agent_services.agent_register(
            approved=True, name=f"Clerk {i}", slug=f"clerk-{i}", owner=officer, business_unit=unit,
            role=clerk_role, risk_tier=1,
        )
        for i in range(clerks)
    ]  # fmt: skip
    seniors = [
        agent_services.agent_register(
            approved=True,
            name="Senior", slug="senior-1", owner=officer, business_unit=unit, role=senior_role,
            risk_tier=1,
        )
    ]  # fmt: skip
    erp = Connector.objects.create(
        slug="erp", name="ERP", kind=ConnectorKind.ERP, config={"latency_ms": latency_ms}
    )
    ops = {}
    for slug, effect, financial in [
        ("extract", Effect.READ, False), ("match-po", Effect.READ, False),
        ("post-invoice", Effect.WRITE, True), ("void-invoice", Effect.WRITE, True),
        ("notify", Effect.WRITE, False), ("senior-only", Effect.WRITE, False),
    ]:  # fmt: skip
        ops[slug] = Operation.objects.create(
            connector=erp, slug=slug, name=slug.replace("-", " ").title(), effect=effect,
            sensitivity=1, data_class=DataClass.INTERNAL, financial=financial,
            params_schema=AMOUNT_SCHEMA, amount_param="amount" if financial else "",
        )  # fmt: skip
        if slug != "senior-only":
            grants.grant(target=ops[slug], to=clerk_role)
        grants.grant(target=ops[slug], to=senior_role)
    policy_services.registry_changed()
    if not Policy.objects.filter(name="baseline").exists():
        policy_services.policy_save(name="baseline", text=BASELINE, enabled=True, by=officer)
    return World(officer, clerk_role, senior_role, agents, seniors, erp, ops)


def step(key: str, op: str | None = "extract", *, after=(), role="wf-clerk", **extra) -> dict:
    data = {"key": key, "assignee_role": role, "depends_on": list(after), **extra}
    if op:
        data["operation"] = f"erp.{op}"
    else:
        data["kind"] = "task"
    return data


def published(key: str, steps: list[dict], **extra) -> Template:
    template = authoring.template_from_dict(data={"key": key, "name": key.title(), "steps": steps,
                                                  **extra})  # fmt: skip
    return authoring.template_publish(template=template)


def chain(key: str, steps: int, **extra: dict) -> Template:
    """A published linear template s0 -> s1 -> ...; ``extra``: further fields of a step, by
    its key (``s1={"run_when": ...}``)."""
    keys = [f"s{n}" for n in range(steps)]
    return published(
        key, [step(k, after=keys[n - 1 : n], **extra.get(k, {})) for n, k in enumerate(keys)]
    )


def diamond(key: str = "diamond") -> Template:
    return published(
        key,
        [
            step("a", input_map={"amount": "$.amount"}),
            step("b", "match-po", after=["a"], input_map={"amount": "$.amount"}),
            step("c", "notify", after=["a"]),
            step("d", "post-invoice", after=["b", "c"], input_map={"amount": "$.amount"},
                 compensation_operation="erp.void-invoice",
                 compensation_input_map={"amount": "$.amount"}),
        ],
    )  # fmt: skip
