"""What a bundle would change: ``Change`` per object, ``Plan`` for the bundle, and the plan
as text (terraform-like: ``+`` add, ``~`` change, ``-`` remove) and as JSON."""

import difflib
import json
from dataclasses import dataclass, field
from typing import Any


class Op:
    ADD = "add"
    CHANGE = "change"
    REMOVE = "remove"


SIGN = {Op.ADD: "+", Op.CHANGE: "~", Op.REMOVE: "-"}


@dataclass(frozen=True)
class Change:
    section: str
    op: str
    key: str
    before: Any = None  # the live item (None when added)
    after: Any = None  # the bundle's item (None when removed)
    lines: tuple[str, ...] = ()  # what changes: fields, a unified diff of text
    errors: tuple[str, ...] = ()  # why it cannot be applied; any makes the plan invalid
    note: str = ""  # e.g. that the service it goes through may hold it for approval
    applies: bool = True  # False: shown, never applied (a removal bundles do not make)

    def as_dict(self) -> dict:
        return {
            "section": self.section,
            "op": self.op,
            "key": self.key,
            "lines": list(self.lines),
            "errors": list(self.errors),
            "note": self.note,
            "applies": self.applies,
        }


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    live_digest: str
    bundle_digest: str
    sections: tuple[str, ...]  # what the bundle manages; a section without its file is left
    warnings: tuple[str, ...] = field(default=())

    @property
    def valid(self) -> bool:
        return not any(change.errors for change in self.changes)

    def to_apply(self, *, prune: bool) -> list[Change]:
        return [c for c in self.changes if c.applies and (prune or c.op != Op.REMOVE)]

    def counts(self, *, prune: bool = True) -> dict[str, int]:
        counts = {Op.ADD: 0, Op.CHANGE: 0, Op.REMOVE: 0}
        for change in self.to_apply(prune=prune):
            counts[change.op] += 1
        return counts

    def as_dict(self) -> dict:
        return {
            "valid": self.valid,
            "live_digest": self.live_digest,
            "bundle_digest": self.bundle_digest,
            "sections": list(self.sections),
            "counts": self.counts(),
            "changes": [change.as_dict() for change in self.changes],
            "warnings": list(self.warnings),
        }


def text_diff(before: str, after: str, *, name: str) -> list[str]:
    """A unified diff of two texts, live against bundle."""
    return list(
        difflib.unified_diff(
            before.splitlines(),
            after.splitlines(),
            fromfile=f"live/{name}",
            tofile=f"bundle/{name}",
            lineterm="",
        )
    )


def field_lines(before: dict, after: dict, *, texts: dict[str, str] | None = None) -> list[str]:
    """``field: old -> new`` per changed field; fields named in ``texts`` (field -> file
    name) as a unified diff instead."""
    texts = texts or {}
    lines = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if name in texts:
            lines.extend(text_diff(old or "", new or "", name=texts[name]))
        else:
            lines.append(
                f"{name}: {json.dumps(old, default=str)} -> {json.dumps(new, default=str)}"
            )
    return lines


def render(plan: Plan, *, prune: bool = False) -> str:
    """The plan as a person reads it before applying."""
    out = []
    for warning in plan.warnings:
        out.append(f"warning: {warning}")
    section = None
    for change in plan.changes:
        if change.section != section:
            section = change.section
            out.append(f"\n{section}:")
        tail = ""
        if change.op == Op.REMOVE and not change.applies:
            tail = "  (not in the bundle; bundles never remove these)"
        elif change.op == Op.REMOVE and not prune:
            tail = "  (removed only with --prune)"
        out.append(f"  {SIGN[change.op]} {change.key}{tail}")
        out.extend(f"      {line}" for line in change.lines)
        if change.note:
            out.append(f"      note: {change.note}")
        out.extend(f"      ! invalid: {error}" for error in change.errors)
    counts = plan.counts(prune=prune)
    if not plan.changes:
        out.append("No changes: live governance matches the bundle.")
    elif not plan.valid:
        out.append(
            "\nThe bundle is invalid: nothing can be applied until the errors (!) are fixed."
        )
    else:
        out.append(
            f"\nPlan: {counts[Op.ADD]} to add, {counts[Op.CHANGE]} to change, "
            f"{counts[Op.REMOVE]} to remove."
        )
        skipped = len(plan.to_apply(prune=True)) - len(plan.to_apply(prune=prune))
        if skipped:
            out.append(f"{skipped} removal(s) shown apply only with --prune.")
    out.append(f"Live digest: {plan.live_digest}")
    return "\n".join(out).lstrip("\n") + "\n"
