"""Reads of governance as code: the live configuration as a bundle, and the plan of a bundle
against it."""

import socket

from django.utils import timezone

from autonomy.errors import DomainError
from governance import bundle
from governance.plans import Plan
from governance.sections import BY_NAME, SECTIONS


def may_manage_governance(*, user) -> bool:
    """Who reads the whole configuration and plans bundles: a signed-in, active person (never
    an agent's service user) who runs the registry (IT admins) or owns policies."""
    from autonomy.policy.services import may_change_policy

    if not (getattr(user, "is_authenticated", False) and user.is_active):
        return False
    if hasattr(user, "agent"):
        return False
    return user.has_perm("agents.change_businessunit") or may_change_policy(user=user)


def live_files() -> dict[str, str]:
    """Every section's files as live governance is now (no header)."""
    files = {}
    for section in SECTIONS:
        files.update(section.export())
    return files


def live_digest() -> str:
    return bundle.digest(live_files())


def bundle_export(*, previous_header: str | None = None, source: str = "") -> dict[str, str]:
    """The live configuration as a bundle. A previous header whose digest still matches is
    kept as it is, so exporting an unchanged configuration again changes no byte."""
    files = live_files()
    if previous_header is not None:
        try:
            kept = bundle.yaml_data(previous_header, path=bundle.HEADER)
        except DomainError:  # an unreadable old header is simply replaced
            kept = None
        if isinstance(kept, dict) and kept.get("digest") == bundle.digest(files):
            return {**files, bundle.HEADER: previous_header}
    header = bundle.header_text(
        files=files,
        source=source or socket.gethostname(),
        generated_at=timezone.now().replace(microsecond=0).isoformat(),
        sections=[section.name for section in SECTIONS],
    )
    return {**files, bundle.HEADER: header}


def bundle_plan(*, files: dict[str, str]) -> Plan:
    """What applying the bundle would change, section by section, with every error found.
    A section the header does not list is left alone (a bundle may hold only policies)."""
    header = bundle.header_of(files)
    managed = header.get("sections", [s.name for s in SECTIONS])
    if not isinstance(managed, list) or any(name not in BY_NAME for name in managed):
        known = ", ".join(BY_NAME)
        raise bundle.invalid(f"{bundle.HEADER}: sections is a list of: {known}.")
    warnings = [
        f"{path} belongs to no section the bundle manages; it is ignored"
        for path in sorted(files)
        if path != bundle.HEADER and not any(BY_NAME[name].owns(path) for name in managed)
    ]
    current = live_files()
    changes = []
    for section in SECTIONS:
        if section.name in managed:
            wanted = section.load(files)
            changes.extend(section.plan(wanted, live=section.load(current)))
    return Plan(
        changes=tuple(changes),
        live_digest=bundle.digest(current),
        bundle_digest=bundle.digest(files),
        sections=tuple(name for name in BY_NAME if name in managed),
        warnings=tuple(warnings),
    )
