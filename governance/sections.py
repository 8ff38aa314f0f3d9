"""The sections of a governance bundle, as a registry: ``SECTIONS``, applied in that order.

A section owns its files and its objects: ``export()`` the live objects as files,
``load(files)`` a bundle's files as items by key, ``plan(wanted)`` the changes from live to
wanted, and ``apply(change, by)`` one change, through the service that owns the object (the same
validation, audit and approvals as the portal). Live and bundle are compared after both
went through ``load``, so a section's own normalising never shows as a change.

A new section is one entry in ``SECTIONS`` (``BlueprintsSection`` is the smallest example).
"""

from decimal import Decimal, InvalidOperation

import yaml
from django.db import transaction
from django.db.models import Q
from django.utils.text import slugify

from agents import blueprints
from agents import services as agent_services
from agents.models import Agent, BusinessUnit, RiskTier, Role
from autonomy import grants, level_settings
from autonomy.errors import DomainError
from autonomy.models import AutonomyLevel, AutonomySetting, Policy
from autonomy.policy import engine
from autonomy.policy import services as policy_services
from governance.bundle import invalid, yaml_data, yaml_text
from governance.plans import Change, Op, field_lines
from workflows import authoring, yaml_io
from workflows.models import Template, TemplateStatus


class Section:
    name = ""
    perm = ""  # the permission applying a change of this section takes
    removable = True  # False: live objects missing from the bundle are shown, never removed

    def export(self) -> dict[str, str]:
        raise NotImplementedError

    def load(self, files: dict[str, str]) -> dict[str, dict]:
        """The bundle's items by key; none when its files are absent."""
        raise NotImplementedError

    def owns(self, path: str) -> bool:
        raise NotImplementedError

    def check(self, item: dict) -> list[str]:
        """Why the item cannot be applied (unknown references, invalid text); [] when it can."""
        return []

    def lines(self, before: dict, after: dict) -> list[str]:
        return field_lines(before, after)

    def note(self, op: str) -> str:
        return ""

    def may_apply(self, user, change: Change) -> bool:
        return user.has_perm(self.perm)

    def apply(self, change: Change, *, by) -> None:
        raise NotImplementedError

    def plan(self, wanted: dict[str, dict], *, live: dict[str, dict] | None = None):
        """The changes that make live what ``wanted`` says, sorted by key."""
        live = self.load(self.export()) if live is None else live
        changes = []
        for key in sorted(set(live) | set(wanted)):
            before, after = live.get(key), wanted.get(key)
            if before == after:
                continue
            if before is None:
                op, lines, errors = Op.ADD, [], self.check(after)
            elif after is None:
                op, lines, errors = Op.REMOVE, [], []
            else:
                op, lines, errors = Op.CHANGE, self.lines(before, after), self.check(after)
            changes.append(
                Change(
                    section=self.name,
                    op=op,
                    key=key,
                    before=before,
                    after=after,
                    lines=tuple(lines),
                    errors=tuple(errors),
                    note=self.note(op),
                    applies=op != Op.REMOVE or self.removable,
                )
            )
        return changes


class ListSection(Section):
    """One ``<name>.yaml`` holding ``{<name>: [item, ...]}``, items sorted by key."""

    fields: dict[str, object] = {}  # field -> default; each item has exactly these
    key_field = "slug"

    @property
    def path(self) -> str:
        return f"{self.name}.yaml"

    def rows(self) -> list[dict]:
        raise NotImplementedError

    def owns(self, path):
        return path == self.path

    def key(self, item: dict) -> str:
        return str(item[self.key_field])

    def normal(self, raw: dict) -> dict:
        return {name: raw.get(name, default) for name, default in self.fields.items()}

    def export(self) -> dict[str, str]:
        rows = sorted(self.rows(), key=self.key)
        return {self.path: yaml_text({self.name: rows})}

    def load(self, files):
        if self.path not in files:
            return {}
        data = yaml_data(files[self.path], path=self.path)
        items = (data or {}).get(self.name) if isinstance(data, dict) else None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise invalid(f"{self.path}: a mapping with {self.name}: a list of items.")
        loaded = {}
        for raw in items:
            unknown = sorted(set(raw) - set(self.fields))
            if unknown or not raw.get(self.key_field):
                raise invalid(
                    f"{self.path}: each item has {self.key_field} and only "
                    f"{', '.join(self.fields)}; not {unknown or 'without ' + self.key_field}.",
                    file=self.path,
                )
            item = self.normal(raw)
            key = self.key(item)
            if key in loaded:
                raise invalid(f"{self.path}: {key} is listed twice.", file=self.path)
            loaded[key] = item
        return loaded


def _score_errors(item: dict, names) -> list[str]:
    return [
        f"{n} must be a whole number from 0 to 100"
        for n in names
        if not (type(item[n]) is int and 0 <= item[n] <= 100)
    ]


class UnitsSection(ListSection):
    name, perm, removable = "units", "agents.change_businessunit", False
    fields = {
        "slug": "", "name": "", "description": "", "approval_threshold": 50,
        "deny_threshold": 85, "dual_control_risk": 70, "auto_quarantine_on_drift": False,
    }  # fmt: skip

    def rows(self):
        return list(BusinessUnit.objects.values(*self.fields))

    def check(self, item):
        names = ("approval_threshold", "deny_threshold", "dual_control_risk")
        errors = _score_errors(item, names)
        if not item["name"]:
            errors.append("a unit needs a name")
        return errors

    def apply(self, change, *, by):
        values = {f: v for f, v in change.after.items() if f != "slug"}
        with transaction.atomic():
            if change.op == Op.ADD:
                unit = agent_services.business_unit_create(
                    name=values["name"], slug=change.key, description=values["description"], by=by
                )
            else:
                unit = BusinessUnit.objects.get(slug=change.key)
            agent_services.business_unit_update(unit=unit, by=by, **values)


class RolesSection(ListSection):
    name, perm, removable = "roles", "agents.change_role", False
    fields = {"slug": "", "name": "", "description": "", "default_risk_tier": RiskTier.MEDIUM}

    def rows(self):
        return [
            {"slug": r.slug, "name": r.group.name, "description": r.description,
             "default_risk_tier": r.default_risk_tier}
            for r in Role.objects.select_related("group")
        ]  # fmt: skip

    def check(self, item):
        errors = [] if item["name"] else ["a role needs a name"]
        if item["default_risk_tier"] not in RiskTier.values:
            errors.append(f"default_risk_tier is one of {RiskTier.values}")
        return errors

    def apply(self, change, *, by):
        values = {f: v for f, v in change.after.items() if f != "slug"}
        if change.op == Op.ADD:
            agent_services.role_create(slug=change.key, by=by, **values)
        else:
            agent_services.role_update(role=Role.objects.get(slug=change.key), by=by, **values)


class GrantsSection(Section):
    """``grants.yaml``: holder (``role:<slug>``, ``agent:<slug>``) -> operation keys and
    whole connectors (``erp.*``). One change per grant, so a review sees each widening."""

    name, perm, path = "grants", "autonomy.change_operation", "grants.yaml"

    def owns(self, path):
        return path == self.path

    def export(self):
        held: dict[str, list[str]] = {}
        for row in grants.grants_table():
            held.setdefault(row["to"], []).append(row["target"])
        return {self.path: yaml_text({self.name: held})}

    def load(self, files):
        if self.path not in files:
            return {}
        data = yaml_data(files[self.path], path=self.path)
        held = (data or {}).get(self.name) if isinstance(data, dict) else None
        if held is None:
            held = {}
        if not isinstance(held, dict) or not all(
            isinstance(targets, list) and all(isinstance(t, str) for t in targets)
            for targets in held.values()
        ):
            raise invalid(f"{self.path}: grants: holder -> a list of operation keys.")
        return {
            f"{holder} {target}": {"to": str(holder), "target": target}
            for holder, targets in held.items()
            for target in targets
        }

    def check(self, item):
        errors = []
        if grants.holder_named(item["to"]) is None:
            errors.append(f"no role or agent {item['to']!r} (role:<slug> or agent:<slug>)")
        if grants.target_named(item["target"]) is None:
            errors.append(f"no operation or connector {item['target']!r}")
        return errors

    def note(self, op):
        if op == Op.ADD:
            return (
                "widens access: waits for approval by the unit owner and security (grant_request)"
            )
        return ""

    def apply(self, change, *, by):
        item = change.after or change.before
        holder, target = grants.holder_named(item["to"]), grants.target_named(item["target"])
        if change.op == Op.ADD:
            agent_services.grant_request(target=target, to=holder, by=by)
        else:
            grants.revoke_grant(target=target, to=holder, by=by)


def _policy_file(name: str) -> str:
    return f"policies/{slugify(name) or 'policy'}.cedar"


class PoliciesSection(Section):
    """``policies.yaml`` lists the policies; each one's Cedar text is its own file
    ``policies/<slug>.cedar``, so a review diffs the text itself."""

    name, path = "policies", "policies.yaml"

    def owns(self, path):
        return path == self.path or (path.startswith("policies/") and path.endswith(".cedar"))

    def export(self):
        entries, files, used = [], {}, set()
        for policy in Policy.objects.order_by("name"):
            file = base = _policy_file(policy.name)
            n = 1
            while file in used:  # two names with one slug: "a-b", "a b"
                n += 1
                file = base.replace(".cedar", f"-{n}.cedar")
            used.add(file)
            files[file] = policy.text.rstrip("\n") + "\n"
            entries.append(
                {"name": policy.name, "description": policy.description,
                 "enabled": policy.enabled, "file": file}
            )  # fmt: skip
        files[self.path] = yaml_text({self.name: entries})
        return files

    def load(self, files):
        if self.path not in files:
            return {}
        data = yaml_data(files[self.path], path=self.path)
        entries = (data or {}).get(self.name) if isinstance(data, dict) else None
        if entries is None:
            entries = []
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise invalid(f"{self.path}: policies: a list of name, description, enabled, file.")
        loaded = {}
        for entry in entries:
            unknown = set(entry) - {"name", "description", "enabled", "file"}
            name, file = entry.get("name"), entry.get("file")
            if unknown or not isinstance(name, str) or not name or file not in files:
                raise invalid(
                    f"{self.path}: each policy has a name and the file of its Cedar text "
                    f"in the bundle ({name or 'a policy'}: {file!r}).",
                    file=self.path,
                )
            if name in loaded:
                raise invalid(f"{self.path}: {name} is listed twice.", file=self.path)
            loaded[name] = {
                "name": name,
                "description": str(entry.get("description") or ""),
                "enabled": entry.get("enabled") is True,
                "text": files[file].rstrip("\n"),
            }
        return loaded

    def lines(self, before, after):
        return field_lines(before, after, texts={"text": _policy_file(after["name"])})

    def check(self, item):
        return [str(e) for e in engine.validate(item["text"])]

    def may_apply(self, user, change):
        return policy_services.may_change_policy(user=user)

    def apply(self, change, *, by):
        if change.op == Op.REMOVE:
            policy_services.policy_delete(policy=Policy.objects.get(name=change.key), by=by)
            return
        after = change.after
        policy_services.policy_save(
            policy=Policy.objects.filter(name=change.key).first(),
            name=after["name"], text=after["text"], description=after["description"],
            enabled=after["enabled"], by=by,
        )  # fmt: skip


def _spend(value) -> str | None:
    if value is None:
        return None
    try:
        return str(Decimal(str(value)).quantize(Decimal("0.01")))
    except (InvalidOperation, ValueError):
        return str(value)


class LimitsSection(ListSection):
    """Agents' own limits; an agent not listed acts under the platform defaults."""

    name, perm, key_field = "limits", "agents.change_agent", "agent"
    fields = {"agent": "", "max_actions_per_minute": None, "max_daily_spend": None}

    def rows(self):
        limited = Agent.objects.filter(
            Q(max_actions_per_minute__isnull=False) | Q(max_daily_spend__isnull=False)
        ).values_list("slug", "max_actions_per_minute", "max_daily_spend")
        return [
            {"agent": slug, "max_actions_per_minute": rate, "max_daily_spend": _spend(spend)}
            for slug, rate, spend in limited
        ]

    def normal(self, raw):
        item = super().normal(raw)
        item["max_daily_spend"] = _spend(item["max_daily_spend"])
        return item

    def check(self, item):
        errors = []
        if not Agent.objects.filter(slug=item["agent"]).exists():
            errors.append(f"no agent {item['agent']!r}")
        rate = item["max_actions_per_minute"]
        if rate is not None and not (type(rate) is int and rate > 0):
            errors.append("max_actions_per_minute is a whole number above 0, or null")
        spend = item["max_daily_spend"]
        try:
            if spend is not None and Decimal(spend) < 0:
                errors.append("max_daily_spend is an amount of 0 or more, or null")
        except InvalidOperation:
            errors.append("max_daily_spend is an amount of 0 or more, or null")
        return errors

    def apply(self, change, *, by):
        item = change.after or {"max_actions_per_minute": None, "max_daily_spend": None}
        spend = item["max_daily_spend"]
        agent_services.agent_update(
            agent=Agent.objects.get(slug=change.key),
            by=by,
            max_actions_per_minute=item["max_actions_per_minute"],
            max_daily_spend=Decimal(spend) if spend is not None else None,
        )


_SCOPES = ("agent", "role", "business_unit", "template")


class AutonomySection(ListSection):
    """Autonomy settings. A setting has no name: it is what it says (level, scope,
    operations, note), so changing one is removing it and adding its successor."""

    name, perm, key_field = "autonomy", "autonomy.add_autonomysetting", "level"
    fields = {
        "level": "", "agent": None, "role": None, "business_unit": None, "template": None,
        "operations": [], "note": "",
    }  # fmt: skip

    def key(self, item):
        """What it says, readable: ``supervised on business_unit:finance for erp.pay (pilot)``."""
        scopes = [f"{scope}:{item[scope]}" for scope in _SCOPES if item.get(scope)]
        key = f"{item['level']} on {' '.join(scopes) or 'nothing'}"
        operations = item.get("operations")
        if operations:
            listed = operations if isinstance(operations, list) else [operations]
            key += f" for {', '.join(sorted(map(str, listed)))}"
        return key + (f" ({item['note']})" if item.get("note") else "")

    def rows(self):
        rows = []
        for s in AutonomySetting.objects.select_related("agent", "role", "business_unit"):
            row = {"level": s.level, "operations": list(s.operations or []), "note": s.note}
            for scope in ("agent", "role", "business_unit"):
                if getattr(s, f"{scope}_id"):
                    row[scope] = getattr(s, scope).slug
            if s.template_key:
                row["template"] = s.template_key
            rows.append(row)
        return rows

    def normal(self, raw):
        item = super().normal(raw)
        item["operations"] = item["operations"] or []
        item["note"] = item["note"] or ""
        return item

    def _scope(self, item) -> dict:
        found = {}
        models = {"agent": Agent, "role": Role, "business_unit": BusinessUnit}
        for scope, model in models.items():
            if item[scope]:
                found[scope] = model.objects.filter(slug=item[scope]).first()
        return found

    def check(self, item):
        errors = []
        if item["level"] not in AutonomyLevel.values:
            errors.append(f"level is one of {AutonomyLevel.values}")
        if sum(1 for scope in _SCOPES if item[scope]) != 1:
            errors.append("set exactly one of agent, role, business_unit, template")
        for scope, found in self._scope(item).items():
            if found is None:
                errors.append(f"no {scope.replace('_', ' ')} {item[scope]!r}")
        try:
            level_settings.check_operations(item["operations"])
        except DomainError as exc:
            errors.append(exc.message)
        return errors

    def may_apply(self, user, change):
        if change.op == Op.REMOVE:
            return user.has_perm("autonomy.delete_autonomysetting")
        return user.has_perm(self.perm)

    def apply(self, change, *, by):
        if change.op == Op.ADD:
            item = change.after
            level_settings.setting_create(
                level=item["level"], template_key=item["template"] or "",
                operations=item["operations"], note=item["note"], by=by, **self._scope(item),
            )  # fmt: skip
            return
        item = change.before
        scope = {f"{s}__slug": item[s] for s in ("agent", "role", "business_unit") if item[s]}
        candidates = AutonomySetting.objects.filter(
            level=item["level"], template_key=item["template"] or "", note=item["note"], **scope
        )
        for setting in candidates:
            if sorted(setting.operations or []) == sorted(item["operations"]):
                level_settings.setting_delete(setting=setting, by=by)
                return


class WorkflowsSection(Section):
    """``workflows/<key>.yaml``: the latest published version of each template, in the
    document ``workflows.yaml_io`` imports and exports. Applying imports a new version and
    publishes it (``template_publish`` validates it); the version number is the live one's
    business, not a change."""

    name, perm, removable = "workflows", "workflows.add_template", False
    folder = "workflows/"

    def owns(self, path):
        return path.startswith(self.folder) and path.endswith(".yaml")

    def export(self):
        latest = {}
        for template in Template.objects.filter(status=TemplateStatus.PUBLISHED).order_by(
            "key", "-version"
        ):
            latest.setdefault(template.key, template)
        return {
            f"{self.folder}{key}.yaml": yaml_io.template_export_yaml(template=template)
            for key, template in latest.items()
        }

    def load(self, files):
        loaded = {}
        for path in sorted(p for p in files if p.startswith(self.folder)):
            try:
                data = yaml_io.template_yaml_parse(text=files[path])
            except DomainError as exc:
                raise invalid(f"{path}: {exc.message}", file=path) from exc
            key = path[len(self.folder) : -len(".yaml")]
            if data.get("key") != key:
                raise invalid(f"{path}: its key must be {key!r}, the file's name.", file=path)
            data.pop("version", None)
            loaded[key] = data
        return loaded

    def lines(self, before, after):
        dump = lambda d: yaml.safe_dump(d, sort_keys=False, allow_unicode=True)  # noqa: E731
        return field_lines(
            {"document": dump(before)},
            {"document": dump(after)},
            texts={"document": f"{self.folder}{after['key']}.yaml"},
        )

    def check(self, item):
        """Import and validate it in a savepoint that is rolled back: the plan reports what
        publishing would refuse, and writes nothing."""
        try:
            with transaction.atomic():
                template = authoring.template_from_dict(data=item)
                errors = [e["message"] for e in authoring.template_validate(template=template)]
                transaction.set_rollback(True)
        except DomainError as exc:
            return [e.get("message", exc.message) for e in exc.details.get("errors", [])] or [
                exc.message
            ]
        return errors

    def apply(self, change, *, by):
        text = yaml.safe_dump(change.after, sort_keys=False, allow_unicode=True)
        template = yaml_io.template_import_yaml(text=text, by=by)
        authoring.template_publish(template=template, by=by)


class BlueprintsSection(ListSection):
    """Blueprints (``agents.blueprints``): read and written only by their services, which
    re-apply a changed blueprint to all its agents together. Never removed by a bundle."""

    name, perm, removable = "blueprints", "agents.change_blueprint", False
    fields = {
        "slug": "", "name": "", "description": "", "role": "", "risk_tier": "medium",
        "autonomy_level": "", "max_actions_per_minute": None, "max_daily_spend": None,
        "operations": [], "policies": [],
    }  # fmt: skip

    def rows(self):
        return blueprints.blueprints_export()

    def check(self, item):
        role = Role.objects.filter(slug=item["role"]).first()
        if role is None:
            return [f"no such role: {item['role']!r}"]
        values = {k: v for k, v in item.items() if k not in ("slug", "name", "role")}
        try:
            blueprints.blueprint_check(role=role, **values)
        except DomainError as exc:
            return [f"{exc.message}: {exc.details}"]
        return []

    def apply(self, change, *, by):
        blueprints.blueprint_upsert(change.after, by)


SECTIONS: tuple[Section, ...] = (
    UnitsSection(),
    RolesSection(),
    PoliciesSection(),
    GrantsSection(),
    LimitsSection(),
    AutonomySection(),
    BlueprintsSection(),
    WorkflowsSection(),
)
BY_NAME = {section.name: section for section in SECTIONS}
