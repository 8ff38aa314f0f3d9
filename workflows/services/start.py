"""Starting a run of a published template version."""

import jsonschema
from django.db import IntegrityError, transaction

from autonomy import audit
from autonomy.errors import DomainError, ErrorCode
from workflows.models import Run, StepRun, Template
from workflows.services.advance import advance
from workflows.services.locking import run_lock
from workflows.services.outbox import Outbox, actor_name
from workflows.services.rollup import run_counted


def run_start(
    *, template: Template, context: dict | None = None, by=None, idempotency_key: str = ""
) -> Run:
    """Start a run of a published template version; the run pins that version."""
    context = context or {}
    if not template.is_published:
        raise DomainError(
            ErrorCode.TEMPLATE_NOT_PUBLISHED,
            f"{template} is not published.",
            {"template": template.key, "version": template.version},
            status_code=409,
        )
    if not isinstance(context, dict):
        raise DomainError(ErrorCode.CONTEXT_INVALID, "The context must be a JSON object.")
    if template.context_schema:
        errors = list(jsonschema.Draft202012Validator(template.context_schema).iter_errors(context))
        if errors:
            raise DomainError(
                ErrorCode.CONTEXT_INVALID,
                f"The context does not fit {template}: {errors[0].message}",
                {"errors": [e.message for e in errors[:20]]},
            )
    if idempotency_key:
        existing = _run_for_key(idempotency_key, template)
        if existing is not None:
            return existing
    try:
        return _run_create(template=template, context=context, by=by, key=idempotency_key)
    except IntegrityError:
        existing = _run_for_key(idempotency_key, template) if idempotency_key else None
        if existing is None:
            raise
        return existing  # a concurrent start with the same key won


def _run_for_key(key: str, template: Template) -> Run | None:
    existing = Run.objects.filter(idempotency_key=key).first()
    if existing is not None and existing.template_id != template.pk:
        raise DomainError(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            "This Idempotency-Key started a run of another template.",
            {"run_id": str(existing.pk)},
            status_code=409,
        )
    return existing


def _run_create(*, template: Template, context: dict, by, key: str) -> Run:
    actor = actor_name(by)
    with transaction.atomic(), Outbox() as out:
        run = Run.objects.create(
            template=template, context=context, started_by=actor, idempotency_key=key or None
        )
        StepRun.objects.bulk_create(
            StepRun(run=run, step=step, position=step.position) for step in template.steps.all()
        )
        run_counted(run=run, counter="started", out=out)
        out.event(run, "run_started", f"Started from {template}.", actor=actor)
        audit.append(
            kind="run_started",
            actor=actor,
            payload={"run_id": str(run.pk), "template": template.key, "version": template.version},
        )
        advance(run=run_lock(run.pk), out=out)
    return run
