"""Blueprints and cloning a role's permission model.

A blueprint (``agents.models.Blueprint``) stamps many agents at once and changes them
together. What it sets lives where the gate already reads it: the agents' risk tier and
limits (one UPDATE over all its agents), grants on its role's group (``autonomy.grants``),
policies as ``Policy`` rows written by ``policy_save`` (``{{role}}`` in a blueprint's Cedar
text stands for ``Role::"<slug>"``), and one autonomy setting on its role
(``autonomy.level_settings``). So an update costs the same number of queries for 5 agents
as for 5,000, and the next decision of each agent sees it.

A permission model is what a role may do in a business unit: the role's grants, the policies
that name the role, and the unit's approval and deny thresholds. ``permission_model_plan``
shows what cloning it to another unit (under another role) would change, writing nothing;
``permission_model_clone`` applies exactly that plan, refusing one whose hash no longer
matches (the source or the target moved since the preview).
"""

import hashlib
import json
import re
from decimal import Decimal

from auditlog.context import set_actor
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils.text import slugify

from agents import services
from agents.models import Agent, AgentStatus, Blueprint, BusinessUnit, RiskTier, Role
from autonomy import audit, grants, level_settings
from autonomy import selectors as kernel_selectors
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import AutonomyLevel, Connector, Operation, Policy
from autonomy.policy import engine
from autonomy.policy import services as policy_services

ROLE_PLACEHOLDER = "{{role}}"
THRESHOLDS = ("approval_threshold", "deny_threshold", "dual_control_risk")
FIELDS = (
    "name", "description", "risk_tier", "autonomy_level", "max_actions_per_minute",
    "max_daily_spend", "operations", "policies",
)  # fmt: skip
# Cedar entity uids a clone rewrites: Role::"x" and BusinessUnit::"y".
_ENTITY = re.compile(r'\b(Role|BusinessUnit)\s*::\s*"((?:[^"\\]|\\.)*)"')


def may_manage(*, user) -> bool:
    """IT admins run the registry: they keep blueprints and clone permission models."""
    return (
        bool(getattr(user, "is_authenticated", False) and user.is_active)
        and not hasattr(user, "agent")
        and user.has_perm("agents.add_role")
        and user.has_perm("agents.change_agent")
    )


# --- blueprints: reads ----------------------------------------------------------------------


def blueprint_policy_name(*, blueprint: Blueprint, number: int) -> str:
    return f"Blueprint {blueprint.slug} #{number}"


def blueprint_policy_texts(*, blueprint: Blueprint) -> list[str]:
    """The blueprint's Cedar texts with its role put in for ``{{role}}``."""
    role = f'Role::"{blueprint.role.slug}"'
    return [text.replace(ROLE_PLACEHOLDER, role) for text in blueprint.policies]


def blueprints_export() -> list[dict]:
    """Every blueprint as plain, readable data in a stable order (the bundle's export); what
    ``blueprint_upsert`` reads back."""
    rows = []
    for bp in Blueprint.objects.select_related("role").order_by("slug"):
        rows.append(
            {
                "slug": bp.slug,
                "name": bp.name,
                "description": bp.description,
                "role": bp.role.slug,
                "risk_tier": RiskTier(bp.risk_tier).label.lower(),
                "autonomy_level": bp.autonomy_level,
                "max_actions_per_minute": bp.max_actions_per_minute,
                "max_daily_spend": None if bp.max_daily_spend is None else str(bp.max_daily_spend),
                "operations": sorted(bp.operations),
                "policies": list(bp.policies),
            }
        )
    return rows


# --- blueprints: writes ---------------------------------------------------------------------


def _invalid(message: str, field: str) -> DomainError:
    return DomainError(ErrorCode.VALIDATION_FAILED, message, {"fields": {field: [message]}})


def _checked(values: dict) -> dict:
    """The blueprint's fields, checked and normalised; a bad one raises validation_failed."""
    if "risk_tier" in values:
        tier = values["risk_tier"]
        if isinstance(tier, str) and not tier.isdigit():
            names = {label.lower(): value for value, label in RiskTier.choices}
            tier = names.get(tier.lower())
        if tier is None or int(tier) not in RiskTier.values:
            raise _invalid("Risk tier is one of low, medium, high, critical.", "risk_tier")
        values["risk_tier"] = int(tier)
    if values.get("autonomy_level") not in (None, "", *AutonomyLevel.values):
        raise _invalid(
            f"Autonomy level is one of {', '.join(AutonomyLevel.values)}.", "autonomy_level"
        )
    for field in ("max_actions_per_minute", "max_daily_spend"):
        if field not in values:
            continue
        value = values[field]
        if value in ("", None):
            values[field] = None
            continue
        try:
            number = int(value) if field == "max_actions_per_minute" else Decimal(str(value))
        except (TypeError, ValueError, ArithmeticError):
            raise _invalid("A non-negative number, or empty for the default.", field) from None
        if isinstance(number, Decimal) and not number.is_finite() or number < 0:
            raise _invalid("A non-negative number, or empty for the default.", field)
        values[field] = number
    if "operations" in values:
        values["operations"] = sorted(set(level_settings.check_operations(values["operations"])))
    if "policies" in values:
        texts = values["policies"]
        if not isinstance(texts, list) or not all(isinstance(t, str) and t for t in texts):
            raise _invalid("A list of Cedar texts.", "policies")
    return values


def blueprint_check(*, role: Role | None = None, **values) -> dict:
    """``values`` checked and normalised as create and update would, writing nothing; with
    the ``role``, the policies are validated against the registry too (for forms)."""
    values = _checked(dict(values))
    if role is not None and values.get("policies"):
        entity = f'Role::"{role.slug}"'
        errors = [
            f"policy {number}: {error}"
            for number, text in enumerate(values["policies"], start=1)
            for error in engine.validate(text.replace(ROLE_PLACEHOLDER, entity))
        ]
        if errors:
            raise DomainError(
                ErrorCode.VALIDATION_FAILED,
                "A policy is not valid Cedar for this registry.",
                {"fields": {"policies": errors}},
            )
    return values


def _apply_to_role(*, blueprint: Blueprint, before: dict, by) -> None:
    """Make the role's grants, the blueprint's policies and its autonomy setting what the
    blueprint says: queries in the number of changed grants and policies, never in agents."""
    role = blueprint.role
    old_ops, new_ops = set(before.get("operations", ())), set(blueprint.operations)
    if old_ops != new_ops:
        operations = Operation.objects.select_related("connector").filter(
            pk__in=kernel_selectors.operation_ids(keys=sorted(old_ops | new_ops)).values()
        )
        for operation in operations:
            if operation.key in new_ops - old_ops:  # widening access waits for approval
                services.grant_request(target=operation, to=role, by=by)
            elif operation.key in old_ops - new_ops:
                grants.revoke_grant(target=operation, to=role, by=by)
    stored = {
        p.name: p for p in Policy.objects.filter(name__startswith=f"Blueprint {blueprint.slug} #")
    }
    wanted = {}
    for number, text in enumerate(blueprint_policy_texts(blueprint=blueprint), start=1):
        wanted[blueprint_policy_name(blueprint=blueprint, number=number)] = text
    for name, text in wanted.items():
        policy = stored.get(name)
        if policy is None or policy.text != text or not policy.enabled:
            policy_services.policy_save(
                policy=policy, name=name, text=text, enabled=True, by=by,
                description=f"Kept by blueprint {blueprint.slug}; change the blueprint instead.",
            )  # fmt: skip
    for name in sorted(set(stored) - set(wanted)):
        policy_services.policy_delete(policy=stored[name], by=by)
    setting = blueprint.autonomy_setting
    if setting is not None and setting.level != blueprint.autonomy_level:
        level_settings.setting_delete(setting=setting, by=by)
        setting = None
    if setting is None and blueprint.autonomy_level:
        setting = level_settings.setting_create(
            level=blueprint.autonomy_level, role=role, note=f"blueprint {blueprint.slug}", by=by
        )
    if setting != blueprint.autonomy_setting:
        blueprint.autonomy_setting = setting
        blueprint.save(update_fields=["autonomy_setting", "updated_at"])


def _agents_apply(*, blueprint: Blueprint, agents=None) -> int:
    """One UPDATE: the blueprint's tier and limits on its (or the given) non-retired agents."""
    qs = Agent.objects.filter(blueprint=blueprint) if agents is None else agents
    return qs.exclude(status=AgentStatus.RETIRED).update(
        blueprint=blueprint,
        blueprint_version=blueprint.version,
        risk_tier=blueprint.risk_tier,
        max_actions_per_minute=blueprint.max_actions_per_minute,
        max_daily_spend=blueprint.max_daily_spend,
    )


def blueprint_create(*, slug: str, name: str, role: Role, by, **values) -> Blueprint:
    """A new blueprint, applied to its role at once (grants, policies, level)."""
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise DomainError(
            ErrorCode.UNKNOWN_FIELD, "Unknown blueprint fields.", {"fields": sorted(unknown)}
        )
    values.setdefault("risk_tier", role.default_risk_tier)
    values = _checked(dict(values))
    with transaction.atomic(), set_actor(by):
        if Blueprint.objects.filter(slug=slug).exists():
            raise DomainError(ErrorCode.CONFLICT, f"A blueprint {slug!r} exists.", status_code=409)
        blueprint = Blueprint.objects.create(slug=slug, name=name, role=role, **values)
        _apply_to_role(blueprint=blueprint, before={}, by=by)
        audit.append(
            kind="blueprint_created",
            actor=by.get_username() if by else "",
            payload={"blueprint": slug, "version": 1, "role": role.slug, **_payload(blueprint)},
        )
    return blueprint


def _payload(blueprint: Blueprint) -> dict:
    return {
        "risk_tier": blueprint.risk_tier,
        "autonomy_level": blueprint.autonomy_level,
        "max_actions_per_minute": blueprint.max_actions_per_minute,
        "max_daily_spend": blueprint.max_daily_spend,
        "operations": list(blueprint.operations),
        "policies": len(blueprint.policies),
    }


def _tier_raise_refused() -> DomainError:
    """A riskier tier waits for people agent by agent (``agents.services.agent_update``); a
    blueprint's one UPDATE over all its agents would skip that, so it never raises a tier."""
    message = (
        "A blueprint never raises its agents' risk tier: a riskier tier waits for approval "
        "agent by agent. Lower it here, or raise each agent's tier."
    )
    return DomainError(ErrorCode.VALIDATION_FAILED, message, {"fields": {"risk_tier": [message]}})


def blueprint_update(*, blueprint: Blueprint, by, **changes) -> Blueprint:
    """Change the blueprint and re-apply it to all its agents together: one UPDATE of their
    tier and limits, the role's grants, policies and level, one version bump, one audit
    record naming how many agents changed. The role is fixed (its agents' groups would
    move one by one): make another blueprint for another role."""
    unknown = set(changes) - set(FIELDS)
    if unknown:
        raise DomainError(
            ErrorCode.UNKNOWN_FIELD, "Cannot update these fields.", {"fields": sorted(unknown)}
        )
    changes = _checked(dict(changes))
    with transaction.atomic(), set_actor(by):
        locked = (
            Blueprint.objects.select_for_update(of=("self",))
            .select_related("role", "autonomy_setting")
            .get(pk=blueprint.pk)
        )
        changed = {f: v for f, v in changes.items() if getattr(locked, f) != v}
        if not changed:
            return locked
        if changed.get("risk_tier", 0) > locked.risk_tier:
            raise _tier_raise_refused()
        before = {f: getattr(locked, f) for f in FIELDS}
        for field, value in changed.items():
            setattr(locked, field, value)
        locked.version += 1
        locked.save()
        _apply_to_role(blueprint=locked, before=before, by=by)
        count = _agents_apply(blueprint=locked)
        policy_services.registry_changed()
        audit.append(
            kind="blueprint_updated",
            actor=by.get_username() if by else "",
            payload={
                "blueprint": locked.slug,
                "version": locked.version,
                "agents": count,
                "changed": sorted(changed),
                **_payload(locked),
            },
        )
    return locked


def blueprint_stamp(
    *,
    blueprint: Blueprint,
    business_unit: BusinessUnit,
    owner,
    by,
    names: list[str] | None = None,
    count: int | None = None,
) -> list[Agent]:
    """Register agents from the blueprint: ``names``, or ``count`` numbered after the ones it
    has. Each goes through ``agents.services.agent_register`` (its rules apply to each); the
    blueprint's tier and limits are then set on all of them in one UPDATE."""
    if names is None:
        if not isinstance(count, int) or not 1 <= count <= 500:
            raise _invalid("Stamp between 1 and 500 agents.", "count")
        start = Agent.objects.filter(blueprint=blueprint).count() + 1
        names = [f"{blueprint.name} {n}" for n in range(start, start + count)]
    slugs = [slugify(f"{blueprint.slug} {business_unit.slug} {name}")[:100] for name in names]
    if not names or len(names) > 500 or len(set(slugs)) != len(slugs):
        raise _invalid("Give 1 to 500 distinct agent names.", "names")
    with transaction.atomic(), set_actor(by):
        taken = sorted(Agent.objects.filter(slug__in=slugs).values_list("slug", flat=True))
        if taken:
            raise DomainError(
                ErrorCode.CONFLICT, "Agents with these slugs exist.", {"slugs": taken}, 409
            )
        stamped = [
            services.agent_register(
                name=name,
                slug=slug,
                owner=owner,
                business_unit=business_unit,
                role=blueprint.role,
                risk_tier=blueprint.risk_tier,
                by=by,
                description=f"Stamped from blueprint {blueprint.slug}.",
            )  # fmt: skip
            for name, slug in zip(names, slugs, strict=True)
        ]
        _agents_apply(blueprint=blueprint, agents=Agent.objects.filter(slug__in=slugs))
        policy_services.registry_changed()
        audit.append(
            kind="blueprint_stamped",
            actor=by.get_username() if by else "",
            payload={
                "blueprint": blueprint.slug,
                "version": blueprint.version,
                "business_unit": business_unit.slug,
                "count": len(stamped),
                "agents": slugs,
            },
        )
    return list(Agent.objects.filter(slug__in=slugs).order_by("slug"))


def blueprint_adopt(*, blueprint: Blueprint, agents: QuerySet[Agent], by) -> int:
    """Bring existing agents of the blueprint's role under it (e.g. agents registered before
    it existed): one UPDATE sets its tier, limits and version on them, one audit record.
    Agents of another role are refused: their groups would have to move one by one."""
    agents = Agent.objects.filter(pk__in=agents.values("pk"))
    with transaction.atomic(), set_actor(by):
        strangers = sorted(
            agents.exclude(role_id=blueprint.role_id).values_list("slug", flat=True)[:20]
        )
        if strangers:
            raise DomainError(
                ErrorCode.VALIDATION_FAILED,
                f"Only agents of role {blueprint.role.slug} can follow this blueprint.",
                {"fields": {"agents": strangers}},
            )
        if agents.filter(risk_tier__lt=blueprint.risk_tier).exists():
            raise _tier_raise_refused()
        count = _agents_apply(blueprint=blueprint, agents=agents)
        policy_services.registry_changed()
        audit.append(
            kind="blueprint_adopted",
            actor=by.get_username() if by else "",
            payload={"blueprint": blueprint.slug, "version": blueprint.version, "count": count},
        )
    return count


def blueprint_upsert(data: dict, by) -> Blueprint:
    """Create or update a blueprint from ``blueprints_export``'s shape (the bundle's apply)."""
    data = dict(data)
    slug = data.pop("slug", None)
    role_slug = data.pop("role", None)
    if not slug or not isinstance(slug, str) or slugify(slug) != slug:
        raise _invalid("A blueprint needs a slug.", "slug")
    existing = Blueprint.objects.select_related("role").filter(slug=slug).first()
    if existing is not None:
        if role_slug not in (None, existing.role.slug):
            raise _invalid("A blueprint's role does not change.", "role")
        return blueprint_update(blueprint=existing, by=by, **data)
    role = Role.objects.filter(slug=role_slug).first() if isinstance(role_slug, str) else None
    if role is None:
        raise _invalid(f"No such role: {role_slug!r}.", "role")
    name = data.pop("name", "") or slug
    return blueprint_create(slug=slug, name=name, role=role, by=by, **data)


# --- cloning a permission model -------------------------------------------------------------


def _rewritten(text: str, *, roles: dict[str, str], units: dict[str, str]) -> str:
    def swap(match: re.Match) -> str:
        kind, ident = match.group(1), match.group(2)
        ident = (roles if kind == "Role" else units).get(ident, ident)
        return f'{kind}::"{ident}"'

    return _ENTITY.sub(swap, text)


def _clone_name(name: str, *, role_slug: str, unit_slug: str) -> str:
    suffix = f" ({role_slug} in {unit_slug})"
    return name[: 160 - len(suffix)] + suffix


def permission_model_plan(
    *, role: Role, from_unit: BusinessUnit, to_unit: BusinessUnit, new_role_slug: str
) -> dict:
    """What cloning ``role``'s permission model in ``from_unit`` to ``to_unit`` under the role
    ``new_role_slug`` would change, as plain data with its ``hash``; writes nothing.

    ``grants``: the role's grants the new role lacks. ``policies``: each enabled policy that
    names ``Role::"<role>"``, with that role and ``BusinessUnit::"<from_unit>"`` rewritten,
    as ``add`` or ``change`` (of the clone saved earlier) with the text before, and the
    validation errors it would meet. ``thresholds``: the unit's thresholds that would move.
    """
    if not new_role_slug or slugify(new_role_slug) != new_role_slug:
        raise _invalid("The new role needs a slug (lower case, digits, dashes).", "new_role")
    if from_unit.pk == to_unit.pk and new_role_slug == role.slug:
        raise _invalid("Clone to another unit or under another role.", "to_unit")
    target_role = Role.objects.select_related("group").filter(slug=new_role_slug).first()
    held = {g["target"] for g in grants.grants_of_role(role=target_role)} if target_role else set()
    grants_add = [
        {"target": g["target"], "model": g["model"]}
        for g in grants.grants_of_role(role=role)
        if g["target"] not in held and not g["target"].endswith("(gone)")
    ]
    roles, units = {role.slug: new_role_slug}, {from_unit.slug: to_unit.slug}
    sources = Policy.objects.filter(enabled=True, text__contains=f'"{role.slug}"').order_by("name")
    rewrites = []
    for policy in sources:
        if not any(
            m.group(1) == "Role" and m.group(2) == role.slug for m in _ENTITY.finditer(policy.text)
        ):
            continue
        name = _clone_name(policy.name, role_slug=new_role_slug, unit_slug=to_unit.slug)
        rewrites.append((policy, name, _rewritten(policy.text, roles=roles, units=units)))
    existing = dict(
        Policy.objects.filter(name__in=[name for _, name, _ in rewrites]).values_list(
            "name", "text"
        )
    )
    policies = []
    for policy, name, text in rewrites:
        if existing.get(name) == text:
            continue
        policies.append(
            {
                "source": policy.name,
                "name": name,
                "change": "change" if name in existing else "add",
                "before": existing.get(name),
                "text": text,
                "errors": engine.validate(text),
            }
        )
    thresholds = [
        {"field": field, "before": getattr(to_unit, field), "after": getattr(from_unit, field)}
        for field in THRESHOLDS
        if getattr(to_unit, field) != getattr(from_unit, field)
    ]
    plan = {
        "role": role.slug,
        "from_unit": from_unit.slug,
        "to_unit": to_unit.slug,
        "new_role": new_role_slug,
        "new_role_exists": target_role is not None,
        "grants": grants_add,
        "policies": policies,
        "thresholds": thresholds,
    }
    plan["hash"] = _plan_hash(plan)
    return plan


def _plan_hash(plan: dict) -> str:
    body = {k: v for k, v in plan.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def permission_model_clone(
    *,
    role: Role,
    from_unit: BusinessUnit,
    to_unit: BusinessUnit,
    new_role_slug: str,
    plan_hash: str,
    by,
) -> dict:
    """Apply the plan previewed with ``plan_hash``, in one transaction: the new role (made
    when missing), its grants (``autonomy.grants.grant``), the rewritten policies
    (``policy_save``: an invalid one refuses the whole clone) and the target unit's
    thresholds, with one audit record. A plan that moved since the preview is refused."""
    with transaction.atomic(), set_actor(by):
        # Lock the units, so the thresholds compared are the ones written.
        units = {
            u.pk: u
            for u in BusinessUnit.objects.select_for_update().filter(
                pk__in=[from_unit.pk, to_unit.pk]
            )
        }
        from_unit, to_unit = units[from_unit.pk], units[to_unit.pk]
        plan = permission_model_plan(
            role=role, from_unit=from_unit, to_unit=to_unit, new_role_slug=new_role_slug
        )
        if plan["hash"] != plan_hash:
            raise DomainError(
                ErrorCode.CONFLICT,
                "The permission model changed since the preview; review the diff again.",
                {"expected": plan_hash, "current": plan["hash"]},
                status_code=409,
            )
        target_role = Role.objects.filter(slug=new_role_slug).first()
        if target_role is None:
            target_role = services.role_create(
                name=f"{role.group.name} ({to_unit.name})",
                slug=new_role_slug,
                description=f"Cloned from {role.slug} in {from_unit.slug}.",
                default_risk_tier=role.default_risk_tier,
                by=by,
            )
        for item in plan["policies"]:
            policy = Policy.objects.filter(name=item["name"]).first()
            policy_services.policy_save(
                policy=policy, name=item["name"], text=item["text"], enabled=True, by=by,
                description=f"Cloned from {item['source']!r}.",
            )  # fmt: skip
        _grants_add(items=plan["grants"], role=target_role, by=by)
        if plan["thresholds"]:
            services.business_unit_update(
                unit=to_unit, by=by, **{t["field"]: t["after"] for t in plan["thresholds"]}
            )
        policy_services.registry_changed()
        audit.append(
            kind="permission_model_cloned",
            actor=by.get_username() if by else "",
            payload={
                **{k: plan[k] for k in ("role", "from_unit", "to_unit", "new_role", "hash")},
                "grants": [g["target"] for g in plan["grants"]],
                "policies": [p["name"] for p in plan["policies"]],
                "thresholds": plan["thresholds"],
            },
        )
    return plan


def _grants_add(*, items: list[dict], role: Role, by) -> None:
    op_keys = [g["target"] for g in items if g["model"] == "operation"]
    connector_slugs = [g["target"][:-2] for g in items if g["model"] == "connector"]
    targets = list(
        Operation.objects.select_related("connector").filter(
            pk__in=kernel_selectors.operation_ids(keys=op_keys).values()
        )
    ) + list(Connector.objects.filter(Q(slug__in=connector_slugs)))
    for target in targets:  # widening access waits for approval, like the portal's
        services.grant_request(target=target, to=role, by=by)
