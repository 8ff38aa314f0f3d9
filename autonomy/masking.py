"""Sensitive values: stored in full, shown masked. The one place every output path calls.

An operation declares which of its parameters (``Operation.sensitive_params``) and which keys
of its result (``Operation.sensitive_results``) are sensitive, as ``{dotted path: class}``
with a class of :class:`SensitiveClass`. A path walks nested objects key by key; where it
meets a list it goes on in every element, so ``"employees.iban"`` covers a list of records.

Who sees the values: a person holding ``autonomy.view_sensitive`` (risk officers, auditors,
superusers), and the agent that sent an action, for that action only (it sent the values; its
own token reads them back). Everybody else — approvers, viewers, IT admins, other agents —
sees ``"•••• (pii)"`` in place of the value, the key kept. Notifications (e-mails and any
notifier) always mask: they pass ``viewer=None``.

Content rules (``autonomy.content``) are different: they redact text before it is stored.
The audit log keeps the full record (it is the evidence); its export masks here too.
"""

import copy
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

PERMISSION = "autonomy.view_sensitive"
MASK = "••••"
# Payload keys of audit records that carry an operation's values: the parameters an agent
# sent or an approver edited (``params``), and what the connector answered (``outcome``).
PARAMS_KEYS = ("params",)
RESULT_KEYS = ("outcome",)
VALUE_KEYS = PARAMS_KEYS + RESULT_KEYS


class SensitiveClass(models.TextChoices):
    PII = "pii", "Personal data"
    SECRET = "secret", "Secret"
    FINANCIAL = "financial", "Financial"


def masked(cls: str) -> str:
    """What a hidden value reads as: ``•••• (pii)``."""
    return f"{MASK} ({cls})"


def validate_declaration(value: Any) -> None:
    """A declaration is an object of dotted paths to a class of :class:`SensitiveClass`."""
    if not isinstance(value, Mapping):
        raise ValidationError('Declare sensitive values as an object: {"iban": "financial"}.')
    classes = set(SensitiveClass.values)
    for path, cls in value.items():
        if not isinstance(path, str) or not path or any(not p for p in path.split(".")):
            raise ValidationError(f"{path!r} is not a parameter name or dotted path.")
        if cls not in classes:
            raise ValidationError(
                f"{path}: {cls!r} is not a class; use one of {', '.join(sorted(classes))}."
            )


def may_view_sensitive(viewer, *, action=None) -> bool:
    """Whether ``viewer`` (a user, or None for notifications) sees declared values in full.

    People need ``autonomy.view_sensitive``; the agent that sent ``action`` sees its own."""
    if viewer is None or not getattr(viewer, "is_authenticated", False):
        return False
    if action is not None and _is_sender(viewer, action):
        return True
    if hasattr(viewer, "agent"):  # another agent's service user: never
        return False
    return viewer.has_perm(PERMISSION)


def _is_sender(viewer, action) -> bool:
    agent = getattr(viewer, "agent", None)
    return agent is not None and agent.pk == action.agent_id


def mask(operation, value: Any, *, viewer, result: bool = False, action=None) -> Any:
    """``value`` (an action's parameters, or its result when ``result``) as ``viewer`` may see
    it: a copy with every declared value replaced by its mask; the value itself when the
    viewer may see it or nothing is declared. Never changes ``value``."""
    declaration = (
        getattr(operation, "sensitive_results" if result else "sensitive_params", None) or {}
    )
    if not declaration or value is None or may_view_sensitive(viewer, action=action):
        return value
    return apply(declaration, value)


def apply(declaration: Mapping[str, str], value: Any) -> Any:
    """A copy of ``value`` with every path of ``declaration`` masked (no viewer check)."""
    out = copy.deepcopy(value)
    for path, cls in declaration.items():
        _mask_path(out, path.split("."), cls)
    return out


def _mask_path(node: Any, parts: list[str], cls: str) -> None:
    if isinstance(node, list):
        for item in node:
            _mask_path(item, parts, cls)
        return
    if not isinstance(node, dict) or parts[0] not in node:
        return
    key, rest = parts[0], parts[1:]
    if rest:
        _mask_path(node[key], rest, cls)
    elif node[key] is not None:
        node[key] = _masked_leaf(node[key], cls)


def _masked_leaf(value: Any, cls: str) -> Any:
    # A list of values (several IBANs) keeps its length; each is hidden.
    if isinstance(value, list):
        return [masked(cls) for _ in value]
    return masked(cls)


def params_for(action, *, viewer) -> Any:
    """An action's parameters as ``viewer`` may see them."""
    return mask(action.operation, action.params, viewer=viewer, action=action)


def outcome_for(action, *, viewer) -> Any:
    """An action's result as ``viewer`` may see them."""
    return mask(action.operation, action.outcome, viewer=viewer, result=True, action=action)


def payload_for(operation, payload: Any, *, viewer, action=None) -> Any:
    """An audit record's payload as ``viewer`` may see it: its ``params`` and ``outcome``
    masked by ``operation``'s declarations (the record itself keeps them in full)."""
    if operation is None or not isinstance(payload, dict):
        return payload
    if may_view_sensitive(viewer, action=action):
        return payload
    out = dict(payload)
    for key in PARAMS_KEYS:
        if key in out:
            out[key] = mask(operation, out[key], viewer=None)
    for key in RESULT_KEYS:
        if key in out:
            out[key] = mask(operation, out[key], viewer=None, result=True)
    return out


def declared_class(operation, param: str) -> str | None:
    """The class of the declaration covering parameter ``param`` (a dotted path), if any."""
    for path, cls in (getattr(operation, "sensitive_params", None) or {}).items():
        if param == path or param.startswith(path + "."):
            return cls
    return None


def reasons_for(action, *, viewer) -> list:
    """The gate's reasons as ``viewer`` may see them: a content rule's matches and excerpt
    quote the parameter they were found in, so in a declared parameter they are masked."""
    reasons = action.reasons or []
    if may_view_sensitive(viewer, action=action) or not action.operation.sensitive_params:
        return reasons
    out = []
    for reason in reasons:
        details = reason.get("details") if isinstance(reason, dict) else None
        param = details.get("param") if isinstance(details, dict) else None
        cls = declared_class(action.operation, param) if isinstance(param, str) else None
        if cls is None:
            out.append(reason)
            continue
        hidden = dict(details)
        if "matches" in hidden:
            hidden["matches"] = [
                {**m, "match": masked(cls)} if isinstance(m, dict) else masked(cls)
                for m in hidden["matches"] or []
            ]
        if hidden.get("excerpt"):
            hidden["excerpt"] = masked(cls)
        out.append({**reason, "details": hidden})
    return out


def restore(operation, edited: Any, stored: Any) -> Any:
    """Parameters a person edited from a masked view, with every mask still in place put
    back to the stored value: an approver who changes the amount keeps the IBAN they never
    saw, and never turns it into ``"•••• (financial)"``."""
    declaration = getattr(operation, "sensitive_params", None) or {}
    if not declaration or not isinstance(edited, dict):
        return edited
    out = copy.deepcopy(edited)
    for path, cls in declaration.items():
        _restore_path(out, stored, path.split("."), cls)
    return out


def _restore_path(edited: Any, stored: Any, parts: list[str], cls: str) -> None:
    if isinstance(edited, list) and isinstance(stored, list):
        for mine, theirs in zip(edited, stored, strict=False):
            _restore_path(mine, theirs, parts, cls)
        return
    if not isinstance(edited, dict) or not isinstance(stored, dict) or parts[0] not in edited:
        return
    key, rest = parts[0], parts[1:]
    if rest:
        _restore_path(edited[key], stored.get(key), rest, cls)
    elif key in stored and edited[key] == _masked_leaf(stored[key], cls):
        edited[key] = copy.deepcopy(stored[key])
