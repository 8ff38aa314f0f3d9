"""Conditions and input mappings over a run's context, without ``eval``.

A condition is ``<path> <op> <literal>`` or a bare ``<path>`` (truthy), where a path is a
dotted name into the context (``invoice.amount``), ``op`` one of ``== != > >= < <= in``, and
the literal JSON (``10000``, ``"gold"``, ``["a", "b"]``, ``true``). An input mapping value
``"$.invoice.amount"`` reads the context; any other value is taken literally.
"""

import json
import operator
import re
from typing import Any

_MISSING = object()
_PATH = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*"
_CONDITION = re.compile(
    rf"^\s*(?P<path>{_PATH})\s*(?:(?P<op>==|!=|>=|<=|>|<|\bin\b)\s*(?P<lit>.+?))?\s*$"
)
_OPS = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "in": lambda left, right: left in right,
}


class ConditionError(ValueError):
    """The text is not a condition this module understands."""


def lookup(context: dict, path: str, default: Any = None) -> Any:
    value: Any = context
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return default
    return value


def parse(text: str) -> tuple[str, str | None, Any]:
    match = _CONDITION.match(text or "")
    if not match:
        raise ConditionError(f"{text!r} is not '<path> <op> <value>' (ops: {', '.join(_OPS)}).")
    op, literal = match["op"], None
    if op:
        try:
            literal = json.loads(match["lit"])
        except ValueError as exc:
            raise ConditionError(f"{match['lit']!r} in {text!r} is not a JSON value.") from exc
    return match["path"], op, literal


def holds(text: str, context: dict) -> bool:
    """Whether the condition holds; an empty condition always does, a missing value never."""
    if not (text or "").strip():
        return True
    path, op, literal = parse(text)
    value = lookup(context, path, _MISSING)
    if op is None:
        return value is not _MISSING and bool(value)
    if value is _MISSING:
        return False
    try:
        return bool(_OPS[op](value, literal))
    except TypeError:
        return False


def resolve(mapping: dict, context: dict) -> dict:
    """Build a step's input from its mapping; ``"$.path"`` values read the context."""
    resolved = {}
    for name, source in (mapping or {}).items():
        if isinstance(source, str) and source.startswith("$."):
            value = lookup(context, source[2:], _MISSING)
            if value is not _MISSING:
                resolved[name] = value
        elif isinstance(source, dict):
            resolved[name] = resolve(source, context)
        else:
            resolved[name] = source
    return resolved


def paths(mapping: dict) -> list[str]:
    """The context paths a mapping reads (to check them and to show them)."""
    found = []
    for source in (mapping or {}).values():
        if isinstance(source, str) and source.startswith("$."):
            found.append(source[2:])
        elif isinstance(source, dict):
            found.extend(paths(source))
    return found
