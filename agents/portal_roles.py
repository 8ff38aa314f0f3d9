"""The portal's human roles and what each may do. IdP groups map onto these (settings)."""

from django.db import models


class PortalRole(models.TextChoices):
    IT_ADMIN = "it_admin", "IT admin"
    RISK_OFFICER = "risk_officer", "Risk officer"
    APPROVER = "approver", "Approver"
    AUDITOR = "auditor", "Auditor"
    VIEWER = "viewer", "Viewer"


def group_name(role: str) -> str:
    return f"Portal: {PortalRole(role).label}"


_REGISTRY_MODELS = ("agent", "businessunit", "role", "credential")
_VIEW_REGISTRY = [f"agents.view_{m}" for m in _REGISTRY_MODELS]

# app_label.codename per role. IT admins run the registry; risk officers can stop agents;
# auditors read everything including history; approvers and viewers read the registry.
PERMISSIONS: dict[str, list[str]] = {
    PortalRole.IT_ADMIN: [
        f"agents.{action}_{m}" for m in _REGISTRY_MODELS for action in ("view", "add", "change")
    ]
    + ["auditlog.view_logentry", "auth.view_user"],
    PortalRole.RISK_OFFICER: _VIEW_REGISTRY
    + ["agents.change_agent", "agents.change_credential", "auditlog.view_logentry"],
    PortalRole.APPROVER: _VIEW_REGISTRY,
    PortalRole.AUDITOR: _VIEW_REGISTRY + ["auditlog.view_logentry", "auth.view_user"],
    PortalRole.VIEWER: _VIEW_REGISTRY,
}
