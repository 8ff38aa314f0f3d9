"""The action-gate benchmark: what one decision costs, and what the gate costs a request.

    python -m tests.bench.gate [--agents-small 100 --agents-large 10000
                                --policies-small 10 --policies-large 1000
                                --rounds 800 --series 7 --requests 1000] [--json PATH]

(each size also from ``BENCH_GATE_<NAME>``, e.g. ``BENCH_GATE_ROUNDS``). Everything runs in
this one process, on throwaway databases on one server, in this order:

1. A registry: 10 business units, 40 roles, 20 connectors with 10 operations each, and the
   measured agent, registered through ``agent_register`` with a role grant through
   ``autonomy.services.grant`` and a token from ``credential_issue``. The other agents are
   bulk-inserted with everything registration would give them (service user, group
   membership, owner object permissions, a credential; one in ten a direct grant).
   1,000 policies spread over roles, agents, units, operations and connectors, validated
   against the generated schema, bulk-inserted, the store version bumped.
2. A copy of that database on the same server, grown to 10,000 agents.
3. In alternating series: (a) ``gate.decide`` on one request with 100 agents and 10, then
   1,000 enabled policies (toggled, one version bump each way), and with 10,000 agents and
   1,000 policies; (c) raw ``cedarpy.is_authorized`` over all 1,000 policies on the very
   entities and context the engine built for that request, the policy set parsed once.
4. (b) at 10,000 agents, requests/s of ``POST /api/v1/actions/`` and of a baseline endpoint
   (agent-token authentication and one INSERT, ``tests.bench.baseline``), same token, same
   client, in alternating blocks. ``gate_throughput_ratio`` is the median, over the pairs of
   neighbouring blocks, of baseline time / gate time per request: a burst of load from
   elsewhere on the machine lands in one block and moves one pair, not the figure (on a
   shared 2-core VM the pooled ratio of total times swung 0.46-0.55 between runs of the
   same code). The pooled ratio is printed too (``gate_throughput_ratio_pooled``), and the
   pairs as a ``#`` line.

The databases are SQLite files in a temporary directory, or, when ``DATABASE_URL`` names a
PostgreSQL server, fresh databases on it (created here, dropped at the end). ``DEBUG`` is
off (no query log), as in production.

Celery: allowed actions are published after commit (``autonomy.dispatch``). The bench points
``CELERY_BROKER_URL`` at kombu's in-process ``memory://`` transport (override with
``BENCH_CELERY_BROKER_URL``) with ``CELERY_TASK_ALWAYS_EAGER`` off: the publish is measured,
nothing executes, and no broker's network or disk latency is charged to the gate.

Each figure is printed as ``name: value``; ``--json`` also writes them to a file.
"""

import argparse
import gc
import json
import os
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit

from tests.bench.common import pct

REQUIRED = (
    "gate_throughput_ratio",
    "decision_p99_growth",
    "decision_vs_cedarpy",
    "decision_policy_growth",
)

UNITS = [
    "finance", "procurement", "hr", "customer-ops", "it",
    "legal", "sales", "marketing", "operations", "security",
]  # fmt: skip
NAMED_ROLES = [
    "invoice-processor", "payments-clerk", "po-buyer", "supplier-onboarder", "hr-assistant",
    "support-agent", "onboarding-agent", "incident-triager", "access-provisioner",
    "contract-reviewer", "data-analyst",
]  # fmt: skip
ROLE_COUNT = 40
CONNECTORS = [
    ("erp", "erp"), ("crm", "crm"), ("itsm", "itsm"), ("hris", "http"), ("bank", "http"),
    ("warehouse", "sql"), ("mail", "email"), ("docs", "http"), ("ticketing", "itsm"),
    ("payroll", "http"), ("sourcing", "http"), ("contracts", "http"), ("identity", "http"),
    ("cmdb", "itsm"), ("billing", "erp"), ("tax", "http"), ("expenses", "erp"),
    ("treasury", "http"), ("analytics", "sql"), ("chat", "mcp"),
]  # fmt: skip
PII_CONNECTORS = {"crm", "hris", "payroll", "identity", "mail", "chat"}
RESTRICTED_CONNECTORS = {"bank", "treasury", "payroll"}

INVOICE = {
    "type": "object",
    "properties": {"invoice_id": {"type": "string"}, "amount": {"type": "number", "minimum": 0}},
    "required": ["invoice_id", "amount"],
    "additionalProperties": False,
}
PAYMENT = {
    "type": "object",
    "properties": {"payee": {"type": "string"}, "amount": {"type": "number", "minimum": 0}},
    "required": ["payee", "amount"],
}
RECORD = {"type": "object", "properties": {"record_id": {"type": "string"}}}
QUERY = {
    "type": "object",
    "properties": {"query": {"type": "string"}, "limit": {"type": "integer", "minimum": 1}},
}
MESSAGE = {
    "type": "object",
    "properties": {"to": {"type": "string"}, "subject": {"type": "string"}},
}
# slug: effect, sensitivity, financial, params schema, amount param, count param
OPERATIONS = {
    "post-invoice": ("write", 2, True, INVOICE, "amount", ""),
    "read-invoice": ("read", 1, True, RECORD, "", ""),
    "search": ("read", 1, False, QUERY, "", "limit"),
    "read-record": ("read", 1, False, RECORD, "", ""),
    "update-record": ("write", 3, False, RECORD, "", ""),
    "delete-record": ("delete", 4, False, RECORD, "", ""),
    "export": ("read", 3, False, QUERY, "", "limit"),
    "send-message": ("write", 2, False, MESSAGE, "", ""),
    "create-payment": ("write", 5, True, PAYMENT, "amount", ""),
    "close-period": ("write", 4, True, RECORD, "", ""),
}

MEASURED_OPERATION = "erp.post-invoice"
MEASURED_AMOUNT = 1250  # risk ≈ 30 with the operation above: allowed, below approval (50)
ACTION = 'action == Action::"invoke"'
BATCH = 2000
SERIES_WARMUP = 50


@dataclass
class Sizes:
    agents_small: int = 100
    agents_large: int = 10_000
    policies_small: int = 10
    policies_large: int = 1_000
    rounds: int = 800  # per series
    series: int = 7
    requests: int = 2_000
    warmup: int = 300
    blocks: int = 40


@dataclass
class World:
    units: dict
    roles: list
    owners: list
    operations: list
    agent_ids: list[str]  # drawn up front, so policies can name agents created later
    agent_pk: uuid.UUID | None = None
    credential_pk: uuid.UUID | None = None
    token: str = ""
    operation_pk: int = 0
    created: int = 0


def emit(figures: dict, name: str, value) -> None:
    figures[name] = value
    print(f"{name}: {value}", flush=True)


def note(text: str) -> None:
    """Context for people, on stderr: stdout carries only ``name: value`` lines."""
    print(f"# {text}", file=sys.stderr, flush=True)


def us(ns: float) -> float:
    return round(ns / 1000, 1)


# --- the throwaway database -----------------------------------------------------------------


def _is_postgres(url: str) -> bool:
    return urlsplit(url).scheme in ("postgres", "postgresql", "pgsql", "psql")


def _libpq(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql", path=f"/{database}"))


SERVER: dict = {"url": "", "created": []}  # the PostgreSQL server and what we made on it


def _admin(url: str):
    import psycopg

    return psycopg.connect(_libpq(url, "postgres"), autocommit=True)


def create_postgres_database(url: str, name: str, template: str = "") -> None:
    with _admin(url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    SERVER["created"].append(name)


def drop_postgres_databases() -> None:
    with _admin(SERVER["url"]) as conn:
        for name in SERVER["created"]:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def configure(tmp: str) -> None:
    """Environment for ``config.settings``, before Django reads it."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["AUTONOMY_DATA_DIR"] = tmp
    os.environ["DEBUG"] = "false"  # no query log: production's cost per query
    os.environ["CELERY_BROKER_URL"] = os.environ.get(
        "BENCH_CELERY_BROKER_URL", "memory://localhost/"
    )
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "false"
    url = os.environ.pop("DATABASE_URL", "")
    if url and _is_postgres(url):
        SERVER["url"] = url
        name = f"autonomy_bench_{os.getpid()}"
        create_postgres_database(url, name)
        os.environ["DATABASE_URL"] = urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    elif url:
        note(f"DATABASE_URL is not PostgreSQL ({urlsplit(url).scheme}): using a temporary SQLite")


def copy_database() -> str:
    """A copy of the current database beside it (same server); returns its NAME."""
    from django.db import connection

    name = connection.settings_dict["NAME"]
    if connection.vendor == "sqlite":
        import sqlite3

        copy = str(name).replace(".sqlite3", "-copy.sqlite3")
        connection.ensure_connection()
        with sqlite3.connect(copy) as target:
            connection.connection.backup(target)
        target.close()
        return copy
    copy = f"{name}_copy"
    connection.close()  # a template database must have no sessions
    create_postgres_database(SERVER["url"], copy, template=name)
    return copy


def use_database(name: str) -> None:
    """Point the default connection at ``name`` (it reconnects on its next query)."""
    from django.db import connection

    if connection.settings_dict["NAME"] != name:
        connection.close()
        connection.settings_dict["NAME"] = name


# --- the registry ---------------------------------------------------------------------------


def build_world(rng: random.Random, sizes: Sizes) -> World:
    from django.contrib.auth import get_user_model

    from agents import services as agent_services
    from agents.models import Agent, Role
    from autonomy import grants
    from autonomy.models import Connector, DataClass, Operation
    from autonomy.policy.services import registry_changed

    user_model = get_user_model()
    units = {
        slug: agent_services.business_unit_create(name=slug.replace("-", " ").title(), slug=slug)
        for slug in UNITS
    }
    role_slugs = NAMED_ROLES + [f"role-{n:02d}" for n in range(ROLE_COUNT - len(NAMED_ROLES))]
    roles = [
        agent_services.role_create(name=slug, slug=slug, default_risk_tier=rng.randint(1, 4))
        for slug in role_slugs
    ]
    user_model.objects.bulk_create(
        [user_model(username=f"owner-{n:02d}", email=f"owner{n}@example.com") for n in range(10)]
    )
    owners = list(user_model.objects.filter(username__startswith="owner-").order_by("username"))
    Connector.objects.bulk_create(
        [Connector(slug=slug, name=slug.upper(), kind=kind) for slug, kind in CONNECTORS]
    )
    # this registry's own, not the built-in shared-memory connector every installation has
    connectors = list(Connector.objects.filter(slug__in=dict(CONNECTORS)).order_by("pk"))
    rows = []
    for connector in connectors:
        for slug, (effect, sensitivity, money, schema, amount, count) in OPERATIONS.items():
            data_class = DataClass.INTERNAL
            if connector.slug in PII_CONNECTORS:
                data_class = DataClass.CONFIDENTIAL
            if connector.slug in RESTRICTED_CONNECTORS:
                data_class = DataClass.RESTRICTED
            rows.append(
                Operation(
                    connector=connector, slug=slug, name=slug.replace("-", " ").title(),
                    effect=effect, sensitivity=sensitivity, data_class=data_class,
                    pii=connector.slug in PII_CONNECTORS, financial=money,
                    params_schema=schema, amount_param=amount, count_param=count,
                )
            )  # fmt: skip
    Operation.objects.bulk_create(rows)
    operations = list(Operation.objects.select_related("connector").order_by("pk"))
    # Every role may use its home connector; the grants go through the service.
    for n, role in enumerate(roles):
        grants.grant(target=connectors[n % len(connectors)], to=role)

    world = World(
        units=units,
        roles=roles,
        owners=owners,
        operations=operations,
        agent_ids=[str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(
            max(0, sizes.agents_large - 1)
        )],
    )  # fmt: skip

    processor = Role.objects.get(slug="invoice-processor")
    agent = agent_services.agent_register(
        approved=True,
        name="AP bot",
        slug="ap-bot",
        owner=owners[0],
        business_unit=units["finance"],
        role=processor,
        risk_tier=1,
    )
    # The throughput run asks hundreds of times a minute for a growing total: lift the limits
    # so they do not cut in. They are still checked on every decision.
    Agent.objects.filter(pk=agent.pk).update(
        max_actions_per_minute=10_000_000, max_daily_spend=Decimal("999999999999.00")
    )
    post = next(op for op in operations if op.key == MEASURED_OPERATION)
    grants.grant(target=post, to=processor)
    credential, token = agent_services.credential_issue(agent=agent)
    world.agent_pk, world.credential_pk, world.token = agent.pk, credential.pk, token
    world.operation_pk = post.pk
    registry_changed()
    return world


def add_agents(world: World, rng: random.Random, count: int) -> None:
    """``count`` more agents, with what ``agent_register`` and ``credential_issue`` would
    have written for each, in a handful of bulk INSERTs."""
    if count <= 0:
        return
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType
    from django.db import transaction
    from guardian.models import UserObjectPermission

    from agents.models import Agent, AgentStatus, Credential, Scope
    from autonomy.models import Operation
    from autonomy.policy.services import registry_changed

    user_model = get_user_model()
    start = world.created
    ids = world.agent_ids[start : start + count]
    names = [f"agent-bench-{start + n:05d}" for n in range(len(ids))]
    agent_ct = ContentType.objects.get_for_model(Agent)
    op_ct = ContentType.objects.get_for_model(Operation)
    perms = {
        p.codename: p
        for p in Permission.objects.filter(
            codename__in=["view_agent", "change_agent", "execute_operation"]
        )
    }
    with transaction.atomic():
        user_model.objects.bulk_create(
            [user_model(username=u, password=make_password(None)) for u in names],
            batch_size=BATCH,
        )
        users = dict(user_model.objects.filter(username__in=names).values_list("username", "pk"))
        agents, members, creds, obj_perms = [], [], [], []
        for n, (agent_id, username) in enumerate(zip(ids, names, strict=True)):
            role = world.roles[(start + n) % len(world.roles)]
            unit = world.units[UNITS[(start + n) % len(world.roles) % len(UNITS)]]
            owner = world.owners[(start + n) % len(world.owners)]
            roll = rng.random()
            status = AgentStatus.ACTIVE
            if roll < 0.02:
                status = AgentStatus.PAUSED
            elif roll < 0.03:
                status = AgentStatus.QUARANTINED
            agents.append(
                Agent(
                    id=agent_id, name=f"Bench agent {start + n}", slug=f"bench-{start + n:05d}",
                    owner=owner, business_unit=unit, role=role, status=status,
                    risk_tier=rng.randint(1, 4), service_user_id=users[username],
                )
            )  # fmt: skip
            members.append(
                user_model.groups.through(user_id=users[username], group_id=role.group_id)
            )
            creds.append(
                Credential(
                    agent_id=agent_id,
                    prefix=secrets.token_hex(6),
                    token_hash=secrets.token_hex(32),
                    scopes=[s.value for s in Scope],
                )
            )
            for codename in ("view_agent", "change_agent"):
                obj_perms.append(
                    UserObjectPermission(
                        user_id=owner.pk, permission=perms[codename],
                        content_type=agent_ct, object_pk=agent_id,
                    )
                )  # fmt: skip
            if n % 10 == 0:
                obj_perms.append(
                    UserObjectPermission(
                        user_id=users[username], permission=perms["execute_operation"],
                        content_type=op_ct, object_pk=str(rng.choice(world.operations).pk),
                    )
                )  # fmt: skip
        Agent.objects.bulk_create(agents, batch_size=BATCH)
        user_model.groups.through.objects.bulk_create(members, batch_size=BATCH)
        Credential.objects.bulk_create(creds, batch_size=BATCH)
        UserObjectPermission.objects.bulk_create(obj_perms, batch_size=BATCH)
        registry_changed()
    world.created += len(ids)
    if Agent.objects.count() != world.created + 1:
        raise SystemExit("the bulk-inserted agents are not all there")
    _analyze()


def _analyze() -> None:
    """On PostgreSQL, what autovacuum would soon do after a bulk load; SQLite never gathers
    statistics by itself, so it is left as a deployment would leave it."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


# --- policies -------------------------------------------------------------------------------


def core_policies(world: World, measured_agent: str) -> list[tuple[str, str]]:
    """Ten hand-written policies an organisation would start with; one permits the request."""
    return [
        ("ap-posts-invoices", f"""permit (principal in Role::"invoice-processor", {ACTION},
  resource in Connector::"erp") when {{ context.risk_score < 60 }};"""),
        ("no-high-risk", f"""forbid (principal, {ACTION}, resource)
  when {{ context.risk_score >= 90 }};"""),
        ("no-exfiltration", f"""forbid (principal, {ACTION}, resource)
  when {{ context.flags.contains("exfiltration") }};"""),
        ("finance-large-amounts", f"""@approval("required")
permit (principal in BusinessUnit::"finance", {ACTION}, resource in Connector::"erp")
  when {{ context has amount && context.amount > 10000 }};"""),
        ("invoice-ceiling", f"""forbid (principal, {ACTION}, resource == Operation::"erp.post-invoice")
  when {{ context has amount && context.amount > 500000 }};"""),
        ("analysts-read", f"""permit (principal in Role::"data-analyst", {ACTION}, resource)
  when {{ resource.effect == "read" }};"""),
        ("restricted-needs-low-tier", f"""forbid (principal, {ACTION}, resource)
  when {{ resource.data_class == "restricted" && principal.risk_tier >= 3 }};"""),
        ("support-office-hours", f"""permit (principal in Role::"support-agent", {ACTION},
  resource in Connector::"crm") when {{ context.hour >= 7 && context.hour < 19 }};"""),
        ("ap-bot-bulk-reads", f"""forbid (principal == Agent::"{measured_agent}", {ACTION}, resource)
  when {{ context has record_count && context.record_count > 1000 }};"""),
        ("it-service-desk", f"""permit (principal in BusinessUnit::"it", {ACTION},
  resource in Connector::"itsm") unless {{ resource.sensitivity >= 4 }};"""),
    ]  # fmt: skip


# Forbids always carry one clause that is false for the measured request (risk ≈ 30, amount
# 1,250, sensitivity 2, internal data, no flags): they are evaluated, they do not deny it.
FORBID_GUARDS = [
    lambda r: f"context.risk_score >= {r.randint(70, 95)}",
    lambda r: f"context has amount && context.amount > {r.choice([2, 5, 10, 50, 100]) * 10_000}",
    lambda r: f"resource.sensitivity >= {r.randint(4, 5)}",
    lambda r: f'context.flags.contains("{r.choice(["drift", "exfiltration", "after-hours"])}")',
    lambda r: 'resource.data_class == "restricted"',
    lambda r: f"context has record_count && context.record_count > {r.randint(5, 100) * 100}",
]
EXTRA_CLAUSES = [
    lambda r: f"principal.risk_tier >= {r.randint(2, 4)}",
    lambda r: "context.weekday >= 6",
    lambda r: "resource.pii",
    lambda r: f'resource.effect == "{r.choice(["write", "delete"])}"',
    lambda r: f"context.hour < {r.randint(6, 8)} || context.hour >= {r.randint(18, 21)}",
]
PERMIT_CLAUSES = [
    lambda r: f"context.risk_score < {r.randint(40, 80)}",
    lambda r: f"context has amount && context.amount <= {r.randint(1, 100) * 1000}",
    lambda r: f"resource.sensitivity <= {r.randint(1, 4)}",
    lambda r: f"principal.risk_tier <= {r.randint(1, 4)}",
    lambda r: "context.hour >= 7 && context.hour < 19",
    lambda r: 'resource.effect == "read"',
    lambda r: 'context.params has invoice_id && context.params.invoice_id like "INV-*"',
    lambda r: f"context.params has limit && context.params.limit <= {r.randint(1, 50) * 100}",
]


def generated_policy(n: int, world: World, rng: random.Random) -> tuple[str, str]:
    roll = rng.random()
    if roll < 0.45:
        principal = f'principal in Role::"{rng.choice(world.roles).slug}"'
    elif roll < 0.80:
        principal = f'principal == Agent::"{rng.choice(world.agent_ids or [world.agent_pk])}"'
    elif roll < 0.92:
        principal = f'principal in BusinessUnit::"{rng.choice(UNITS)}"'
    else:
        principal = "principal"
    roll = rng.random()
    if roll < 0.50:
        resource = f'resource == Operation::"{rng.choice(world.operations).key}"'
    elif roll < 0.85:
        resource = f'resource in Connector::"{rng.choice(CONNECTORS)[0]}"'
    else:
        resource = "resource"
    roll = rng.random()
    if roll < 0.25:
        effect, kind, annotation = "forbid", "forbid", ""
        clauses = [rng.choice(FORBID_GUARDS)(rng)]
        if rng.random() < 0.5:
            clauses.append(rng.choice(EXTRA_CLAUSES)(rng))
    elif roll < 0.30:
        effect, kind, annotation = "permit", "approval", '@approval("required")\n'
        clauses = [f"context has amount && context.amount > {rng.randint(5, 50) * 1000}"]
    else:
        effect, kind, annotation = "permit", "permit", ""
        clauses = [c(rng) for c in rng.sample(PERMIT_CLAUSES, rng.randint(1, 2))]
    condition = " && ".join(f"({c})" for c in clauses)
    text = f"{annotation}{effect} ({principal}, {ACTION}, {resource})\n  when {{ {condition} }};"
    return f"bench-{n:04d}-{kind}", text


def policy_texts(world: World, rng: random.Random, count: int) -> list[tuple[str, str]]:
    policies = core_policies(world, str(world.agent_pk))
    policies += [generated_policy(n, world, rng) for n in range(len(policies), count)]
    return policies[:count]


def validate_policies(policies: list[tuple[str, str]], rng: random.Random) -> None:
    """All of them against the generated schema in one call, and a sample through the
    engine's own ``validate`` (what ``policy_save`` refuses on)."""
    import cedarpy

    from autonomy.policy import engine

    result = cedarpy.validate_policies("\n".join(t for _, t in policies), engine.store().schema)
    errors = [str(e) for e in result.errors]
    for name, text in rng.sample(policies, min(50, len(policies))):
        errors += [f"{name}: {e}" for e in engine.validate(text)]
    if errors:
        raise SystemExit("generated policies are not valid Cedar:\n" + "\n".join(errors[:20]))


def save_policies(policies: list[tuple[str, str]], *, enabled: bool = True) -> None:
    """Bulk-insert policies and move the store version, as ``policy_save`` would."""
    from django.db import transaction

    from autonomy.models import Policy
    from autonomy.policy.services import registry_changed

    with transaction.atomic():
        Policy.objects.bulk_create(
            [Policy(name=name, text=text, enabled=enabled) for name, text in policies],
            batch_size=BATCH,
        )
        registry_changed()


def set_enabled(names: list[str], enabled: bool) -> None:
    """Switch a batch of policies on or off, as ``policy_set_enabled`` would (one version
    bump for the batch)."""
    from django.db import transaction

    from autonomy.models import Policy
    from autonomy.policy.services import registry_changed

    with transaction.atomic():
        Policy.objects.filter(name__in=names).update(enabled=enabled)
        registry_changed()


# --- (a) decision latency, (c) raw cedarpy ----------------------------------------------------
#
# Timings come in series (``--series`` of ``--rounds`` calls each) and a figure is the median
# over the series of that series' percentile, so a burst of load from another process on
# the machine spoils one series, not the figure. Whatever can be compared at one moment is
# measured in alternating series: 10 and 1,000 enabled policies (toggled, one version bump
# each way), and our decision and raw cedarpy.


def measured_request(world: World):
    """The agent, credential and operation as the API has them: the credential lookup's
    ``select_related`` and ``resolve_operation``."""
    from agents.models import Credential
    from autonomy import actions

    credential = Credential.objects.select_related(
        "agent__service_user", "agent__business_unit", "agent__owner", "agent__role__group"
    ).get(pk=world.credential_pk)
    operation = actions.resolve_operation(key=MEASURED_OPERATION)
    return credential.agent, credential, operation


PARAMS = {"invoice_id": "INV-BENCH-1", "amount": MEASURED_AMOUNT}


def timed(call, rounds: int) -> list[int]:
    gc.collect()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(rounds):
        started = clock()
        call()
        samples.append(clock() - started)
    return samples


def decider(world: World, sizes: Sizes, warmup: int | None = None):
    """``gate.decide`` on the measured request; checked to be allowed after a warm-up."""
    from autonomy import gate
    from autonomy.models import Verdict

    agent, credential, operation = measured_request(world)

    def decide():
        return gate.decide(agent=agent, operation=operation, params=PARAMS, credential=credential)

    def warm(rounds: int) -> None:
        for _ in range(rounds):
            decision = decide()
        if decision.verdict != Verdict.ALLOW:
            raise SystemExit(f"the measured request is not allowed: {decision.reasons}")

    warm(sizes.warmup if warmup is None else warmup)
    return decide


def raw_cedarpy(world: World, figures: dict):
    """``cedarpy.is_authorized`` alone over every enabled policy, parsed once, on the entity
    set and context the engine built for the measured request."""
    import cedarpy

    from autonomy import gate
    from autonomy.models import Policy
    from autonomy.policy import engine

    agent, credential, operation = measured_request(world)
    captured = {}
    original = engine.evaluate

    def spy(**kwargs):
        captured.update(kwargs)
        return original(**kwargs)

    engine.evaluate = spy
    try:
        gate.decide(agent=agent, operation=operation, params=PARAMS, credential=credential)
    finally:
        engine.evaluate = original
    inputs = engine.cedar_inputs(agent=agent, operation=operation, context=captured["context"])
    request, entities = inputs.request, inputs.entities
    texts = Policy.objects.filter(enabled=True).order_by("pk").values_list("text", flat=True)
    policy_set = cedarpy.PolicySet.from_str("\n".join(texts))
    emit(figures, "policy_statements_total", inputs.statements_total)
    emit(figures, "policy_statements_evaluated", inputs.statements_evaluated)
    answer = cedarpy.is_authorized(request, policy_set, entities)
    if not answer.allowed:
        raise SystemExit(f"raw cedarpy disagrees with the gate: {answer.diagnostics.errors}")
    return lambda: cedarpy.is_authorized(request, policy_set, entities)


def summary(series: list[list[int]]) -> tuple[float, float]:
    """(p50, p99) in ns: the median over the series of each series' percentile."""
    return (
        statistics.median(pct(s, 0.50) for s in series),
        statistics.median(pct(s, 0.99) for s in series),
    )


def report(figures: dict, prefix: str, series: list[list[int]]) -> tuple[float, float]:
    p50, p99 = summary(series)
    emit(figures, f"{prefix}_p50_us", us(p50))
    emit(figures, f"{prefix}_p99_us", us(p99))
    note(f"{prefix} p50 per series (us): {[us(pct(s, 0.50)) for s in series]}")
    note(f"{prefix} p99 per series (us): {[us(pct(s, 0.99)) for s in series]}")
    return p50, p99


def paired_growth(grown: list[list[int]], base: list[list[int]], name: str) -> float:
    """Median over the series of p99(grown) / p99(base), the pair measured side by side."""
    ratios = [pct(g, 0.99) / pct(b, 0.99) for g, b in zip(grown, base, strict=True)]
    note(f"{name} per series: " + ", ".join(f"{r:.3f}" for r in ratios))
    return statistics.median(ratios)


# --- (b) throughput -------------------------------------------------------------------------


def throughput(world: World, sizes: Sizes) -> tuple[float, float]:
    """Requests/s of POST /api/v1/actions/ and of the baseline, in alternating blocks."""
    from django.test import Client, override_settings

    from tests.bench.urls import BASELINE_PATH

    per_block = max(1, sizes.requests // sizes.blocks)
    counter = iter(range(10**9))

    def gate_body() -> str:
        return json.dumps(
            {
                "operation": MEASURED_OPERATION,
                "params": {"invoice_id": f"INV-{next(counter):07d}", "amount": MEASURED_AMOUNT},
                "reason": "monthly close",
            }
        )

    baseline_body = json.dumps({"operation_id": world.operation_pk})
    elapsed = {"gate": 0, "baseline": 0}
    done = {"gate": 0, "baseline": 0}
    pairs: list[float] = []  # per block pair: baseline ms per request / gate ms per request
    with override_settings(ROOT_URLCONF="tests.bench.urls"):
        client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {world.token}")

        def run(kind: str, n: int, timed: bool) -> int:
            path = "/api/v1/actions/" if kind == "gate" else BASELINE_PATH
            bodies = [gate_body() if kind == "gate" else baseline_body for _ in range(n)]
            responses = []
            gc.collect()
            started = time.perf_counter_ns()
            for body in bodies:
                responses.append(client.post(path, data=body, content_type="application/json"))
            took = time.perf_counter_ns() - started
            for response in responses:
                if response.status_code != 201:
                    raise SystemExit(f"{path} answered {response.status_code}: {response.content}")
                if kind == "gate" and response.json()["decision"] != "allow":
                    raise SystemExit(f"the gate did not allow: {response.json()['reasons']}")
            if timed:
                elapsed[kind] += took
                done[kind] += n
            return took

        for kind in ("gate", "baseline"):
            run(kind, min(50, per_block), timed=False)
        for _ in range(sizes.blocks):
            gate_ns = run("gate", per_block, timed=True)
            baseline_ns = run("baseline", per_block, timed=True)
            pairs.append(baseline_ns / gate_ns)
    note("gate throughput ratio per block pair: " + ", ".join(f"{r:.3f}" for r in pairs))
    return (
        done["gate"] / (elapsed["gate"] / 1e9),
        done["baseline"] / (elapsed["baseline"] / 1e9),
        statistics.median(pairs),
    )


# --- the run --------------------------------------------------------------------------------


def bench(sizes: Sizes) -> dict:
    from django.core.management import call_command
    from django.db import connection

    rng = random.Random(20260101)
    figures: dict = {}
    call_command("migrate", verbosity=0)
    note(
        f"gate bench: {connection.vendor} database, Celery broker "
        f"{os.environ['CELERY_BROKER_URL']} (publish only, nothing executes), DEBUG off"
    )
    world = build_world(rng, sizes)
    add_agents(world, rng, sizes.agents_small - 1)
    policies = policy_texts(world, rng, sizes.policies_large)
    validate_policies(policies, rng)
    for name in ("agents_small", "agents_large", "policies_small", "policies_large", "rounds",
                 "series", "requests"):  # fmt: skip
        emit(figures, f"bench_{name}", getattr(sizes, name))

    # Two registries on the same server: the 100-agent one and a copy of it grown to 10,000
    # agents. Series alternate between them (and between 10 and 1,000 enabled policies in
    # the first), so a change in the machine's load between measurements cannot pass for
    # growth.
    core = policies[: sizes.policies_small]
    rest = [name for name, _ in policies[sizes.policies_small :]]
    save_policies(core)
    save_policies(policies[sizes.policies_small :], enabled=False)
    small = connection.settings_dict["NAME"]
    large = copy_database()
    use_database(large)
    set_enabled(rest, True)
    add_agents(world, rng, sizes.agents_large - sizes.agents_small)
    decider(world, sizes)
    use_database(small)
    set_enabled(rest, True)
    cedar = raw_cedarpy(world, figures)
    for _ in range(sizes.warmup):
        cedar()
    decider(world, sizes)  # the first warm-up, at 100 agents and 1,000 policies
    # This process now serves requests as a web process does: freeze what it built to start,
    # as config.wsgi does there. Unfrozen, the 10,000 agents and 1,000 policies built above
    # made each full garbage collection take up to 0.2 s, landing in one timing or another.
    from autonomy.process import freeze_startup_objects

    freeze_startup_objects()
    few, many, raw, grown = [], [], [], []

    def at_100_agents(samples: list, enabled: bool) -> None:
        use_database(small)
        set_enabled(rest, enabled)
        decide = decider(world, sizes, SERIES_WARMUP)
        samples.append(timed(decide, sizes.rounds))

    def at_10000_agents() -> None:
        use_database(large)
        decide = decider(world, sizes, SERIES_WARMUP)
        grown.append(timed(decide, sizes.rounds))

    steps = [
        lambda: at_100_agents(few, False),
        lambda: at_100_agents(many, True),
        at_10000_agents,
        lambda: raw.append(timed(cedar, sizes.rounds)),
    ]
    for series in range(sizes.series):
        # Forwards in even series, backwards in odd ones: each compared pair (10 and 1,000
        # policies; 100 and 10,000 agents) is measured side by side, and neither side is
        # always the one that runs later, after a switch of database or after raw cedarpy.
        for step in steps if series % 2 == 0 else steps[::-1]:
            step()
    _, p99_few = report(figures, "decision_10_policies", few)
    ours_p50, p99_small = report(figures, "decision_1000_policies", many)
    cedar_p50, _ = report(figures, "cedarpy_1000_policies", raw)
    _, p99_large = report(figures, "decision_10000_agents", grown)
    # Growth figures: the median over the series of each series' ratio of p99s, measured
    # side by side (a slow minute on the machine moves both sides of a ratio), beside the
    # ratio of the medians.
    agent_growth = paired_growth(grown, many, "decision_p99_growth")
    policy_growth = paired_growth(many, few, "decision_policy_growth")

    # (b) the API, at 10,000 agents and 1,000 policies.
    use_database(large)
    gate_rps, baseline_rps, paired = throughput(world, sizes)
    emit(figures, "gate_requests_per_s", round(gate_rps, 1))
    emit(figures, "baseline_requests_per_s", round(baseline_rps, 1))
    emit(figures, "gate_throughput_ratio_pooled", round(gate_rps / baseline_rps, 3))

    emit(figures, "gate_throughput_ratio", round(paired, 3))
    emit(figures, "decision_p99_growth_unpaired", round(p99_large / p99_small, 3))
    emit(figures, "decision_p99_growth", round(agent_growth, 3))
    # Medians: the ratio of typical costs. Our decision includes its database reads and
    # Python; cedarpy only evaluates 1,000 already-parsed policies on ready entities.
    emit(figures, "decision_vs_cedarpy", round(ours_p50 / cedar_p50, 3))
    emit(figures, "decision_policy_growth_unpaired", round(p99_small / p99_few, 3))
    emit(figures, "decision_policy_growth", round(policy_growth, 3))
    return figures


def parse_args(argv) -> tuple[Sizes, str | None]:
    defaults = Sizes()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("agents_small", "agents_large", "policies_small", "policies_large", "rounds",
                 "series", "requests", "warmup", "blocks"):  # fmt: skip
        env = os.environ.get(f"BENCH_GATE_{name.upper()}")
        default = int(env) if env else getattr(defaults, name)
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=default)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    sizes = Sizes(**{k: v for k, v in vars(args).items() if k != "json"})
    if not 1 <= sizes.agents_small <= sizes.agents_large:
        parser.error("need 1 <= agents-small <= agents-large")
    if not 1 <= sizes.policies_small <= sizes.policies_large:
        parser.error("need 1 <= policies-small <= policies-large")
    return sizes, args.json


def main(argv=None) -> int:
    sizes, json_path = parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="autonomy-gate-bench-")
    try:
        configure(tmp)
        import django

        django.setup()
        figures = bench(sizes)
    finally:
        if SERVER["created"]:
            from django.db import connections

            connections.close_all()
            drop_postgres_databases()
        shutil.rmtree(tmp, ignore_errors=True)
    if json_path:
        with open(json_path, "w") as out:
            json.dump(figures, out, indent=2, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
