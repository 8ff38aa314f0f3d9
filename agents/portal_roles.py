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


_REGISTRY_MODELS = ("agent", "businessunit", "role", "credential", "blueprint")
_VIEW_REGISTRY = [f"agents.view_{m}" for m in _REGISTRY_MODELS]
_KERNEL_MODELS = (
    "connector", "operation", "policy", "autonomysetting", "contentrule", "standingapproval",
)  # fmt: skip
_ROLLOUT_MODELS = ("rolloutplan", "rolloutwave", "rolloutpromotion", "rolloutevent")
# Policy history is read by whoever reads policies; nobody writes it but the policy services.
_POLICY_HISTORY = ["autonomy.view_policyversion", "autonomy.view_policysetversion"]
_VIEW_KERNEL = (
    [f"autonomy.view_{m}" for m in _KERNEL_MODELS]
    + [f"autonomy.view_{m}" for m in _ROLLOUT_MODELS]
    + ["autonomy.view_actionrequest", "autonomy.view_memoryentry"]
    + _POLICY_HISTORY
)
_VIEW_WORKFLOWS = ["workflows.view_template", "workflows.view_step", "workflows.view_run"]
# Access reviews (the reviews app): risk officers open and answer them, IT admins answer,
# auditors read.
_REVIEW_VIEW = ["reviews.view_accessreview"]
_REVIEW_ANSWER = _REVIEW_VIEW + ["reviews.answer_accessreview"]
_HISTORY = [
    "auditlog.view_logentry",
    "autonomy.view_auditrecord",
    "approvals.view_approvalrequest",
]

# The compliance evidence: risk officers edit the control map; both they and auditors see
# it and download evidence packs.
_COMPLIANCE_READ = [
    "compliance.view_control",
    "compliance.view_frameworkmapping",
    "compliance.export_evidence",
]
_COMPLIANCE_EDIT = [
    f"compliance.{action}_{m}"
    for m in ("control", "frameworkmapping")
    for action in ("add", "change", "delete")
]
# Who sees the sensitive parameters and results operations declare (``autonomy.masking``):
# least privilege. Risk officers (they investigate) and auditors (they read the evidence) do;
# approvers decide on the masked values and the risk score, and viewers and IT admins never
# need them.
_SENSITIVE = ["autonomy.view_sensitive"]

# app_label.codename per role. IT admins run the registry and the connectors; risk officers
# write policies and content rules, grant and revoke standing approvals, set autonomy
# levels, run rollout plans (propose promotions, demote waves), correct, delete and purge
# shared memory, set approval routes (stages and escalation rules), and can stop agents;
# auditors read everything
# including both histories; approvers and viewers read the registry and what agents did.
# IT admins author workflow templates; everyone reads templates and runs.
PERMISSIONS: dict[str, list[str]] = {
    PortalRole.IT_ADMIN: [
        f"agents.{action}_{m}" for m in _REGISTRY_MODELS for action in ("view", "add", "change")
    ]
    + [f"autonomy.{action}_{m}" for m in _KERNEL_MODELS for action in ("view", "add", "change")]
    + ["autonomy.view_actionrequest", "autonomy.view_memoryentry", "auth.view_user"]
    + [f"autonomy.view_{m}" for m in _ROLLOUT_MODELS]
    + _POLICY_HISTORY
    + [
        f"workflows.{action}_{m}"
        for m in ("template", "step")
        for action in ("view", "add", "change")
    ]
    + ["workflows.view_run"]
    + _REVIEW_ANSWER
    + _HISTORY,
    PortalRole.RISK_OFFICER: _VIEW_REGISTRY
    + _VIEW_KERNEL
    + ["agents.change_agent", "agents.change_credential"]
    + ["autonomy.add_policy", "autonomy.change_policy"]
    + [f"autonomy.{action}_autonomysetting" for action in ("add", "change", "delete")]
    + [f"autonomy.{action}_contentrule" for action in ("add", "change", "delete")]
    + [f"autonomy.{action}_standingapproval" for action in ("add", "change")]
    + [
        f"autonomy.{action}_{m}"
        for m in ("rolloutplan", "rolloutwave")
        for action in ("add", "change")
    ]
    + ["autonomy.promote_rolloutplan"]
    + [f"autonomy.{action}_memoryentry" for action in ("change", "delete", "purge")]
    + [
        f"approvals.{action}_{m}"
        for m in ("approvalroute", "routestage")
        for action in ("view", "add", "change", "delete")
    ]
    + _VIEW_WORKFLOWS
    + _HISTORY
    + _COMPLIANCE_READ
    + _COMPLIANCE_EDIT
    + _SENSITIVE
    + _REVIEW_ANSWER
    + ["reviews.add_accessreview"],
    PortalRole.APPROVER: _VIEW_REGISTRY + _VIEW_KERNEL + _VIEW_WORKFLOWS,
    PortalRole.AUDITOR: _VIEW_REGISTRY
    + _VIEW_KERNEL
    + _VIEW_WORKFLOWS
    + _HISTORY
    + ["auth.view_user"]
    + _COMPLIANCE_READ
    + _SENSITIVE
    + _REVIEW_VIEW,
    PortalRole.VIEWER: _VIEW_REGISTRY + _VIEW_KERNEL + _VIEW_WORKFLOWS,
}


def is_portal_person(user) -> bool:
    """A person of the portal: a superuser, or staff holding any portal role. Never an agent's
    service user. The one check behind the pages that show what agents do."""
    if not getattr(user, "is_authenticated", False) or hasattr(user, "agent"):
        return False
    if user.is_superuser:
        return True
    return user.is_staff and user.groups.filter(name__startswith="Portal: ").exists()
