"""Evaluates enabled Cedar policies for one agent and one operation, fast.

Enabled policies are compiled per policy-store version into single statements, each filed in
a slicing index by its scope: principal (everyone / an agent / a role / a business unit) ×
resource (anything / an operation / a connector). A request evaluates only the statements in
its 4 × 3 buckets. Leaving a statement out is safe only when its scope can never match, and
the entity graph we send (agent ∈ role, agent ∈ business unit, operation ∈ connector, nothing
else) guarantees exactly that; any scope not understood lands in an always-evaluated bucket.

Caches: the compiled store (statements, index, parameter types, parsed schema) and its
slice → PolicySet map are per version; underneath, statement splitting, PolicySets and
entity sets are keyed by their own content, so a registry-only bump recompiles in
milliseconds and nothing cached can describe a changed policy or agent.

Per decision the database is asked one thing: the store version (plus, in the same query,
any slug the caller's objects lack). Policies are validated against the generated schema
when saved, so authorization runs without a schema (cheaper, and Cedar's closed records
would refuse parameters no policy reads); the context is type-checked here instead, so a
wrongly typed value denies rather than dodging a forbid.
"""

import functools
import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import cedarpy
from django.db import connection

from agents.models import BusinessUnit, Role
from autonomy.models import Connector, Operation, Policy, PolicyStoreState
from autonomy.policy.schema import ACTION, params_types, schema_for
from autonomy.policy.versioned import PerVersion

log = logging.getLogger(__name__)

SLICE_CACHE_SIZE = 4096
SPLIT_CACHE_SIZE = 16384
ENTITY_CACHE_SIZE = 8192
APPROVAL_ANNOTATION = "approval"

EVERYONE = ("*",)
ANYTHING = ("*",)
ACTION_UID = {"type": "Action", "id": ACTION}
LONG_RANGE = (-(2**63), 2**63 - 1)
_POSITIONAL_ID = re.compile(r"`?policy(\d+)`?")
_VALIDATION_PREFIX = re.compile(r"^for policy `policy(\d+)`, ")


@dataclass(frozen=True)
class Statement:
    """One Cedar statement of a stored (or draft) policy, with where it came from."""

    policy_id: int | None
    policy: str
    number: int
    effect: str
    annotations: dict
    text: str
    principal_key: tuple
    resource_key: tuple
    version: int | None = None  # the stored policy's version (``PolicyVersion.number``)

    def ref(self) -> dict:
        return {
            "policy_id": self.policy_id,
            "policy": self.policy,
            "version": self.version,
            "statement": self.number,
        }

    def label(self) -> str:
        return f"policy {self.policy!r} statement {self.number}"


@dataclass
class PolicyResult:
    allowed: bool = False
    permits: list[dict] = field(default_factory=list)
    forbids: list[dict] = field(default_factory=list)
    approval_required: bool = False
    errors: list[str] = field(default_factory=list)
    evaluated: int = 0
    # Beside the enabled policies' answer: each variant's (``evaluate(variants=...)``).
    variants: list["PolicyResult"] = field(default_factory=list)
    # A variant that raised (its ``errors`` say what); never the enabled policies' answer.
    failed: bool = False


# --- compiling -----------------------------------------------------------------------------


def _entity_of(constraint: dict) -> tuple[str, str] | None:
    entity = constraint.get("entity")
    if entity is None and isinstance(constraint.get("in"), dict):
        entity = constraint["in"].get("entity")
    if not isinstance(entity, dict):
        return None
    entity = entity.get("__entity", entity)
    return entity.get("type"), entity.get("id")


def principal_key(scope: dict) -> tuple:
    """The bucket a principal scope needs the agent to be in; EVERYONE when unsure."""
    op, entity = scope.get("op"), _entity_of(scope)
    if op not in ("==", "in", "is") or entity is None:
        return EVERYONE
    kind, ident = entity
    if kind == "Agent":
        return ("agent", ident)
    if op != "==" and kind == "Role":
        return ("role", ident)
    if op != "==" and kind == "BusinessUnit":
        return ("unit", ident)
    return EVERYONE


def resource_key(scope: dict) -> tuple:
    """The bucket a resource scope needs the operation to be in; ANYTHING when unsure."""
    op, entity = scope.get("op"), _entity_of(scope)
    if op not in ("==", "in", "is") or entity is None:
        return ANYTHING
    kind, ident = entity
    if kind == "Operation":
        return ("operation", ident)
    if op != "==" and kind == "Connector":
        return ("connector", ident)
    return ANYTHING


def split(
    text: str, *, policy_id: int | None, policy: str, version: int | None = None
) -> list[Statement]:
    """Cut a policy text into statements. Raises ValueError on parse errors and templates."""
    document = json.loads(cedarpy.policies_to_json_str(text))
    if document.get("templates"):
        raise ValueError(
            "Templates (?principal / ?resource slots) are not supported: name the entity."
        )
    statics = document.get("staticPolicies") or {}
    ordered = [est for _, est in sorted(statics.items(), key=lambda item: _position(item[0]))]
    return [
        Statement(
            policy_id=policy_id,
            policy=policy,
            number=number,
            effect=est["effect"],
            annotations=dict(est.get("annotations") or {}),
            # One statement per text, so positional ids in a slice map back by position.
            text=text if len(ordered) == 1 else _statement_text(est),
            principal_key=principal_key(est.get("principal") or {}),
            resource_key=resource_key(est.get("resource") or {}),
            version=version,
        )
        for number, est in enumerate(ordered)
    ]


def _position(policy_id: str) -> int:
    digits = re.sub(r"\D", "", policy_id)
    return int(digits) if digits else 0


def _statement_text(est: dict) -> str:
    single = {"staticPolicies": {"policy0": est}, "templates": {}, "templateLinks": []}
    return cedarpy.policies_from_json_str(json.dumps(single))


@functools.lru_cache(maxsize=SPLIT_CACHE_SIZE)
def _split_stored(pk: int, name: str, text: str, version: int) -> tuple[Statement, ...]:
    """Content-keyed, so a store version bump recompiles only the policies that changed."""
    return tuple(split(text, policy_id=pk, policy=name, version=version))


@functools.lru_cache(maxsize=SLICE_CACHE_SIZE)
def _policy_set(texts: tuple[str, ...]) -> cedarpy.PolicySet:
    """Content-keyed: a slice whose statements did not change survives a version bump."""
    return cedarpy.PolicySet.from_str("\n".join(texts))


def _index(statements: Iterable[Statement]) -> dict[tuple, tuple[int, ...]]:
    buckets: dict[tuple, list[int]] = {}
    for position, statement in enumerate(statements):
        buckets.setdefault((statement.principal_key, statement.resource_key), []).append(position)
    return {key: tuple(positions) for key, positions in buckets.items()}


class StatementSet:
    """Statements filed in the slicing index by scope, each slice's PolicySet built once: the
    enabled store (``CompiledStore``) or a trial's draft of it (``CompiledStore.with_drafts``).
    """

    def __init__(self, statements: Iterable[Statement], broken: dict[int, str]):
        self.statements = tuple(statements)
        self.broken = broken
        self.index = _index(self.statements)
        self.policy_set = functools.lru_cache(maxsize=SLICE_CACHE_SIZE)(self._policy_set)

    def _policy_set(self, positions: tuple[int, ...]) -> cedarpy.PolicySet:
        return _policy_set(tuple(self.statements[i].text for i in positions))

    def slice(self, buckets: tuple[tuple, tuple]) -> tuple[int, ...]:
        principals, resources = buckets
        get = self.index.get
        found = [i for p in principals for r in resources for i in get((p, r), ())]
        found.sort()
        return tuple(found)


class CompiledStore(StatementSet):
    """Everything derived from one policy-store version. Replaced whole when it moves.

    Two queries: enabled policies and operations' parameter schemas (for context checks and
    the validation schema)."""

    def __init__(self, version: int):
        self.version = version
        statements: list[Statement] = []
        broken: dict[int, str] = {}
        for pk, name, text, number in (
            Policy.objects.filter(enabled=True)
            .order_by("pk")
            .values_list("pk", "name", "text", "version")
        ):
            try:
                statements.extend(_split_stored(pk, name, text, number))
            except ValueError as exc:
                broken[pk] = f"Enabled policy {name!r} does not compile: {exc}"
        super().__init__(statements, broken)
        self.params = params_types(Operation.objects.values_list("params_schema", flat=True))
        self._schema = None

    @property
    def schema(self) -> cedarpy.Schema:
        if self._schema is None:
            self._schema = cedarpy.Schema.from_json_str(json.dumps(schema_for(self.params)))
        return self._schema

    def with_drafts(
        self, *, drafts: Iterable[tuple[int | None, str, str]], replaces: set[int] | None
    ) -> StatementSet:
        """This store with draft policies ``(replaced policy id or None, name, text)`` in
        place of the enabled policies ``replaces`` (every enabled policy for None: a whole
        draft set). Raises ValueError when a draft does not compile."""
        if replaces is None:
            kept, broken = [], {}
        else:
            kept = [s for s in self.statements if s.policy_id not in replaces]
            broken = {pk: msg for pk, msg in self.broken.items() if pk not in replaces}
        for policy_id, name, text in drafts:
            kept.extend(split(text, policy_id=policy_id, policy=name))
        return StatementSet(kept, broken)


_compiled = PerVersion(CompiledStore)


def _quoted(model) -> tuple[str, str]:
    quote = connection.ops.quote_name
    return quote(model._meta.db_table), quote(model._meta.pk.column)


def _read(selects: list[str], params: list, version: int | None = None) -> tuple:
    """The store version plus any extra scalar sub-selects, in one round trip. Raw SQL: this
    runs on every decision and the ORM's query building costs more than the query (~10x on
    SQLite, ~2.5x on PostgreSQL, measured). A ``version`` the caller already read this
    request is used as is: nothing is asked when there is nothing else to ask."""
    if version is not None and not selects:
        return (version,)
    table, pk = _quoted(PolicyStoreState)
    sql = ", ".join([f"(SELECT version FROM {table} WHERE {pk} = 1)", *selects])
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {sql}", params)
        row = cursor.fetchone()
    return row if version is None else (version, *row[1:])


def compiled_version() -> int | None:
    """The version this process last compiled the store for (never 0), or None: a guess a
    request may start from, as ``selectors.cached_version`` is, confirmed by the gate."""
    return _compiled.version()


def store_version() -> int:
    """The policy-store version, in one query: read it once per request and pass it on."""
    return _read([], [])[0] or 0


def _compiled_for(version: int | None) -> CompiledStore:
    return _compiled.get(version)


def store_for(version: int | None) -> CompiledStore:
    """The compiled store of ``version`` (the one a caller read): a trial's draft is built on
    the same statements the gate decides with."""
    return _compiled_for(version)


def compiled_forget() -> None:
    """Drop this process's compiled store: the next decision compiles for the version it
    reads. For a database whose versions start again (a test database flushed between
    tests); in production the version never repeats, so the cache never needs it."""
    _compiled.forget()


def store() -> CompiledStore:
    """The compiled store for the current version: one query, a compile when it moved."""
    return _compiled_for(store_version())


# --- the request ---------------------------------------------------------------------------


# What an entity needs from related rows: (owner, relation, model, columns).
_RELATED = (
    ("agent", "role", Role, ("slug",)),
    ("agent", "business_unit", BusinessUnit, ("slug",)),
    ("operation", "connector", Connector, ("slug", "kind")),
)


def _load(agent, operation, version: int | None = None) -> tuple[CompiledStore, tuple]:
    """The compiled store and the request's facts in one query: the version, plus the slugs
    of whatever relation the caller did not load (``select_related`` makes it version only;
    with the ``version`` already read this request, no query at all)."""
    owners = {"agent": agent, "operation": operation}
    loaded = [getattr(type(owners[o]), name).is_cached(owners[o]) for o, name, _, _ in _RELATED]
    selects, params = [], []
    for (owner, name, model, columns), is_loaded in zip(_RELATED, loaded, strict=True):
        if not is_loaded:
            table, pk = _quoted(model)
            quote = connection.ops.quote_name
            selects += [f"(SELECT {quote(c)} FROM {table} WHERE {pk} = %s)" for c in columns]
            params += [getattr(owners[owner], f"{name}_id")] * len(columns)
    version, *values = _read(selects, params, version)
    values = iter(values)
    rows = []
    for (owner, name, _, columns), is_loaded in zip(_RELATED, loaded, strict=True):
        row = () if is_loaded else tuple(next(values) for _ in columns)
        if is_loaded or None in row:  # None: the row is gone; the ORM raises DoesNotExist
            related = getattr(owners[owner], name)
            row = tuple(getattr(related, column) for column in columns)
        rows.append(row)
    (role,), (unit,), (connector, kind) = rows
    facts = (
        str(agent.pk),
        agent.status,
        int(agent.risk_tier),
        role,
        unit,
        f"{connector}.{operation.slug}",
        operation.effect,
        int(operation.sensitivity),
        operation.data_class,
        bool(operation.pii),
        bool(operation.financial),
        connector,
        kind,
    )
    return _compiled_for(version), facts


def _ref(kind: str, ident: str) -> dict:
    return {"__entity": {"type": kind, "id": ident}}


def _uid(kind: str, ident: str) -> dict:
    return {"type": kind, "id": ident}


@functools.lru_cache(maxsize=ENTITY_CACHE_SIZE)
def _entities(facts: tuple) -> cedarpy.Entities:
    """Keyed by every attribute it carries, so it can never describe a stale agent."""
    agent, status, tier, role, unit, op, effect, sensitivity, data_class, pii, money, conn, kind = (
        facts
    )
    return cedarpy.Entities.from_json_str(
        json.dumps(
            [
                {
                    "uid": _uid("Agent", agent),
                    "attrs": {
                        "status": status,
                        "risk_tier": tier,
                        "business_unit": _ref("BusinessUnit", unit),
                        "role": _ref("Role", role),
                    },
                    "parents": [_uid("Role", role), _uid("BusinessUnit", unit)],
                },
                {"uid": _uid("Role", role), "attrs": {}, "parents": []},
                {"uid": _uid("BusinessUnit", unit), "attrs": {}, "parents": []},
                {"uid": _uid("Connector", conn), "attrs": {"kind": kind}, "parents": []},
                {
                    "uid": _uid("Operation", op),
                    "attrs": {
                        "connector": _ref("Connector", conn),
                        "effect": effect,
                        "sensitivity": sensitivity,
                        "data_class": data_class,
                        "pii": pii,
                        "financial": money,
                    },
                    "parents": [_uid("Connector", conn)],
                },
            ]
        )
    )


def _buckets(facts: tuple) -> tuple[tuple, tuple]:
    agent, role, unit, op, connector = facts[0], facts[3], facts[4], facts[5], facts[11]
    return (
        (EVERYONE, ("agent", agent), ("role", role), ("unit", unit)),
        (ANYTHING, ("operation", op), ("connector", connector)),
    )


def _is_long(value) -> bool:
    return type(value) is int and LONG_RANGE[0] <= value <= LONG_RANGE[1]


_CHECKS = {
    "Long": _is_long,
    "String": lambda v: type(v) is str,
    "Boolean": lambda v: v is True or v is False,
}


def _context(context: dict, params: dict[str, str]) -> tuple[dict, list[str]]:
    """The context as Cedar takes it, and what in it does not fit the generated schema.

    Absent ``params`` / ``flags`` mean none; a set of flags becomes a list (JSON has no sets).
    """
    errors = []
    for key in ("risk_score", "hour", "weekday"):
        if not _is_long(context.get(key)):
            errors.append(f"context.{key} must be a whole number")
    for key in ("amount", "record_count"):
        if key in context and not _is_long(context[key]):
            errors.append(f"context.{key} must be a whole number when present")
    flags, given = context.get("flags", []), context.get("params", {})
    if isinstance(flags, set | frozenset | tuple):
        flags = sorted(flags)
    if flags is not context.get("flags") or given is not context.get("params"):
        context = {**context, "flags": flags, "params": given}
    if not isinstance(flags, list) or not all(type(f) is str for f in flags):
        errors.append("context.flags must be a list of strings")
    if not isinstance(given, dict):
        errors.append("context.params must be an object")
        return context, errors
    for name, value in given.items():
        expected = params.get(name)
        if expected is not None and not _CHECKS[expected](value):
            errors.append(f"context.params.{name} must be a {expected}")
    return context, errors


def _authorize(
    statements: list[Statement], policy_set, facts: tuple, context: dict
) -> PolicyResult:
    if not statements:
        return PolicyResult()
    request = {
        "principal": _uid("Agent", facts[0]),
        "action": ACTION_UID,
        "resource": _uid("Operation", facts[5]),
        "context": context,
    }
    answer = cedarpy.is_authorized(request, policy_set, _entities(facts))
    diagnostics = answer.diagnostics

    def statement(match: re.Match) -> Statement:
        return statements[int(match.group(1))]

    determining = sorted(int(_POSITIONAL_ID.fullmatch(r).group(1)) for r in diagnostics.reasons)
    refs = [statements[i].ref() for i in determining]
    allowed = answer.allowed
    return PolicyResult(
        allowed=allowed,
        permits=refs if allowed else [],
        forbids=[] if allowed else refs,
        approval_required=allowed
        and any(
            statements[i].annotations.get(APPROVAL_ANNOTATION) == "required" for i in determining
        ),
        errors=[
            _POSITIONAL_ID.sub(lambda m: statement(m).label(), error)
            for error in diagnostics.errors
        ],
        evaluated=len(statements),
    )


def _draft(text: str) -> tuple[list[Statement], str | None]:
    try:
        return split(text, policy_id=None, policy="draft"), None
    except ValueError as exc:
        return [], f"The draft policy does not compile: {exc}"


def _on(store: StatementSet, facts: tuple, context: dict) -> PolicyResult:
    """Cedar's answer over ``store``'s statements in this request's slice."""
    broken = list(store.broken.values())
    if broken:  # a policy we cannot read might be a forbid: fail closed
        return PolicyResult(errors=broken)
    positions = store.slice(_buckets(facts))
    statements = [store.statements[i] for i in positions]
    policy_set = store.policy_set(positions) if statements else None
    return _authorize(statements, policy_set, facts, context)


def _variant(store: StatementSet, facts: tuple, context: dict) -> PolicyResult:
    """A trial's answer on the live request's inputs. A trial must never break the live
    decision: whatever it raises is logged and returned as a failed result."""
    try:
        return _on(store, facts, context)
    except Exception as exc:
        log.exception("A policy trial's draft failed to evaluate")
        return PolicyResult(errors=[f"{exc.__class__.__name__}: {exc}"], failed=True)


def _evaluate(
    *, agent, operation, context, draft_text, draft_replaces, sliced: bool, version=None,
    variants=(),
):  # fmt: skip
    compiled, facts = _load(agent, operation, version)
    broken = [msg for pk, msg in compiled.broken.items() if pk != draft_replaces]
    if broken and not variants:  # a policy we cannot read might be a forbid: fail closed
        return PolicyResult(errors=broken)
    context, errors = _context(context, compiled.params)
    if errors:
        return PolicyResult(errors=errors, variants=[PolicyResult(errors=errors) for _ in variants])
    if draft_text is None and sliced:
        result = _on(compiled, facts, context)
        result.variants = [_variant(store, facts, context) for store in variants]
        return result
    if broken:
        return PolicyResult(errors=broken)
    if draft_text is None:
        positions = tuple(range(len(compiled.statements)))
        policy_set = compiled.policy_set(positions) if positions else None
        return _authorize(list(compiled.statements), policy_set, facts, context)

    drafts, error = _draft(draft_text)
    if error:
        return PolicyResult(errors=[error])
    if draft_replaces is not None:
        name = Policy.objects.filter(pk=draft_replaces).values_list("name", flat=True).first()
        drafts = [replace(s, policy_id=draft_replaces, policy=name or "draft") for s in drafts]
    principals, resources = _buckets(facts)
    statements = [
        s
        for s in compiled.statements
        if s.policy_id != draft_replaces
        and (not sliced or (s.principal_key in principals and s.resource_key in resources))
    ] + [
        s
        for s in drafts
        if not sliced or (s.principal_key in principals and s.resource_key in resources)
    ]
    policy_set = _policy_set(tuple(s.text for s in statements)) if statements else None
    return _authorize(statements, policy_set, facts, context)


def evaluate(
    *,
    agent,
    operation,
    context: dict,
    draft_text: str | None = None,
    draft_replaces: int | None = None,
    version: int | None = None,
    variants: Sequence[StatementSet] = (),
) -> PolicyResult:
    """Cedar's decision for ``agent`` invoking ``operation``: forbid wins, default deny.

    ``draft_text`` adds a not-yet-saved policy (simulate), replacing the enabled policy
    ``draft_replaces`` when given. Reads one row per call when nothing changed, none when
    the caller passes the ``version`` it read for this request (``store_version``).
    ``variants`` (log-only trials' statements, ``CompiledStore.with_drafts``; not with a
    draft): each is also asked on the very same entities and context, one Cedar call each,
    its answer in ``result.variants`` in the same order.
    """
    if variants and draft_text is not None:
        raise ValueError("variants are evaluated beside the enabled policies, not a draft")
    return _evaluate(
        agent=agent,
        operation=operation,
        context=context,
        draft_text=draft_text,
        draft_replaces=draft_replaces,
        sliced=True,
        version=version,
        variants=variants,
    )


def evaluate_unsliced(
    *,
    agent,
    operation,
    context: dict,
    draft_text: str | None = None,
    draft_replaces: int | None = None,
) -> PolicyResult:
    """``evaluate`` over every enabled statement: the reference the slicing is checked against."""
    return _evaluate(
        agent=agent,
        operation=operation,
        context=context,
        draft_text=draft_text,
        draft_replaces=draft_replaces,
        sliced=False,
    )


@dataclass(frozen=True)
class CedarInputs:
    """What the engine hands Cedar for one request, for a caller that asks Cedar itself (the
    bench compares the engine with raw ``cedarpy.is_authorized`` on the very same inputs)."""

    request: dict
    entities: object
    statements_total: int
    statements_evaluated: int


def cedar_inputs(*, agent, operation, context: dict) -> CedarInputs:
    """The Cedar request and entities ``evaluate`` builds for this request, and how many of
    the store's statements its slicing keeps."""
    compiled, facts = _load(agent, operation)
    cedar_context, errors = _context(context, compiled.params)
    if errors:
        raise ValueError(f"context does not match the schema: {errors}")
    request = {
        "principal": {"type": "Agent", "id": facts[0]},
        "action": ACTION_UID,
        "resource": {"type": "Operation", "id": facts[5]},
        "context": cedar_context,
    }
    return CedarInputs(
        request=request,
        entities=_entities(facts),
        statements_total=len(compiled.statements),
        statements_evaluated=len(compiled.slice(_buckets(facts))),
    )


def validate(text: str) -> list[str]:
    """Why ``text`` cannot be saved: parse errors, templates, then schema validation errors."""
    try:
        statements = split(text, policy_id=None, policy="")
    except ValueError as exc:
        return [str(exc)]
    if not statements:
        return ["A policy needs at least one permit or forbid statement."]
    result = cedarpy.validate_policies(text, store().schema)
    return [_VALIDATION_PREFIX.sub(r"statement \1: ", e.error) for e in result.errors]
