"""Use cases of template authoring: validate, publish, version and clone.

A published version never changes; editing means a new draft version. Validation speaks the
author's language: which step, which field, what is wrong.
"""

from graphlib import CycleError, TopologicalSorter

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from agents.models import Agent, Role
from autonomy import audit, conditions, grants
from autonomy.errors import DomainError, ErrorCode
from workflows.models import Approval, Step, StepKind, Template, TemplateStatus

COPIED_FIELDS = [
    "key", "name", "kind", "operation", "instructions", "assignee_role", "assignee_agent",
    "depends_on", "input_map", "run_when", "approval", "approval_when", "visible_context",
    "output_key", "timeout_seconds", "max_retries", "retry_backoff_seconds",
    "escalate_to_agent", "escalate_to_role", "escalate_to_human", "compensation_operation",
    "compensation_input_map", "position",
]  # fmt: skip


def _error(step: str, field: str, message: str) -> dict:
    return {"step": step, "field": field, "message": message}


def _grant_errors(step: Step) -> list[dict]:
    errors = []
    targets = [("assignee", step.assignee_agent, step.assignee_role)]
    targets.append(("escalation", step.escalate_to_agent, step.escalate_to_role))
    for field, agent, role in targets:
        if agent is None and role is None:
            continue
        who = agent or role
        for operation in filter(None, [step.operation, step.compensation_operation]):
            if step.kind == StepKind.TASK and operation == step.operation:
                continue
            if not grants.is_granted(operation=operation, agent=agent, role=role):
                errors.append(
                    _error(
                        step.key,
                        field,
                        f"{who} has no grant on {operation.key}: grant it the operation or its"
                        " connector, or pick another assignee.",
                    )
                )
    return errors


def template_validate(*, template: Template) -> list[dict]:
    """Every problem with the template, as ``{"step", "field", "message"}``; empty when valid."""
    steps = list(
        template.steps.select_related(
            "operation__connector",
            "compensation_operation__connector",
            "assignee_role__group",
            "assignee_agent__service_user",
            "escalate_to_agent__service_user",
            "escalate_to_role__group",
        )
    )
    errors: list[dict] = []
    if not steps:
        return [_error("", "steps", "A template needs at least one step.")]
    keys = {step.key for step in steps}
    graph = {}
    for step in steps:
        deps = step.depends_on if isinstance(step.depends_on, list) else None
        if deps is None:
            errors.append(_error(step.key, "depends_on", "Dependencies are a list of step keys."))
            deps = []
        for dep in deps:
            if dep not in keys:
                errors.append(_error(step.key, "depends_on", f"There is no step {dep!r}."))
            elif dep == step.key:
                errors.append(_error(step.key, "depends_on", "A step cannot depend on itself."))
        graph[step.key] = [d for d in deps if d in keys and d != step.key]
        if step.kind == StepKind.OPERATION and step.operation is None:
            errors.append(_error(step.key, "operation", "An operation step needs an operation."))
        for operation, field in [
            (step.operation, "operation"),
            (step.compensation_operation, "compensation_operation"),
        ]:
            if operation is not None and not (operation.enabled and operation.connector.enabled):
                errors.append(_error(step.key, field, f"{operation.key} is disabled."))
        if step.assignee_agent is None and step.assignee_role is None:
            errors.append(_error(step.key, "assignee", "Assign the step to a role or an agent."))
        if step.approval != Approval.NEVER and step.kind != StepKind.OPERATION:
            errors.append(
                _error(step.key, "approval", "Approval gates apply to operation steps only.")
            )
        if step.approval == Approval.WHEN and not step.approval_when.strip():
            errors.append(_error(step.key, "approval_when", "Say when approval is needed."))
        for field in ("run_when", "approval_when"):
            text = getattr(step, field)
            if text.strip():
                try:
                    conditions.parse(text)
                except conditions.ConditionError as exc:
                    errors.append(_error(step.key, field, str(exc)))
        for field in ("input_map", "compensation_input_map"):
            if not isinstance(getattr(step, field), dict):
                errors.append(_error(step.key, field, "A mapping is a JSON object."))
        errors.extend(_grant_errors(step))
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        cycle = " → ".join(exc.args[1])
        errors.append(_error(exc.args[1][0], "depends_on", f"The steps form a cycle: {cycle}."))
    return errors


def topological_order(steps: list[Step]) -> list[Step]:
    by_key = {step.key: step for step in steps}
    graph = {step.key: [d for d in step.depends_on if d in by_key] for step in steps}
    return [by_key[key] for key in TopologicalSorter(graph).static_order()]


def ensure_editable(template: Template) -> None:
    if template.status != TemplateStatus.DRAFT:
        raise DomainError(
            ErrorCode.TEMPLATE_IMMUTABLE,
            f"{template} is {template.status}; make a new version to change it.",
            {"template": template.key, "version": template.version},
            status_code=409,
        )


def template_publish(*, template: Template, by=None) -> Template:
    """Freeze a valid draft; runs started from now on use it."""
    with transaction.atomic():
        template = Template.objects.select_for_update().get(pk=template.pk)
        ensure_editable(template)
        errors = template_validate(template=template)
        if errors:
            raise DomainError(
                ErrorCode.TEMPLATE_INVALID,
                f"{template} cannot be published: {errors[0]['message']}",
                {"errors": errors},
            )
        steps = topological_order(list(template.steps.all()))
        for position, step in enumerate(steps):
            if step.position != position:
                Step.objects.filter(pk=step.pk).update(position=position)
        template.status = TemplateStatus.PUBLISHED
        template.published_at = timezone.now()
        template.save(update_fields=["status", "published_at"])
        audit.append(
            kind="template_published",
            actor=getattr(by, "username", ""),
            payload={"template": template.key, "version": template.version},
        )
    return template


def _copy(*, source: Template, **fields) -> Template:
    copy = Template.objects.create(
        name=fields.pop("name", source.name),
        description=source.description,
        business_unit=fields.pop("business_unit", source.business_unit),
        context_schema=source.context_schema,
        status=TemplateStatus.DRAFT,
        **fields,
    )
    Step.objects.bulk_create(
        Step(template=copy, **{f: getattr(step, f) for f in COPIED_FIELDS})
        for step in source.steps.all()
    )
    return copy


def template_new_version(*, template: Template, by=None) -> Template:
    """A draft copy of ``template`` with the next version number of its key."""
    with transaction.atomic():
        latest = Template.objects.filter(key=template.key).aggregate(v=Max("version"))["v"]
        return _copy(
            source=template,
            key=template.key,
            version=(latest or 0) + 1,
            origin=template.origin,
            created_by=by,
        )


def template_clone(
    *, template: Template, key: str, name: str = "", business_unit=None, by=None
) -> Template:
    """Reuse a template elsewhere (invoice processing → purchase orders): a new key, version 1,
    a draft linked to its origin."""
    if Template.objects.filter(key=key).exists():
        raise DomainError(
            ErrorCode.CONFLICT, f"A template with key {key!r} exists.", status_code=409
        )
    with transaction.atomic():
        clone = _copy(
            source=template,
            key=key,
            version=1,
            name=name or f"{template.name} (copy)",
            business_unit=business_unit or template.business_unit,
            origin=template,
            created_by=by,
        )
        audit.append(
            kind="template_cloned",
            actor=getattr(by, "username", ""),
            payload={"from": f"{template.key}@{template.version}", "to": key},
        )
    return clone


def latest_published(*, key: str) -> Template | None:
    return (
        Template.objects.filter(key=key, status=TemplateStatus.PUBLISHED)
        .order_by("-version")
        .first()
    )


# --- import and export (YAML documents are these dicts) -------------------------------------

STEP_DEFAULTS = {
    "kind": StepKind.OPERATION, "instructions": "", "depends_on": [], "input_map": {},
    "run_when": "", "approval": Approval.NEVER, "approval_when": "", "visible_context": [],
    "output_key": "", "timeout_seconds": 300, "max_retries": 2, "retry_backoff_seconds": 5,
    "escalate_to_human": False, "compensation_input_map": {},
}  # fmt: skip
_REFS = {
    "operation": ("operation", "operation"),
    "compensation_operation": ("compensation_operation", "operation"),
    "assignee_role": ("assignee_role", "role"),
    "assignee_agent": ("assignee_agent", "agent"),
    "escalate_to_role": ("escalate_to_role", "role"),
    "escalate_to_agent": ("escalate_to_agent", "agent"),
}


def _ref(kind: str, value: str):
    if kind == "operation":
        from autonomy.selectors import operation_by_key

        return operation_by_key(key=value)
    model = Role if kind == "role" else Agent
    return model.objects.filter(slug=value).first()


def template_to_dict(*, template: Template) -> dict:
    """A template as plain data: references by key/slug, defaults left out."""
    steps = []
    for step in template.steps.select_related(
        "operation__connector", "compensation_operation__connector", "assignee_role",
        "assignee_agent", "escalate_to_role", "escalate_to_agent",
    ):  # fmt: skip
        data = {"key": step.key, "name": step.name}
        for field, default in STEP_DEFAULTS.items():
            value = getattr(step, field)
            if value != default:
                data[field] = value
        for name, (field, kind) in _REFS.items():
            obj = getattr(step, field)
            if obj is not None:
                data[name] = obj.key if kind == "operation" else obj.slug
        steps.append(data)
    doc = {"key": template.key, "name": template.name, "version": template.version}
    if template.description:
        doc["description"] = template.description
    if template.business_unit_id:
        doc["business_unit"] = template.business_unit.slug
    if template.context_schema:
        doc["context_schema"] = template.context_schema
    doc["steps"] = steps
    return doc


def template_from_dict(*, data: dict, by=None) -> Template:
    """Create a draft from plain data (an imported YAML document). Unknown references and
    fields are refused with the step and field named; nothing is half-created."""
    from agents.models import BusinessUnit

    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise DomainError(ErrorCode.TEMPLATE_INVALID, "A template has a key, a name and steps.")
    errors = []
    key = str(data.get("key") or "")
    if not key:
        errors.append(_error("", "key", "The template needs a key."))
    unit = None
    if data.get("business_unit"):
        unit = BusinessUnit.objects.filter(slug=data["business_unit"]).first()
        if unit is None:
            errors.append(_error("", "business_unit", f"No unit {data['business_unit']!r}."))
    rows = []
    for index, raw in enumerate(data["steps"]):
        if not isinstance(raw, dict) or not raw.get("key"):
            errors.append(_error(f"#{index + 1}", "key", "Each step needs a key."))
            continue
        unknown = set(raw) - {"key", "name", *STEP_DEFAULTS, *_REFS}
        if unknown:
            errors.append(_error(raw["key"], sorted(unknown)[0], "Unknown field."))
        fields = {f: raw.get(f, d) for f, d in STEP_DEFAULTS.items()}
        fields.update(key=raw["key"], name=raw.get("name") or raw["key"], position=index)
        for name, (field, kind) in _REFS.items():
            if raw.get(name):
                obj = _ref(kind, raw[name])
                if obj is None:
                    errors.append(_error(raw["key"], name, f"There is no {kind} {raw[name]!r}."))
                fields[field] = obj
        rows.append(fields)
    if errors:
        raise DomainError(
            ErrorCode.TEMPLATE_INVALID,
            f"The template cannot be imported: {errors[0]['message']}",
            {"errors": errors},
        )
    latest = Template.objects.filter(key=key).aggregate(v=Max("version"))["v"]
    with transaction.atomic():
        template = Template.objects.create(
            key=key,
            version=(latest or 0) + 1,
            name=str(data.get("name") or key),
            description=str(data.get("description") or ""),
            business_unit=unit,
            context_schema=data.get("context_schema") or {},
            created_by=by,
        )
        Step.objects.bulk_create(Step(template=template, **fields) for fields in rows)
    return template
