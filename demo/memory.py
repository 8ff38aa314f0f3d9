"""Demo shared memory: what customer-ops agents already remember about customers, written
through the gate by the agents themselves (``memory.write``), so each entry has its real
provenance and audit trail. Agents of other units cannot read these entries."""

from agents.models import Agent, AgentStatus
from autonomy import actions
from autonomy.models import ActionStatus, MemoryEntry

# role of the writer, key, value, scope, sensitivity
ENTRIES = [
    ("support-agent", "customer:4411:contact", "prefers e-mail", "unit", "internal"),
    ("support-agent", "customer:4411:language", "German", "unit", "internal"),
    ("support-agent", "customer:5120:contact", "prefers phone, mornings only", "unit", "internal"),
    ("onboarding-agent", "customer:5120:kyc", "passport checked on 2026-11-02", "unit",
     "confidential"),
    ("support-agent", "playbook:refund-tone", "apologise first, then offer the refund", "role",
     "internal"),
    ("incident-triager", "vpn:known-issue", "drops hourly on the Lisbon gateway; reboot fixes",
     "unit", "internal"),
]  # fmt: skip
CUSTOMERS = ["4411", "5120", "6032", "7718"]


def seed_memory() -> int:
    """Skipped once memory has entries. Returns how many were written."""
    if MemoryEntry.objects.exists():
        return 0
    written = 0
    for role, key, value, scope, sensitivity in ENTRIES:
        agent = (
            Agent.objects.select_related("role__group", "business_unit", "service_user")
            .filter(role__slug=role, status=AgentStatus.ACTIVE)
            .order_by("slug")
            .first()
        )
        if agent is None:  # a small demo may lack the role
            continue
        action, _ = actions.action_request(
            agent=agent,
            operation_key="memory.write",
            params={"key": key, "value": value, "scope": scope, "sensitivity": sensitivity},
            reason="demo: what the team learned last week",
        )
        written += action.status == ActionStatus.SUCCEEDED
    return written
