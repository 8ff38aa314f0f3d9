"""Who may do what: one table over every API endpoint in ``/api/schema/`` and every portal URL.

Each row names an endpoint (method and path) and the answer each actor gets:

- ``anon``: nobody signed in;
- ``agent_a``: the agent whose objects the path names (its action, task, claim, credential...);
- ``agent_b``: another agent, in another business unit, with no part in those objects;
- ``owner``: the staff person who owns agent A, with no portal role;
- ``viewer``, ``approver``, ``auditor``, ``risk``, ``it_admin``: people with that portal role.

Every request runs against the same world, inside a savepoint that is rolled back, so each
actor meets the state the row was written for. The test fails when an endpoint of the schema
or a portal URL has no row, and names the cells that differ from the table.
"""

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from agents import services as agent_services
from agents.models import Agent
from agents.portal_roles import PortalRole, group_name
from approvals.groups import group_key_of
from approvals.models import Suggestion, SuggestionKind
from autonomy import grants
from autonomy.models import (
    AutonomyLevel,
    AutonomySetting,
    MemoryEntry,
    Policy,
    RolloutPlan,
    RolloutWave,
)
from autonomy.policy import services as policy_services
from autonomy.policy import trials as policy_trials
from autonomy.standing import services as standing_services
from interventions import services as intervention_services
from reviews.models import AccessReview, ItemKind, ReviewItem
from tests.approvals.conftest import pending_action
from tests.autonomy.gate_fixtures import build_registry
from tests.factories import BusinessUnitFactory, UserFactory, make_role
from tests.workflows.coordination_fixtures import run_for
from workflows import coordination
from workflows.services import agent_tasks

ACTORS = (
    "anon", "agent_a", "agent_b", "owner", "viewer", "approver", "auditor", "risk", "it_admin",
)  # fmt: skip
TRIAL_DRAFT = "forbid (principal, action, resource) when { context.risk_score > 100 };"
ROLES = {
    "viewer": PortalRole.VIEWER,
    "approver": PortalRole.APPROVER,
    "auditor": PortalRole.AUDITOR,
    "risk": PortalRole.RISK_OFFICER,
    "it_admin": PortalRole.IT_ADMIN,
}


@dataclass
class World:
    ids: dict
    tokens: dict
    people: dict


def build_world() -> World:
    owner = UserFactory(username="officer-agent-a", is_staff=True)  # build_registry's owner
    registry = build_registry(slug="agent-a")
    agent_a = registry.agent
    people = {"owner": owner}
    for actor, role in ROLES.items():
        person = UserFactory(username=f"person-{actor}", is_staff=True)
        person.groups.add(Group.objects.get(name=group_name(role)))
        people[actor] = person
    agent_b = agent_services.agent_register(
        approved=True,
        name="Agent B", slug="agent-b", owner=UserFactory(username="owner-b", is_staff=True),
        business_unit=BusinessUnitFactory(slug="it", name="IT"), role=make_role("it-helper"),
        risk_tier=1,
    )  # fmt: skip
    _, token_b = agent_services.credential_issue(agent=agent_b)
    agent_services.agent_register(  # A's peer: same unit, same role, so a fit for A's tasks
        approved=True,
        name="Agent A2", slug="agent-a2", owner=owner, business_unit=agent_a.business_unit,
        role=agent_a.role, risk_tier=1,
    )  # fmt: skip
    pending_agent = agent_services.agent_register(  # its registration waits for Approvers
        name="Agent C", slug="agent-c", owner=owner, business_unit=agent_a.business_unit,
        role=agent_a.role, risk_tier=1, by=people["it_admin"],
    )  # fmt: skip
    action = pending_action(registry)
    run = run_for([agent_a], key="authz")
    claim = coordination.claim_acquire(agent=agent_a, resource_key="erp:invoice:INV-1")
    memory = MemoryEntry.objects.create(
        business_unit=agent_a.business_unit, key="customer:4411", value="prefers e-mail",
        agent=agent_a, created_at=timezone.now(), updated_at=timezone.now(),
        expires_at=timezone.now() + timedelta(days=1),
    )  # fmt: skip
    stop = intervention_services.emergency_stop(
        by=people["risk"], reason="table", business_unit=agent_b.business_unit
    )
    plan = RolloutPlan.objects.create(
        slug="authz-plan", name="Authz plan", role=agent_a.role, current_wave=1
    )
    RolloutWave.objects.create(plan=plan, number=1, level=AutonomyLevel.SUPERVISED)
    RolloutWave.objects.create(  # its criteria do not hold: proposing answers 409
        plan=plan, number=2, level=AutonomyLevel.GUARDED, min_actions=1000
    )
    suggestion = Suggestion.objects.create(  # a proposal for agent A's pattern
        pattern_key="authz", operation=action.operation, role=agent_a.role,
        business_unit=agent_a.business_unit, kind=SuggestionKind.STANDING,
        evidence={"window_days": 14, "approved": 20, "rejected": 0},
        simulation={"bounds": {"max_risk": 40, "daily_limit": 12}}, updated_at=timezone.now(),
    )  # fmt: skip
    setting = AutonomySetting.objects.create(  # on a template no row runs: it changes nothing
        level=AutonomyLevel.SHADOW, template_key="authz-unused"
    )
    standing = standing_services.standing_grant(  # on an operation no row asks for
        by=people["risk"], operation=registry.read, role=agent_a.role, max_risk=40, days=7,
        reason="authorisation table",
    )  # fmt: skip
    trial = policy_trials.trial_start(  # log-only; its draft forbids nothing the table asks
        name="authz trial", text=TRIAL_DRAFT, by=people["risk"]
    )
    baseline = Policy.objects.get(name="baseline")
    policy_services.policy_save(  # a version 2, so rolling back to version 1 changes something
        policy=baseline, name=baseline.name, text=baseline.text, description="table",
        enabled=True, by=people["risk"],
    )  # fmt: skip
    review = AccessReview.objects.create(  # an open review with one item, answered "keep"
        business_unit=agent_a.business_unit, period="authz", due_at=timezone.now(),
        dormant_days=30, unused_days=90, expiring_days=30,
    )  # fmt: skip
    review_item = ReviewItem.objects.create(review=review, kind=ItemKind.DORMANT, agent=agent_a)
    return World(
        ids={
            "trial": trial.pk,
            "policy": baseline.pk,
            "review": review.pk,
            "review_item": review_item.pk,
            "agent": agent_a.pk,
            "agent_slug": agent_a.slug,
            "agent_b": agent_b.pk,
            "action": action.pk,
            "approval": action.approval.pk,
            "group": str(group_key_of(action.approval)),
            "unit": agent_a.business_unit_id,
            "role": agent_a.role_id,
            "run": run.pk,
            "task": run.step_runs.get().pk,
            "claim": claim.pk,
            "intervention": stop.pk,
            "credential": agent_a.credentials.get().pk,
            "plan": plan.slug,
            "setting": setting.pk,
            "memory": memory.pk,
            "standing": standing.pk,
            "suggestion": suggestion.pk,
            "grant": next(
                row["id"] for row in grants.grants_table() if row["to"] == "role:invoice-processor"
            ),
            "change": pending_agent.registry_changes.get().pk,
        },
        tokens={"agent_a": registry.token, "agent_b": token_b},
        people=people,
    )


# --- the table --------------------------------------------------------------------------------
# (method, path as in the schema, which world id fills its parameter, body) -> the answers of
# ACTORS in order. A 2xx means it was done; 400/409 mean the actor was let in and the request
# or the state refused; 401/403/404 mean the actor was kept out (404: the object is not theirs
# to know of). Agent B has no grant for the invoice operation: to B it does not exist, so
# simulating it answers 400 operation_unknown, as for a name nobody registered.
INVOICE = {"operation": "erp.post-invoice", "params": {"invoice_id": "INV-9", "amount": 5}}
REASON = {"reason": "authorisation table"}
STANDING = {
    "operation": "erp.read-invoice", "role": "invoice-processor", "max_risk": 40, "days": 1,
    "reason": "authorisation table",
}  # fmt: skip

CLONE = {
    "role": "invoice-processor", "from_unit": "finance", "to_unit": "it", "new_role": "it-invoices",
}  # fmt: skip

API = [
    ("GET", "/api/v1/actions/", None, None, "401 200 200 403 403 403 403 403 403"),
    ("POST", "/api/v1/actions/", None, INVOICE, "401 201 201 403 403 403 403 403 403"),
    ("GET", "/api/v1/actions/{id}/", "action", None, "401 200 404 403 403 403 403 403 403"),
    (
        "POST",
        "/api/v1/actions/{id}/override/",
        "action",
        {"verdict": "deny", **REASON},
        "401 403 403 403 403 403 403 200 200",
    ),
    ("GET", "/api/v1/agents/", None, None, "401 403 403 200 200 200 200 200 200"),
    # Autonomy settings: every portal role reads them; risk officers and IT admins (who hold
    # add on the kernel's models) set them; only risk officers remove them.
    ("GET", "/api/v1/autonomy-settings/", None, None, "401 403 403 403 200 200 200 200 200"),
    (
        "GET",
        "/api/v1/autonomy-settings/{id}/",
        "setting",
        None,
        "401 403 403 403 200 200 200 200 200",
    ),
    (
        "POST",
        "/api/v1/autonomy-settings/",
        None,
        {"level": "shadow", "template_key": "authz-new"},
        "401 403 403 403 403 403 403 201 201",
    ),
    (
        "DELETE",
        "/api/v1/autonomy-settings/{id}/",
        "setting",
        None,
        "401 403 403 403 403 403 403 204 403",
    ),
    ("POST", "/api/v1/agents/", None, "new_agent", "401 403 403 403 403 403 403 403 201"),
    ("GET", "/api/v1/agents/{id}/", "agent", None, "401 403 403 200 200 200 200 200 200"),
    (
        "PATCH",
        "/api/v1/agents/{id}/",
        "agent",
        {"description": "profile only"},
        "401 403 403 200 403 403 403 200 200",
    ),
    ("PATCH", "/api/v1/agents/{id}/", "agent", "escalate", "401 403 403 403 403 403 403 200 200"),
    (
        "GET",
        "/api/v1/agents/{id}/credentials/",
        "agent",
        None,
        "401 403 403 403 200 200 200 200 200",
    ),
    (
        "POST",
        "/api/v1/agents/{id}/credentials/",
        "agent",
        {"name": "table"},
        "401 403 403 403 403 403 403 403 201",
    ),
    ("POST", "/api/v1/agents/{id}/kill/", "agent", REASON, "401 403 403 403 403 403 403 200 200"),
    ("POST", "/api/v1/agents/{id}/pause/", "agent", REASON, "401 403 403 200 403 403 403 200 200"),
    (
        "POST",
        "/api/v1/agents/{id}/quarantine/",
        "agent",
        REASON,
        "401 403 403 200 403 403 403 200 200",
    ),
    (
        "POST",
        "/api/v1/agents/{id}/resume/",
        "agent:paused",
        REASON,
        "401 403 403 200 403 403 403 200 200",
    ),
    (
        "POST",
        "/api/v1/agents/{id}/resume/",
        "agent:quarantined",
        REASON,
        "401 403 403 403 403 403 403 200 200",
    ),
    ("POST", "/api/v1/agents/{id}/retire/", "agent", REASON, "401 403 403 200 403 403 403 200 200"),
    ("GET", "/api/v1/agents/me/", None, None, "401 200 200 403 403 403 403 403 403"),
    ("GET", "/api/v1/approvals/", None, None, "401 403 403 200 200 200 200 200 200"),
    ("GET", "/api/v1/approvals/groups/", None, None, "401 403 403 200 200 200 200 200 200"),
    (
        "POST",
        "/api/v1/approvals/groups/{key}/decide/",
        "group",
        {"verdict": "approve", "until": "2100-01-01T00:00:00Z"},
        "401 403 403 404 404 200 404 404 404",
    ),
    ("GET", "/api/v1/approvals/suggestions/", None, None, "401 403 403 403 403 403 403 200 200"),
    ("GET", "/api/v1/approvals/{id}/", "approval", None, "401 403 403 404 404 200 404 404 404"),
    (
        "POST",
        "/api/v1/approvals/{id}/decide/",
        "approval",
        {"verdict": "approve"},
        "401 403 403 403 403 200 403 403 403",
    ),
    ("GET", "/api/v1/business-units/", None, None, "401 403 403 403 200 200 200 200 200"),
    (
        "POST",
        "/api/v1/business-units/",
        None,
        {"name": "Legal", "slug": "legal"},
        "401 403 403 403 403 403 403 403 201",
    ),
    ("GET", "/api/v1/business-units/{id}/", "unit", None, "401 403 403 403 200 200 200 200 200"),
    (
        "PATCH",
        "/api/v1/business-units/{id}/",
        "unit",
        {"deny_threshold": 90},
        "401 403 403 403 403 403 403 403 200",
    ),
    # Governance bundles: IT admins and policy owners; the uploads are multipart, so the
    # table's JSON body is refused (415) once the caller was let in.
    ("GET", "/api/v1/governance/bundle/", None, None, "401 403 403 403 403 403 403 200 200"),
    ("POST", "/api/v1/governance/plan/", None, {}, "401 403 403 403 403 403 403 415 415"),
    ("POST", "/api/v1/governance/apply/", None, {}, "401 403 403 403 403 403 403 415 415"),
    ("GET", "/api/v1/grants/", None, None, "401 403 403 403 200 200 200 200 200"),
    (
        "POST",
        "/api/v1/grants/",
        None,
        {"to": "agent:agent-a", "target": "erp.read-invoice"},
        "401 403 403 403 403 403 403 403 202",  # widening access waits for approval
    ),
    ("DELETE", "/api/v1/grants/{id}/", "grant", None, "401 403 403 403 403 403 403 403 204"),
    ("GET", "/api/v1/policies/", None, None, "401 403 403 403 200 200 200 200 200"),
    (
        "POST",
        "/api/v1/policies/",
        None,
        {"name": "authz-new", "text": "forbid (principal, action, resource);"},
        "401 403 403 403 403 403 403 201 201",
    ),
    ("GET", "/api/v1/policies/{id}/", "policy", None, "401 403 403 403 200 200 200 200 200"),
    (
        "PATCH",
        "/api/v1/policies/{id}/",
        "policy",
        {"description": "authz"},
        "401 403 403 403 403 403 403 200 200",
    ),
    ("DELETE", "/api/v1/policies/{id}/", "policy", None, "401 403 403 403 403 403 403 204 204"),
    ("GET", "/api/v1/claims/", None, None, "401 200 200 403 403 403 403 403 403"),
    (
        "POST",
        "/api/v1/claims/",
        None,
        {"resource_key": "erp:invoice:INV-2"},
        "401 201 403 403 403 403 403 403 403",
    ),
    ("GET", "/api/v1/claims/{id}/", "claim", None, "401 200 404 403 403 403 403 403 403"),
    ("POST", "/api/v1/claims/{id}/release/", "claim", None, "401 200 404 403 403 403 403 403 403"),
    ("POST", "/api/v1/claims/{id}/renew/", "claim", None, "401 200 404 403 403 403 403 403 403"),
    ("GET", "/api/v1/credentials/", None, None, "401 403 403 403 200 200 200 200 200"),
    ("GET", "/api/v1/credentials/{id}/", "credential", None, "401 403 403 403 200 200 200 200 200"),
    (
        "POST",
        "/api/v1/credentials/{id}/revoke/",
        "credential",
        REASON,
        "401 403 403 403 403 403 403 200 200",
    ),
    (
        "POST",
        "/api/v1/credentials/{id}/rotate/",
        "credential",
        {},
        "401 403 403 403 403 403 403 201 201",
    ),
    ("GET", "/api/v1/interventions/", None, None, "401 403 403 403 403 403 403 200 200"),
    (
        "GET",
        "/api/v1/interventions/{id}/",
        "intervention",
        None,
        "401 403 403 403 403 403 403 200 200",
    ),
    (
        "POST",
        "/api/v1/interventions/{id}/lift/",
        "intervention",
        REASON,
        "401 403 403 403 403 403 403 200 200",
    ),
    (
        "POST",
        "/api/v1/interventions/emergency-stop/",
        None,
        REASON,
        "401 403 403 403 403 403 403 201 201",
    ),
    # shared memory: people read it (sensitive values masked unless they may change it); risk
    # officers delete and purge; agents reach it only as memory.* actions
    ("GET", "/api/v1/memory/", None, None, "401 403 403 403 200 200 200 200 200"),
    ("GET", "/api/v1/memory/{id}/", "memory", None, "401 403 403 403 200 200 200 200 200"),
    ("DELETE", "/api/v1/memory/{id}/", "memory", None, "401 403 403 403 403 403 403 204 403"),
    (
        "POST",
        "/api/v1/memory/purge/",
        None,
        {"agent": "agent-a", **REASON},
        "401 403 403 403 403 403 403 200 403",
    ),
    ("GET", "/api/v1/operations/", None, None, "401 200 200 403 403 403 403 403 403"),
    ("GET", "/api/v1/operations/{key}/", "operation", None, "401 200 404 403 403 403 403 403 403"),
    # cloning a permission model: IT admins only; a plan hash that is not the plan's is stale
    ("POST", "/api/v1/permission-models/plan/", None, CLONE, "401 403 403 403 403 403 403 403 200"),
    (
        "POST",
        "/api/v1/permission-models/clone/",
        None,
        {**CLONE, "plan_hash": "0" * 64},
        "401 403 403 403 403 403 403 403 409",
    ),
    ("GET", "/api/v1/roles/", None, None, "401 403 403 403 200 200 200 200 200"),
    (
        "POST",
        "/api/v1/roles/",
        None,
        {"name": "Auditor bot", "slug": "auditor-bot"},
        "401 403 403 403 403 403 403 403 201",
    ),
    ("GET", "/api/v1/roles/{id}/", "role", None, "401 403 403 403 200 200 200 200 200"),
    # Rollout plans: every portal role reads them; risk officers
    # steer. The plan's next wave's criteria do not hold, so proposing answers 409.
    ("GET", "/api/v1/rollouts/", None, None, "401 403 403 403 200 200 200 200 200"),
    ("GET", "/api/v1/rollouts/{slug}/", "plan", None, "401 403 403 403 200 200 200 200 200"),
    (
        "POST",
        "/api/v1/rollouts/{slug}/promotions/",
        "plan",
        None,
        "401 403 403 403 403 403 403 409 403",
    ),
    (
        "POST",
        "/api/v1/rollouts/{slug}/demote/",
        "plan",
        REASON,
        "401 403 403 403 403 403 403 200 403",
    ),
    ("POST", "/api/v1/runs/", None, {"template": "authz"}, "401 201 201 403 403 403 403 403 403"),
    ("GET", "/api/v1/runs/{id}/", "run", None, "401 200 404 403 403 403 403 403 403"),
    ("GET", "/api/v1/runs/{run_id}/messages/", "run", None, "401 200 403 403 403 403 403 403 403"),
    (
        "POST",
        "/api/v1/runs/{run_id}/messages/",
        "run",
        {"body": {"note": "hello"}},
        "401 201 403 403 403 403 403 403 403",
    ),
    # Standing approvals: every portal role reads them; whoever may change policies (risk
    # officers, IT admins) grants and revokes them.
    ("GET", "/api/v1/standing-approvals/", None, None, "401 403 403 403 200 200 200 200 200"),
    (
        "GET",
        "/api/v1/standing-approvals/{id}/",
        "standing",
        None,
        "401 403 403 403 200 200 200 200 200",
    ),
    (
        "POST",
        "/api/v1/standing-approvals/",
        None,
        STANDING,
        "401 403 403 403 403 403 403 201 201",
    ),
    (
        "POST",
        "/api/v1/standing-approvals/{id}/revoke/",
        "standing",
        REASON,
        "401 403 403 403 403 403 403 200 200",
    ),
    ("POST", "/api/v1/simulate/", None, INVOICE, "401 200 400 403 404 404 404 404 404"),
    (
        "POST",
        "/api/v1/simulate/",
        None,
        {"agent": "agent-a", **INVOICE},
        "401 200 400 403 200 200 200 200 200",
    ),
    # Access reviews: auditors read, risk officers and IT admins answer.
    ("GET", "/api/v1/reviews/", None, None, "401 403 403 403 403 403 200 200 200"),
    ("GET", "/api/v1/reviews/{id}/", "review", None, "401 403 403 403 403 403 200 200 200"),
    (
        "POST",
        "/api/v1/reviews/{id}/answer/",
        "review",
        "review_answer_api",
        "401 403 403 403 403 403 403 200 200",
    ),
    ("GET", "/api/v1/tasks/", None, None, "401 200 200 403 403 403 403 403 403"),
    ("GET", "/api/v1/tasks/{id}/", "task", None, "401 200 404 403 403 403 403 403 403"),
    ("POST", "/api/v1/tasks/{id}/claim/", "task", None, "401 200 403 403 403 403 403 403 403"),
    (
        "POST",
        "/api/v1/tasks/{id}/complete/",
        "task:claimed",
        {"output": {"ok": True}},
        "401 200 403 403 403 403 403 403 403",
    ),
    ("GET", "/api/v1/tasks/{id}/context/", "task", None, "401 200 403 403 403 403 403 403 403"),
    (
        "POST",
        "/api/v1/tasks/{id}/escalate/",
        "task:claimed",
        REASON,
        "401 200 403 403 403 403 403 403 403",
    ),
    (
        "POST",
        "/api/v1/tasks/{id}/fail/",
        "task:claimed",
        {"message": "no", "retryable": False},
        "401 200 403 403 403 403 403 403 403",
    ),
    (
        "POST",
        "/api/v1/tasks/{id}/handoff/",
        "task:claimed",
        {"agent": "agent-a2"},
        "401 200 403 403 403 403 403 403 403",
    ),
    (
        "POST",
        "/api/v1/tasks/{id}/handoff/",
        "task:claimed",
        {"agent": "agent-b"},
        "401 403 403 403 403 403 403 403 403",
    ),
    ("GET", "/api/v1/tasks/next/", None, None, "401 200 403 403 403 403 403 403 403"),
    ("POST", "/api/v1/tasks/next/", None, "ad_hoc_task", "401 200 403 403 403 403 403 403 403"),
]


def _body(world: World, body):
    if body == "new_agent":
        return {
            "name": "New bot", "slug": "new-bot", "owner": world.people["owner"].username,
            "business_unit": "finance", "role": "invoice-processor",
        }  # fmt: skip
    if body == "escalate":  # an owner's own agent given another unit's role and a lower tier
        return {"role": "it-helper", "business_unit": "it", "risk_tier": 1}
    if body == "review_answer_api":
        return {"items": [world.ids["review_item"]], "decision": "keep"}
    if body == "ad_hoc_task":
        return {
            "run": str(world.ids["run"]), "template": "authz", "step": "s0", "name": "Check",
            "instructions": "Check the invoice.",
        }  # fmt: skip
    return body


def _client(world: World, actor: str) -> APIClient:
    client = APIClient()
    if actor in world.tokens:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {world.tokens[actor]}")
    elif actor != "anon":
        client.force_authenticate(world.people[actor])
    return client


def _api_path(world: World, path: str, id_key) -> str:
    if id_key is None:
        return path
    value = "erp.post-invoice" if id_key == "operation" else world.ids[id_key]
    for name in ("{id}", "{run_id}", "{key}", "{slug}"):
        path = path.replace(name, str(value))
    return path


def _answers(world: World, call) -> str:
    """Each actor's status code, each in a savepoint rolled back afterwards."""
    answers = []
    for actor in ACTORS:
        with transaction.atomic():
            response = call(actor)
            transaction.set_rollback(True)
        answers.append(str(response.status_code))
    return " ".join(answers)


def _setup(world: World, state: str) -> None:
    """Bring the world into the state a row names, inside the actor's savepoint."""
    agent = Agent.objects.get(pk=world.ids["agent"])
    risk = world.people["risk"]
    if state == "paused":
        intervention_services.agent_pause(agent=agent, by=risk, reason="table")
    elif state == "quarantined":
        intervention_services.agent_quarantine(agent=agent, by=risk, reason="table")
    elif state == "claimed":
        agent_tasks.task_claim(agent=agent, step_run_id=world.ids["task"])
    else:
        raise AssertionError(f"no such state: {state}")


def _api_answers(world: World, method: str, path: str, id_key, body) -> str:
    id_key, _, state = (id_key or "").partition(":")
    url, data = _api_path(world, path, id_key or None), _body(world, body)

    def call(actor):
        if state:
            _setup(world, state)
        client = _client(world, actor)
        return getattr(client, method.lower())(url, data=data, format="json")

    return _answers(world, call)


def _schema_operations() -> set[tuple[str, str]]:
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    }


def test_every_api_operation_has_a_row():
    rows = {(method, path) for method, path, *_ in API}
    missing = sorted(_schema_operations() - rows)
    assert not missing, f"endpoints with no row in the authorisation table: {missing}"
    gone = sorted(rows - _schema_operations())
    assert not gone, f"rows for endpoints that no longer exist: {gone}"


@pytest.fixture
def world(db) -> World:
    return build_world()


def test_api_answers_match_the_table(world):
    wrong = []
    for method, path, id_key, body, expected in API:
        got = _api_answers(world, method, path, id_key, body)
        if got != expected:
            wrong.append(f"{method} {path} {body if isinstance(body, str) else ''}: "
                         f"expected {expected!r}, got {got!r}")  # fmt: skip
    assert not wrong, "answers differ (actors: " + " ".join(ACTORS) + ")\n" + "\n".join(wrong)


# --- portal pages -----------------------------------------------------------------------------
# (method, URL pattern as Django lists it, which world id fills its parameters, form body).
# A 302 sends the visitor to sign in; the pages answer people, never an agent's token.
PORTAL = [
    ("GET", "healthz", None, None, "200 200 200 200 200 200 200 200 200"),
    ("GET", "readyz", None, None, "200 200 200 200 200 200 200 200 200"),
    ("GET", "metrics", None, None, "401 401 401 200 200 200 200 200 200"),
    ("GET", "dashboard/", None, None, "302 302 302 403 200 200 200 200 200"),
    ("GET", "dashboard/live/", None, None, "302 302 302 403 200 200 200 200 200"),
    ("GET", "inbox/", None, None, "302 302 302 200 200 200 200 200 200"),
    ("GET", "inbox/list/", None, None, "302 302 302 200 200 200 200 200 200"),
    ("GET", "inbox/<uuid:request_id>/", "approval", None, "302 302 302 404 404 200 404 404 404"),
    # to the request a registry change waits on, for its deciders (a unit with no owner: the
    # Approvers); nobody else learns it exists
    (
        "GET",
        "inbox/change/<uuid:change_id>/",
        "change",
        None,
        "302 302 302 404 404 302 404 404 404",
    ),
    (
        "POST",
        "inbox/<uuid:request_id>/decide/",
        "approval",
        {"verdict": "approve"},
        "302 302 302 404 404 302 404 404 404",
    ),
    ("POST", "inbox/bulk/", "approval", "bulk", "302 302 302 302 302 302 302 302 302"),
    ("GET", "inbox/standing/", None, None, "302 302 302 403 200 200 200 200 200"),
    ("GET", "inbox/standing/new/", None, None, "302 302 302 403 403 403 403 200 200"),
    ("POST", "inbox/standing/new/", None, STANDING, "302 302 302 403 403 403 403 302 302"),
    (
        "GET",
        "inbox/standing/<int:standing_id>/",
        "standing",
        None,
        "302 302 302 403 200 200 200 200 200",
    ),
    (
        "POST",
        "inbox/standing/<int:standing_id>/revoke/",
        "standing",
        REASON,
        "302 302 302 403 403 403 403 302 302",
    ),
    ("GET", "inbox/groups/", None, None, "302 302 302 200 200 200 200 200 200"),
    ("GET", "inbox/groups/<str:key>/", "group", None, "302 302 302 404 404 200 404 404 404"),
    (
        "POST",
        "inbox/groups/<str:key>/decide/",
        "group",
        {"verdict": "approve", "until": "2100-01-01T00:00:00Z"},
        "302 302 302 404 404 302 404 404 404",
    ),
    ("GET", "inbox/suggestions/", None, None, "302 302 302 403 403 403 403 200 200"),
    (
        "POST",
        "inbox/suggestions/<int:suggestion_id>/standing/",
        "suggestion",
        None,
        "302 302 302 403 403 403 403 302 302",
    ),
    (
        "POST",
        "inbox/suggestions/<int:suggestion_id>/policy/",
        "suggestion",
        None,
        "302 302 302 403 403 403 403 302 302",
    ),
    (
        "POST",
        "inbox/suggestions/<int:suggestion_id>/dismiss/",
        "suggestion",
        None,
        "302 302 302 403 403 403 403 302 302",
    ),
    ("GET", "approvals/e/<str:token>/", "token", None, "400 400 400 400 400 400 400 400 400"),
    ("GET", "workflows/analytics/", None, None, "302 302 302 403 200 200 200 200 200"),
    (
        "GET",
        "workflows/analytics/<slug:key>/",
        "template",
        None,
        "302 302 302 403 200 200 200 200 200",
    ),
    ("GET", "workflows/runs/", None, None, "302 302 302 403 200 200 200 200 200"),
    ("GET", "workflows/runs/live/", None, None, "302 302 302 403 200 200 200 200 200"),
    ("GET", "workflows/runs/<uuid:run_id>/", "run", None, "302 302 302 403 200 200 200 200 200"),
    (
        "GET",
        "workflows/runs/<uuid:run_id>/live/",
        "run",
        None,
        "302 302 302 403 200 200 200 200 200",
    ),
    (
        "POST",
        "workflows/runs/<uuid:run_id>/steps/<uuid:step_run_id>/<slug:control>/",
        "run",
        {"reason": "table"},
        "302 302 302 403 403 403 403 302 302",
    ),  # fmt: skip
    (
        "POST",
        "workflows/runs/<uuid:run_id>/<slug:control>/",
        "run",
        {"reason": "table"},
        "302 302 302 403 403 403 403 302 302",
    ),
    ("GET", "agents/<slug:slug>/", "agent_slug", None, "302 302 302 200 200 200 200 200 200"),
    (
        "POST",
        "agents/<slug:slug>/flags/<int:flag_id>/review/",
        "agent_slug",
        {"verdict": "x"},
        "302 302 302 403 403 403 403 404 404",
    ),  # fmt: skip
    ("GET", "activity/", None, None, "302 302 302 403 200 200 200 200 200"),
    ("GET", "activity/stream/", None, None, "302 302 302 403 200 200 200 200 200"),
    (
        "GET",
        "actions/<uuid:action_id>/trace/",
        "action",
        None,
        "302 302 302 403 200 200 200 200 200",
    ),
    ("GET", "permission-models/clone/", None, None, "302 302 302 403 403 403 403 403 200"),
    (
        "POST",
        "permission-models/clone/",
        None,
        {"new_role": "not a slug"},
        "302 302 302 403 403 403 403 403 400",
    ),
    ("GET", "rollouts/", None, None, "302 302 302 403 200 200 200 200 200"),
    ("GET", "rollouts/<slug:plan>/", "plan", None, "302 302 302 403 200 200 200 200 200"),
    ("GET", "rollouts/<slug:plan>/live/", "plan", None, "302 302 302 403 200 200 200 200 200"),
    (
        "POST",
        "rollouts/<slug:plan>/promote/",
        "plan",
        None,
        "302 302 302 403 403 403 403 302 403",
    ),
    (
        "POST",
        "rollouts/<slug:plan>/demote/",
        "plan",
        {"reason": "table"},
        "302 302 302 403 403 403 403 302 403",
    ),
    ("GET", "policies/trials/", None, None, "302 302 302 403 200 200 200 200 200"),
    (
        "POST",
        "policies/trials/start/",
        None,
        {"name": "table", "text": TRIAL_DRAFT, "replaces": ""},
        "302 302 302 403 403 403 403 302 302",
    ),
    (
        "GET",
        "policies/trials/<int:trial_id>/",
        "trial",
        None,
        "302 302 302 403 200 200 200 200 200",
    ),
    (
        "POST",
        "policies/trials/<int:trial_id>/stop/",
        "trial",
        None,
        "302 302 302 403 403 403 403 302 302",
    ),
    (
        "POST",
        "policies/trials/<int:trial_id>/promote/",
        "trial",
        None,
        "302 302 302 403 403 403 403 302 302",
    ),
    ("GET", "policies/", None, None, "302 302 302 403 200 200 200 200 200"),
    ("GET", "policies/<int:policy_id>/", "policy", None, "302 302 302 403 200 200 200 200 200"),
    (
        "GET",
        "policies/<int:policy_id>/versions/<int:number>/",
        "policy",
        None,
        "302 302 302 403 200 200 200 200 200",
    ),
    (
        "POST",
        "policies/<int:policy_id>/versions/<int:number>/rollback/",
        "policy",
        None,
        "302 302 302 403 403 403 403 302 302",
    ),
    ("GET", "reviews/", None, None, "302 302 302 403 403 403 200 200 200"),
    ("GET", "reviews/<int:review_id>/", None, None, "302 302 302 403 403 403 200 200 200"),
    (
        "POST",
        "reviews/<int:review_id>/answer/",
        None,
        "review_answer",
        "302 302 302 403 403 403 403 302 302",
    ),
    ("POST", "reviews/open/", None, "review_open", "302 302 302 403 403 403 403 302 403"),
    ("GET", "interventions/", None, None, "302 302 302 403 403 403 403 200 200"),
    (
        "POST",
        "interventions/stop/",
        None,
        {"reason": "table"},
        "302 302 302 403 403 403 403 302 302",
    ),
    (
        "POST",
        "interventions/<int:pk>/lift/",
        "intervention",
        {"reason": "table"},
        "302 302 302 403 403 403 403 302 302",
    ),
    (
        "POST",
        "interventions/agents/<uuid:agent_id>/<slug:verb>/",
        "agent",
        {"reason": "table"},
        "302 302 302 403 403 403 403 302 302",
    ),  # fmt: skip
    (
        "POST",
        "interventions/actions/<uuid:action_id>/override/",
        "action",
        {"verdict": "deny", "reason": "table"},
        "302 302 302 403 403 403 403 302 302",
    ),  # fmt: skip
    (
        "POST",
        "interventions/steps/<uuid:step_run_id>/redirect/",
        "task",
        {"to_agent": "agent-a2", "reason": "table"},
        "302 302 302 403 403 403 403 302 302",
    ),  # fmt: skip
    ("GET", "compliance/", None, None, "302 302 302 403 403 403 200 200 403"),
    (
        "POST",
        "compliance/pack/",
        None,
        {"quarter": "2001-Q1"},
        "302 302 302 403 403 403 200 200 403",
    ),
    ("GET", "signin/refused/", None, None, "403 403 403 403 403 403 403 403 403"),
    ("POST", "mcp/", None, "initialize", "401 200 200 401 401 401 401 401 401"),
    ("GET", "admin/", None, None, "302 302 302 200 200 200 200 200 200"),
    ("GET", "api/docs/", None, None, "401 200 200 200 200 200 200 200 200"),
    ("GET", "api/schema/", None, None, "401 200 200 200 200 200 200 200 200"),
]


def _portal_patterns() -> set[str]:
    """Every URL pattern outside the admin's own and the API's (which the schema lists)."""

    def walk(resolver, prefix=""):
        for entry in resolver.url_patterns:
            if isinstance(entry, URLResolver):
                yield from walk(entry, prefix + str(entry.pattern))
            elif isinstance(entry, URLPattern):
                yield prefix + str(entry.pattern)

    skip = ("admin/", "api/v1/", "oidc/", "^static", "static/")
    return {p for p in walk(get_resolver()) if p and not p.startswith(skip)} | {"admin/"}


def _portal_url(world: World, pattern: str, id_key) -> str:
    values = {
        "<uuid:request_id>": world.ids["approval"],
        "<str:token>": world.ids.get("token", "not-a-token"),
        "<str:key>": world.ids["group"],
        "<uuid:run_id>": world.ids["run"],
        "<uuid:step_run_id>": world.ids["task"],
        "<slug:control>": "pause" if "steps" not in pattern else "retry",
        "<slug:slug>": world.ids["agent_slug"],
        "<int:flag_id>": 999999,
        "<uuid:action_id>": world.ids["action"],
        "<int:pk>": world.ids["intervention"],
        "<uuid:agent_id>": world.ids["agent"],
        "<slug:verb>": "pause",
        "<slug:plan>": world.ids["plan"],
        "<slug:key>": "authz",  # the template of the world's run
        "<int:standing_id>": world.ids["standing"],
        "<int:suggestion_id>": world.ids["suggestion"],
        "<int:trial_id>": world.ids["trial"],
        "<int:policy_id>": world.ids["policy"],
        "<int:number>": 1,
        "<int:review_id>": world.ids["review"],
        "<uuid:change_id>": world.ids["change"],
    }
    for name, value in values.items():
        pattern = pattern.replace(name, str(value))
    return "/" + pattern


def _portal_body(world: World, body):
    if body == "bulk":
        return {"verdict": "approve", "ids": str(world.ids["approval"])}
    if body == "review_answer":
        return {"item": world.ids["review_item"], "decision": "keep"}
    if body == "review_open":
        return {"unit": world.ids["unit"]}
    if body == "initialize":
        return {
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "table", "version": "1"},
            },
        }  # fmt: skip
    return body


def _portal_answers(world: World, method: str, pattern: str, id_key, body) -> str:
    url, data = _portal_url(world, pattern, id_key), _portal_body(world, body)

    def call(actor):
        client = Client()
        headers = {}
        if actor in world.tokens:
            headers["Authorization"] = f"Bearer {world.tokens[actor]}"
        elif actor != "anon":
            client.force_login(world.people[actor])
        if body == "initialize":
            return client.post(url, data=data, content_type="application/json", headers=headers)
        if method == "POST":
            return client.post(url, data=data, headers=headers)
        return client.get(url, headers=headers)

    return _answers(world, call)


def test_every_portal_url_has_a_row():
    rows = {pattern for _, pattern, *_ in PORTAL}
    missing = sorted(_portal_patterns() - rows)
    assert not missing, f"portal URLs with no row in the authorisation table: {missing}"


def test_portal_answers_match_the_table(world):
    wrong = []
    for method, pattern, id_key, body, expected in PORTAL:
        got = _portal_answers(world, method, pattern, id_key, body)
        if got != expected:
            wrong.append(f"{method} {pattern}: expected {expected!r}, got {got!r}")
    assert not wrong, "answers differ (actors: " + " ".join(ACTORS) + ")\n" + "\n".join(wrong)
