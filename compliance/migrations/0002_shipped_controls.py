"""The shipped control map: each control of the product, what implements it, the records that
prove it, and the NIST AI RMF 1.0 subcategories, EU AI Act articles (obligations of
deployers, Art. 26, and the oversight and logging they rely on, Art. 12 and 14) and
ISO/IEC 42001:2023 clauses and Annex A controls it answers. Risk officers edit it in the
admin; a control already there (by ref) is left as it is."""

from django.db import migrations

NIST, EU, ISO = "nist_ai_rmf", "eu_ai_act", "iso_42001"

CONTROLS = [
    {
        "ref": "AOS-GOV-01",
        "title": "Policy-as-code governs every agent action",
        "description": "Organisational rules for what agents may do are written as Cedar "
        "policies and evaluated on every action; nothing reaches a business system around "
        "them.",
        "feature": "Policies (Admin → Policies), evaluated by the gate for every action, "
        "workflow step and MCP tool call.",
        "evidence": "Policy rows in force with their versions and text hashes "
        "(policies_in_force.json).",
        "evidence_key": "policies_in_force",
        "mappings": [
            (NIST, "GOVERN 1.2"), (NIST, "GOVERN 1.4"), (EU, "Art. 26(1)"),
            (ISO, "Clause 5.2"), (ISO, "Annex A.2.2"), (ISO, "Annex A.9.2"),
        ],
    },
    {
        "ref": "AOS-GOV-02",
        "title": "Policy changes are versioned and attributed",
        "description": "Every change to a policy records an immutable version with its "
        "author, and every decision names the versions that made it, so the rules in force "
        "at any time can be shown.",
        "feature": "Policy history (immutable PolicyVersion and PolicySetVersion rows, "
        "diffs and rollback), each change also an audit record (policy_version).",
        "evidence": "Policy versions recorded in the period.",
        "evidence_key": "policy_changes",
        "mappings": [
            (NIST, "GOVERN 1.4"), (NIST, "MANAGE 4.1"),
            (ISO, "Clause 7.5"), (ISO, "Annex A.2.4"),
        ],
    },
    {
        "ref": "AOS-GOV-03",
        "title": "Inventory of AI agents with accountable owners",
        "description": "Every agent is registered with an owner, a business unit, a role "
        "and a risk tier before it can act.",
        "feature": "Agent registry (Admin → Agents), each agent a service principal.",
        "evidence": "Agent rows at the period's end; registry changes in the audit log.",
        "evidence_key": "agents_registered",
        "mappings": [
            (NIST, "GOVERN 1.6"), (NIST, "GOVERN 2.1"), (NIST, "MAP 1.1"),
            (ISO, "Clause 4.3"), (ISO, "Annex A.3.2"), (ISO, "Annex A.4.2"),
        ],
    },
    {
        "ref": "AOS-GOV-04",
        "title": "Roles and separation of duties for oversight",
        "description": "People act through portal roles (IT admin, risk officer, approver, "
        "auditor, viewer) mapped from the identity provider; an agent's owner never "
        "approves its action alone.",
        "feature": "Portal roles and IdP group mapping; separation of duties in approvals.",
        "evidence": "Admin changes to roles, groups and grants (django-auditlog entries).",
        "evidence_key": "registry_changes",
        "mappings": [
            (NIST, "GOVERN 2.1"), (NIST, "GOVERN 3.2"), (EU, "Art. 26(2)"),
            (ISO, "Clause 5.3"), (ISO, "Annex A.3.2"),
        ],
    },
    {
        "ref": "AOS-ACC-01",
        "title": "Least privilege on connector operations",
        "description": "An agent may call only the operations it or its role was granted; "
        "grants and revocations are recorded.",
        "feature": "Object grants on connector operations (guardian), checked by the gate.",
        "evidence": "Audit records of kind grant.",
        "evidence_key": "grant_changes",
        "mappings": [
            (NIST, "MANAGE 1.3"), (NIST, "MEASURE 2.7"), (EU, "Art. 26(1)"),
            (ISO, "Clause 6.1.3"), (ISO, "Annex A.9.2"),
        ],
    },
    {
        "ref": "AOS-ACC-02",
        "title": "Agent credentials are hashed, expiring and revocable",
        "description": "Agents authenticate with credentials stored only as hashes, with "
        "expiry and an overlap window on rotation; a revoked credential is refused on the "
        "next request.",
        "feature": "Agent credentials (Admin → Credentials), rotation and revocation.",
        "evidence": "Credential rows issued or revoked in the period.",
        "evidence_key": "credential_events",
        "mappings": [(NIST, "MEASURE 2.7"), (ISO, "Annex A.4.5"), (ISO, "Clause 8.1")],
    },
    {
        "ref": "AOS-ACC-03",
        "title": "Periodic review of agents' and people's access",
        "description": "Owners and risk officers confirm or revoke each agent's grants and "
        "each person's portal role on a schedule.",
        "feature": "Access reviews.",
        "evidence": "Access reviews opened in the period, with how their items were answered (reviews.json).",
        "evidence_key": "access_reviews",
        "mappings": [
            (NIST, "GOVERN 1.5"), (EU, "Art. 26(2)"),
            (ISO, "Clause 9.1"), (ISO, "Clause 9.3"),
        ],
    },
    {
        "ref": "AOS-OPS-01",
        "title": "A recorded decision before every action",
        "description": "Every action an agent asks for is decided (allow, deny, needs "
        "approval) with its reasons, matched policies and risk score before it runs.",
        "feature": "The gate (POST /api/v1/actions/), one decision function for every path.",
        "evidence": "Audit records of kind action_decision; decision statistics "
        "(decisions.json).",
        "evidence_key": "action_decisions",
        "mappings": [
            (NIST, "MANAGE 1.3"), (NIST, "MEASURE 2.4"), (EU, "Art. 26(1)"),
            (ISO, "Clause 8.1"), (ISO, "Annex A.6.2.6"),
        ],
    },
    {
        "ref": "AOS-OPS-02",
        "title": "Risk assessment of each action",
        "description": "Each action is scored for risk (operation sensitivity, data class, "
        "amount, agent history, drift) and the score decides whether people are asked.",
        "feature": "Risk scoring in the gate; risk thresholds and approval policies.",
        "evidence": "Actions denied by policy, limits or risk in the period, with their "
        "reason codes.",
        "evidence_key": "denied_actions",
        "mappings": [
            (NIST, "MEASURE 1.1"), (NIST, "MAP 4.1"),
            (ISO, "Clause 6.1.2"), (ISO, "Clause 8.2"),
        ],
    },
    {
        "ref": "AOS-HUM-01",
        "title": "People approve high-risk actions",
        "description": "Actions above the risk threshold or matched by an approval policy "
        "wait for a person, who may approve, change or reject them.",
        "feature": "Approval inbox, e-mail approval links, approval API.",
        "evidence": "Approval decisions with approver, verdict and time (approvals.json).",
        "evidence_key": "approval_decisions",
        "mappings": [
            (NIST, "MAP 3.5"), (NIST, "GOVERN 3.2"), (EU, "Art. 14(4)(d)"),
            (EU, "Art. 26(2)"), (ISO, "Annex A.9.2"), (ISO, "Annex A.9.3"),
        ],
    },
    {
        "ref": "AOS-HUM-02",
        "title": "Approvals have quorum, expiry and escalation",
        "description": "Each request names who may decide, how many must agree and until "
        "when; undecided requests escalate and expire to a safe outcome.",
        "feature": "Approval routes and stages, quorum, expiry, escalation (Celery beat).",
        "evidence": "Approval requests opened in the period with their outcomes.",
        "evidence_key": "approval_requests",
        "mappings": [(NIST, "MAP 3.5"), (EU, "Art. 26(2)"), (ISO, "Clause 8.1")],
    },
    {
        "ref": "AOS-HUM-03",
        "title": "People can pause, kill or override an agent",
        "description": "An IT admin or risk officer can pause, quarantine or kill an agent "
        "and override a pending decision; it takes effect on the agent's next request.",
        "feature": "Intervention buttons and API (/interventions/).",
        "evidence": "Intervention rows and their audit records (interventions.json).",
        "evidence_key": "interventions",
        "mappings": [
            (NIST, "MANAGE 2.4"), (EU, "Art. 14(4)(e)"), (EU, "Art. 26(5)"),
            (ISO, "Annex A.6.2.6"), (ISO, "Annex A.9.2"),
        ],
    },
    {
        "ref": "AOS-HUM-04",
        "title": "Emergency stop of a unit or the whole fleet",
        "description": "One action stops every active agent of a business unit or the "
        "fleet; lifting it is a recorded decision too.",
        "feature": "Emergency stop (/interventions/stop/).",
        "evidence": "Emergency stops and lifts in the period.",
        "evidence_key": "emergency_stops",
        "mappings": [
            (NIST, "MANAGE 2.3"), (NIST, "MANAGE 2.4"), (EU, "Art. 14(4)(e)"),
            (EU, "Art. 26(5)"), (ISO, "Clause 10.2"),
        ],
    },
    {
        "ref": "AOS-MON-01",
        "title": "Agents' behaviour is monitored in operation",
        "description": "Each agent's behaviour is compared with its baseline; drift raises "
        "a flag with evidence, and can quarantine the agent.",
        "feature": "Behaviour baselines and drift flags; live activity and dashboard.",
        "evidence": "Drift flags raised in the period.",
        "evidence_key": "drift_flags",
        "mappings": [
            (NIST, "MEASURE 2.4"), (NIST, "MEASURE 3.1"), (NIST, "MANAGE 4.1"),
            (EU, "Art. 26(5)"), (ISO, "Clause 9.1"), (ISO, "Annex A.6.2.6"),
        ],
    },
    {
        "ref": "AOS-LOG-01",
        "title": "Tamper-evident, retained logs of every decision",
        "description": "Every decision, outcome, approval and intervention is appended to "
        "a keyed hash chain whose signed heads are published outside the database; logs "
        "are kept at least six months.",
        "feature": "Audit trail (autonomy.audit), verify_audit, signed checkpoints.",
        "evidence": "Audit records of the period and their verification against the "
        "published head (audit_records.jsonl, audit_verification.json).",
        "evidence_key": "audit_records",
        "mappings": [
            (NIST, "MEASURE 2.8"), (EU, "Art. 12"), (EU, "Art. 26(6)"),
            (ISO, "Annex A.6.2.8"), (ISO, "Clause 7.5"),
        ],
    },
    {
        "ref": "AOS-LOG-02",
        "title": "Configuration changes are attributed",
        "description": "Changes made in the admin to agents, connectors, operations, "
        "grants and settings are recorded field by field with who made them.",
        "feature": "django-auditlog on the registry, chained into the audit trail.",
        "evidence": "Audit log entries (LogEntry) of the period.",
        "evidence_key": "registry_changes",
        "mappings": [(NIST, "GOVERN 1.4"), (EU, "Art. 26(6)"), (ISO, "Clause 7.5")],
    },
    {
        "ref": "AOS-LOG-03",
        "title": "Signed evidence packs for auditors and authorities",
        "description": "A risk officer or auditor downloads, per period, a signed archive "
        "of the policies in force, decisions, approvals, interventions, reviews and the "
        "verified audit log.",
        "feature": "Compliance page (/compliance/), manage.py evidence_pack and "
        "evidence_verify.",
        "evidence": "Audit records of kind evidence_pack_exported.",
        "evidence_key": "evidence_exports",
        "mappings": [
            (NIST, "GOVERN 1.1"), (EU, "Art. 26(12)"),
            (ISO, "Clause 9.2"), (ISO, "Annex A.8.3"),
        ],
    },
    {
        "ref": "AOS-AUT-01",
        "title": "Graduated autonomy and staged rollouts",
        "description": "Agents start in shadow or supervised mode and gain autonomy in "
        "waves, each promotion approved against measured figures and each demotion "
        "recorded.",
        "feature": "Autonomy levels, standing approvals, rollout plans (/rollouts/).",
        "evidence": "Rollout promotions and demotions in the period.",
        "evidence_key": "rollout_events",
        "mappings": [
            (NIST, "GOVERN 1.3"), (NIST, "MANAGE 1.3"), (EU, "Art. 26(1)"),
            (ISO, "Clause 6.1.3"), (ISO, "Annex A.6.2.5"),
        ],
    },
    {
        "ref": "AOS-DAT-01",
        "title": "Personal data in actions is blocked or redacted",
        "description": "Content rules detect personal data and secrets in action "
        "parameters and block, redact or log them before they are stored or sent.",
        "feature": "Content rules (Admin → Content rules), applied by the gate.",
        "evidence": "Enabled content rules at the period's end.",
        "evidence_key": "content_rules",
        "mappings": [
            (NIST, "MEASURE 2.10"), (EU, "Art. 26(9)"),
            (ISO, "Clause 6.1.3"), (ISO, "Annex A.5.4"),
        ],
    },
    {
        "ref": "AOS-TRN-01",
        "title": "Every action is attributable and explainable",
        "description": "Each action names its agent, owner, reasons and outcome, and its "
        "trace shows why it was allowed; the deployer uses these records to inform workers "
        "and affected persons.",
        "feature": "Action trace pages, agent detail, live activity.",
        "evidence": "Audit records of action outcomes in the period.",
        "evidence_key": "action_outcomes",
        "mappings": [
            (NIST, "MEASURE 2.8"), (EU, "Art. 26(7)"), (EU, "Art. 26(11)"),
            (ISO, "Annex A.8.2"),
        ],
    },
]


def ship_controls(apps, schema_editor):
    Control = apps.get_model("compliance", "Control")
    FrameworkMapping = apps.get_model("compliance", "FrameworkMapping")
    for spec in CONTROLS:
        fields = {k: v for k, v in spec.items() if k not in ("ref", "mappings")}
        control, created = Control.objects.get_or_create(ref=spec["ref"], defaults=fields)
        if created:
            FrameworkMapping.objects.bulk_create(
                FrameworkMapping(control=control, framework=framework, ref=ref)
                for framework, ref in spec["mappings"]
            )


def unship_controls(apps, schema_editor):
    Control = apps.get_model("compliance", "Control")
    Control.objects.filter(ref__in=[spec["ref"] for spec in CONTROLS]).delete()


class Migration(migrations.Migration):
    dependencies = [("compliance", "0001_controls")]

    operations = [migrations.RunPython(ship_controls, unship_controls)]
