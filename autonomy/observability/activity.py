"""The live activity stream, read from the audit trail.

Everything worth watching (decisions, outcomes, approvals, hand-offs, interventions, grants,
runs) is appended to the audit trail in the same transaction as the change, and sealed into
its chain in order, so tailing it by ``seq`` loses nothing and costs no extra writes (the
stream's head seals what was appended and committed before it reads, unless the sealer is at
it already). A batch is read in a constant number
of queries: the records (filters are ``EXISTS`` sub-queries, never per-row look-ups), then
their agents and their actions, one query each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet

from agents.models import Agent
from autonomy import audit, masking
from autonomy.models import ActionRequest, AuditRecord

MAX_LIMIT = 200
# The newest page never scans further back than this many records, whatever the filters: a
# filter that matches nothing answers from a bounded range instead of the whole trail.
SCAN_WINDOW = 50_000

# What each kind of record is called on the page, and how it is coloured.
KIND_LOOK: dict[str, tuple[str, str]] = {
    "action_decision": ("Decision", "info"),
    "action_outcome": ("Outcome", "good"),
    "action_released": ("Released", "good"),
    "approval_opened": ("Approval asked", "wait"),
    "approval_decision": ("Approval decision", "info"),
    "approval_expired": ("Approval expired", "bad"),
    "approval_escalated": ("Approval escalated", "warn"),
    "approval_stage_passed": ("Approval stage passed", "info"),
    "intervention": ("Intervention", "bad"),
    "task_handoff": ("Hand-off", "info"),
    "message": ("Message", "muted"),
    "claim_granted": ("Claim granted", "muted"),
    "claim_expired": ("Claim expired", "warn"),
    "run_started": ("Run started", "info"),
    "run_finished": ("Run finished", "good"),
    "grant": ("Grant", "muted"),
    "template_published": ("Template published", "muted"),
    "model_change": ("Admin change", "muted"),
}
VERDICT_TONE = {"allow": "good", "deny": "bad", "needs_approval": "wait"}


@dataclass(frozen=True)
class ActivityFilters:
    """What a person narrowed the stream to; empty fields do not filter."""

    agent: str = ""  # agent slug
    business_unit: str = ""  # unit slug
    connector: str = ""  # connector slug
    decision: str = ""  # a Verdict value
    min_risk: int | None = None
    admin_changes: bool = False  # the admin's model changes are many and rarely live news

    @classmethod
    def from_query(cls, query) -> ActivityFilters:
        """Parse a query dict (``request.GET``); unparseable values are ignored."""
        try:
            min_risk = int(query.get("min_risk") or "")
        except ValueError:
            min_risk = None
        return cls(
            agent=(query.get("agent") or "").strip()[:100],
            business_unit=(query.get("unit") or "").strip()[:60],
            connector=(query.get("connector") or "").strip()[:60],
            decision=(query.get("decision") or "").strip()[:20],
            min_risk=None if min_risk is None else max(0, min(min_risk, 100)),
            admin_changes=query.get("admin") in ("1", "on", "true"),
        )

    @property
    def on_actions(self) -> bool:
        return bool(self.connector or self.decision or self.min_risk)

    def as_query(self) -> dict[str, str]:
        pairs = {
            "agent": self.agent,
            "unit": self.business_unit,
            "connector": self.connector,
            "decision": self.decision,
            "min_risk": "" if self.min_risk is None else str(self.min_risk),
            "admin": "1" if self.admin_changes else "",
        }
        return {k: v for k, v in pairs.items() if v}


ADMIN_KINDS = ("model_change",)


def _filtered(records: QuerySet, filters: ActivityFilters) -> QuerySet:
    if not filters.admin_changes:
        records = records.exclude(kind__in=ADMIN_KINDS)
    if filters.agent:
        records = records.filter(
            Exists(Agent.objects.filter(pk=OuterRef("agent_id"), slug=filters.agent))
        )
    if filters.business_unit:
        # An agent's events, and unit-wide ones (an emergency stop) that name the unit.
        of_unit = Agent.objects.filter(
            pk=OuterRef("agent_id"), business_unit__slug=filters.business_unit
        )
        records = records.filter(Exists(of_unit) | Q(payload__business_unit=filters.business_unit))
    if filters.on_actions:
        # Events of actions only: the action's connector, verdict and risk, in one EXISTS.
        actions = ActionRequest.objects.filter(pk=OuterRef("action_id"))
        if filters.connector:
            actions = actions.filter(operation__connector__slug=filters.connector)
        if filters.decision:
            actions = actions.filter(verdict=filters.decision)
        if filters.min_risk:
            actions = actions.filter(risk_score__gte=filters.min_risk)
        records = records.filter(action_id__isnull=False).filter(Exists(actions))
    return records


_FIELDS = ("seq", "created_at", "kind", "actor", "agent_id", "action_id", "payload")


def activity_since(
    *,
    after_seq: int | None,
    filters: ActivityFilters | None = None,
    limit: int = MAX_LIMIT,
    until_seq: int | None = None,
) -> list[dict]:
    """Events after ``after_seq`` (and up to ``until_seq``) in trail order, oldest first, at
    most ``limit``.

    With ``after_seq=None``: the newest ``limit`` events (still oldest first), for a page's
    first paint. Three queries whatever the number of events (four without ``until_seq``
    on a first paint), after sealing: one query when nothing waits to be sealed, a constant
    number more when some records do.
    """
    filters = filters or ActivityFilters()
    limit = max(1, min(limit, MAX_LIMIT))
    records = _filtered(AuditRecord.objects.all(), filters).values(*_FIELDS)
    if until_seq is not None:
        records = records.filter(seq__lte=until_seq)
    if after_seq is not None and until_seq is None:
        audit.seal(wait=False)  # as ``activity_head`` does (a stream calls it for until_seq)
    if after_seq is None:
        head = activity_head() if until_seq is None else until_seq
        rows = list(records.filter(seq__gt=head - SCAN_WINDOW).order_by("-seq")[:limit])
        rows.reverse()
    else:
        rows = list(records.filter(seq__gt=after_seq).order_by("seq")[:limit])
    return _events(rows)


def activity_head() -> int:
    """The newest record's seq (0 for an empty trail): where a stream without history starts.

    Records committed but not sealed yet are sealed first, without waiting for a sealer at
    work (that one is sealing them), so a stream sees what was just done."""
    audit.seal(wait=False)
    return AuditRecord.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


def _events(rows: list[dict]) -> list[dict]:
    agent_ids = {r["agent_id"] for r in rows if r["agent_id"]}
    action_ids = {r["action_id"] for r in rows if r["action_id"]}
    agents = {
        a["pk"]: a
        for a in Agent.objects.filter(pk__in=agent_ids).values(
            "pk", "slug", "name", "business_unit__slug", "business_unit__name"
        )
    } if agent_ids else {}  # fmt: skip
    actions = {
        a["pk"]: a
        for a in ActionRequest.objects.filter(pk__in=action_ids).values(
            "pk", "verdict", "risk_score", "status", "operation__slug", "operation__connector__slug"
        )
    } if action_ids else {}  # fmt: skip
    return [_event(r, agents.get(r["agent_id"]), actions.get(r["action_id"])) for r in rows]


def _event(row: dict, agent: dict | None, action: dict | None) -> dict:
    payload = row["payload"] or {}
    label, tone = KIND_LOOK.get(row["kind"], (row["kind"].replace("_", " ").capitalize(), "muted"))
    operation = ""
    if action:
        operation = f"{action['operation__connector__slug']}.{action['operation__slug']}"
    elif isinstance(payload.get("operation"), str):
        operation = payload["operation"]
    verdict = action["verdict"] if action else ""
    if row["kind"] == "action_decision":
        verdict = (payload.get("decision") or {}).get("verdict", verdict)
        tone = VERDICT_TONE.get(verdict, tone)
    elif row["kind"] == "action_outcome":
        tone = "good" if payload.get("status") == "succeeded" else "bad"
    return {
        "seq": row["seq"],
        "time": row["created_at"].isoformat(),
        "kind": row["kind"],
        "label": label,
        "tone": tone,
        "actor": row["actor"],
        "agent": {"slug": agent["slug"], "name": agent["name"]} if agent else None,
        "business_unit": (
            {"slug": agent["business_unit__slug"], "name": agent["business_unit__name"]}
            if agent
            else _named_unit(payload)
        ),
        "connector": operation.split(".", 1)[0] if operation else "",
        "operation": operation,
        "verdict": verdict,
        "verdict_label": verdict.replace("_", " "),
        "risk_score": action["risk_score"] if action else None,
        "action_id": str(row["action_id"]) if row["action_id"] else None,
        "summary": summary(row["kind"], payload, row["actor"], operation)[:200],
    }


def _named_unit(payload: dict) -> dict | None:
    slug = payload.get("business_unit")
    return {"slug": slug, "name": slug} if isinstance(slug, str) and slug else None


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def summary(kind: str, payload: dict, actor: str, operation: str) -> str:
    """One line saying what happened, from the record's own payload."""
    if kind == "action_decision":
        decision = payload.get("decision") or {}
        codes = [r.get("code", "") for r in decision.get("reasons") or [] if isinstance(r, dict)]
        why = f" ({', '.join(codes)})" if codes else ""
        verdict, score = decision.get("verdict", "?"), decision.get("risk_score", 0)
        return f"{operation}: {verdict}, risk {score}{why}"
    if kind == "action_outcome":
        error = payload.get("error") or {}
        tail = f": {error.get('message', '')}" if error else ""
        return f"{operation} {payload.get('status', '')}{tail}"
    if kind == "action_released":
        return f"{operation} approved, decided again: {payload.get('status', '')}"
    if kind == "approval_opened":
        who, quorum = payload.get("approvers", "approvers"), payload.get("quorum", 1)
        return f"{operation} waits for {who} (quorum {quorum})"
    if kind == "approval_stage_passed":
        stage, then = payload.get("stage", "?"), payload.get("next_stage", "?")
        who = payload.get("approvers", "approvers")
        return f"{operation}: stage {stage} approved; stage {then} waits for {who}"
    if kind == "approval_decision":
        verdict, via = payload.get("verdict", ""), payload.get("channel", "")
        return f"{actor} decided {verdict} via {via} → {payload.get('status', '')}"
    if kind == "intervention":
        what = payload.get("kind") or payload.get("intervention") or ""
        return f"{actor}: {what} — {_text(payload.get('reason'))}".strip()
    if kind in ("run_started", "run_finished"):
        template = payload.get("template") or payload.get("template_key") or ""
        status = payload.get("status", "")
        return " ".join(x for x in (kind.replace("_", " "), _text(template), _text(status)) if x)
    if kind == "grant":
        verb = "granted" if payload.get("granted") else "revoked"
        return f"{actor or 'system'} {verb} {payload.get('target', '')} to {payload.get('to', '')}"
    if kind == "task_handoff":
        return f"hand-off by {actor}" + (f": {payload.get('step')}" if payload.get("step") else "")
    # Never an operation's values: the stream is for every portal person, and which of
    # them are sensitive is the operation's to say (``autonomy.masking``), not a summary's.
    shown = [(k, v) for k, v in payload.items() if k not in masking.VALUE_KEYS]
    brief = ", ".join(f"{k}={_text(v)[:40]}" for k, v in shown[:3])
    return f"{kind.replace('_', ' ')}{': ' + brief if brief else ''}"


def parse_seq(value: str | None) -> int | None:
    try:
        return max(0, int(value)) if value not in (None, "") else None
    except ValueError:
        return None
