"""Writes of autonomy settings: where a level is set. The admin form and
``/api/v1/autonomy-settings/`` both go through here, so a setting is checked one way: exactly
one scope, registered operation keys. Saving or deleting one moves the policy-store version
(``autonomy.policy.receivers``), so the next decision in every process applies it."""

from django.db import transaction

from autonomy import audit, selectors
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import AutonomyLevel, AutonomySetting


def check_operations(keys) -> list[str]:
    """A list of registered operation keys, or ``validation_failed``: the one check of every
    list that narrows something to operations (settings, rollout plans)."""
    keys = keys or []
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise DomainError(
            ErrorCode.VALIDATION_FAILED,
            'A list of operation keys, e.g. ["erp.pay-invoice"].',
            {"fields": {"operations": ["not a list of operation keys"]}},
        )
    unknown = sorted(set(keys) - selectors.operation_ids(keys=keys).keys())
    if unknown:
        raise DomainError(
            ErrorCode.VALIDATION_FAILED,
            f"No such operation: {', '.join(unknown)}.",
            {"fields": {"operations": [f"unknown: {key}" for key in unknown]}},
        )
    return keys


def check_scope(*, agent=None, role=None, business_unit=None, template_key="") -> None:
    if sum(1 for scope in (agent, role, business_unit, template_key) if scope) != 1:
        raise DomainError(
            ErrorCode.VALIDATION_FAILED,
            "Set the level on exactly one of an agent, a role, a business unit or a workflow "
            "template.",
        )


def setting_create(
    *, level: str, agent=None, role=None, business_unit=None, template_key: str = "",
    operations=(), note: str = "", by,
) -> AutonomySetting:  # fmt: skip
    if level not in AutonomyLevel.values:
        raise DomainError(ErrorCode.VALIDATION_FAILED, f"No such level: {level!r}.")
    check_scope(agent=agent, role=role, business_unit=business_unit, template_key=template_key)
    operations = check_operations(list(operations))
    with transaction.atomic():
        setting = AutonomySetting.objects.create(
            level=level, agent=agent, role=role, business_unit=business_unit,
            template_key=template_key, operations=operations, note=note,
        )  # fmt: skip
        audit.append(
            kind="autonomy_setting_created",
            actor=by.get_username(),
            agent_id=agent.pk if agent else None,
            payload={"id": setting.pk, "level": level, "scope": setting.scope,
                     "operations": operations, "note": note},
        )  # fmt: skip
    return setting


def setting_delete(*, setting: AutonomySetting, by) -> None:
    with transaction.atomic():
        audit.append(
            kind="autonomy_setting_deleted",
            actor=by.get_username(),
            agent_id=setting.agent_id,
            payload={"id": setting.pk, "level": setting.level, "scope": setting.scope,
                     "operations": setting.operations},
        )  # fmt: skip
        setting.delete()
