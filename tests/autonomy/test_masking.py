"""Masking: an operation's declared sensitive parameters and results are stored in full and
shown masked (``autonomy.masking``) on every page, API response, e-mail and export, to
everyone without ``autonomy.view_sensitive``; e-mails always.

The table below fetches every output path that shows an action's values; the completeness
checks at the end fail when a URL, an admin of a model with JSON fields, or a template that
mentions parameters or results is added without being classified here: in the table, or in
an allow-list of paths that never show them (with the reason).
"""

import json
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.contrib.auth.models import Group
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import JSONField
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from agents import services as agent_services
from agents.portal_roles import PERMISSIONS, PortalRole, group_name
from agents.services import portal_roles_sync
from approvals import groups
from approvals.models import ApprovalRequest
from autonomy import actions, audit, masking
from autonomy.api.actions import ActionSerializer
from autonomy.models import ActionRequest, AuditRecord, Operation
from autonomy.observability import activity
from autonomy.policy import services as policy_services
from tests.approvals.conftest import tasks_run_in_process  # noqa: F401  (a fixture)
from tests.autonomy.gate_fixtures import build_registry
from tests.factories import BusinessUnitFactory, UserFactory, make_role

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("tasks_run_in_process")]

PII = "SECRET-9f2c"  # in a pii parameter
CARD = "4111111111111111"  # in a secret parameter
IBAN = "DE44RESULT7e1d"  # in a financial result key
MARKERS = (PII, CARD, IBAN)
SCHEMA = {
    "type": "object",
    "properties": {
        "invoice_id": {"type": "string"},
        "amount": {"type": "number", "minimum": 0},
        "holder": {"type": "string"},
        "card": {"type": "object"},
    },
    "required": ["invoice_id", "amount"],
    "additionalProperties": False,
}
PARAMS = {"invoice_id": "INV-9", "amount": 100, "holder": PII, "card": {"number": CARD}}
OUTCOME = {"data": {"items": [{"iban": IBAN, "ok": True}], "count": 1}}
LINK = re.compile(r"https?://\S+/approvals/e/[^/\s]+/")


@dataclass
class World:
    action: ActionRequest
    approval: ApprovalRequest
    plain: object  # approver + IT admin + viewer: sees everything, never the values
    cleared: object  # approver + auditor: holds view_sensitive
    registry: object


def _person(username: str, *roles: PortalRole):
    user = UserFactory(username=username, is_staff=True)
    for role in roles:
        user.groups.add(Group.objects.get(name=group_name(role)))
    return user


@pytest.fixture
def world(db, django_capture_on_commit_callbacks) -> World:
    portal_roles_sync()
    registry = build_registry()
    post = registry.post
    post.params_schema = SCHEMA
    post.sensitive_params = {"holder": "pii", "card.number": "secret"}
    post.sensitive_results = {"data.items.iban": "financial"}
    post.save()
    policy_services.registry_changed()
    plain = _person("plain", PortalRole.APPROVER, PortalRole.IT_ADMIN, PortalRole.VIEWER)
    cleared = _person("cleared", PortalRole.APPROVER, PortalRole.AUDITOR)
    unit = registry.agent.business_unit
    unit.approval_threshold = 0
    unit.save(update_fields=["approval_threshold"])
    with django_capture_on_commit_callbacks(execute=True):
        action, _ = actions.action_request(
            agent=registry.agent, operation_key="erp.post-invoice", params=PARAMS,
            reason="needs a person",
        )  # fmt: skip
    assert action.status == "pending_approval", action.reasons
    # What a connector answered, as the worker records it: on the action and in the trail.
    ActionRequest.objects.filter(pk=action.pk).update(outcome=OUTCOME)
    audit.append(
        kind="action_outcome", actor="worker", agent_id=action.agent_id, action_id=action.pk,
        payload={"status": "succeeded", "outcome": OUTCOME, "error": None},
    )  # fmt: skip
    action.refresh_from_db()
    return World(
        action=action,
        approval=ApprovalRequest.objects.get(action=action),
        plain=plain,
        cleared=cleared,
        registry=registry,
    )


# --- fetching each output path as a person ---------------------------------------------------


def _page(url: str):
    def fetch(world: World, user) -> str:
        client = Client()
        client.force_login(user)
        response = client.get(url if isinstance(url, str) else url(world))
        assert response.status_code == 200, (response.status_code, url)
        if response.streaming:
            return b"".join(response.streaming_content).decode()
        text = response.content.decode()
        if response["Content-Type"].startswith("application/json"):
            # JSON may escape "•"; read it back so the masks compare as text.
            return json.dumps(response.json(), ensure_ascii=False)
        return text

    return fetch


def _email(world: World, user) -> str:
    (message,) = [m for m in mail.outbox if m.to == [user.email]]
    return message.subject + "\n" + message.body


def _email_link_page(world: World, user) -> str:
    (message,) = [m for m in mail.outbox if m.to == [user.email]]
    path = urlsplit(LINK.search(message.body).group(0)).path
    return _page(path)(world, user)


def _export(fmt: str):
    def url(world: World) -> str:
        today = timezone.localdate()
        start, end = today - timedelta(days=1), today + timedelta(days=1)
        base = reverse("admin:autonomy_auditrecord_export")
        return f"{base}?start={start:%Y-%m-%d}&end={end:%Y-%m-%d}&fmt={fmt}"

    return _page(url)


def _audit_record(kind: str):
    def url(world: World) -> str:
        record = AuditRecord.objects.get(action_id=world.action.pk, kind=kind)
        return reverse("admin:autonomy_auditrecord_change", args=[record.pk])

    return _page(url)


def _serialized_for_person(world: World, user) -> str:
    """``ActionSerializer`` as the intervention override answers a person."""
    request = type("Request", (), {"user": user})()
    data = ActionSerializer(world.action, context={"request": request}).data
    return json.dumps(data, ensure_ascii=False)


def shows(text: str, cls: str) -> bool:
    """Whether ``text`` shows the mask of ``cls``, as is or escaped in JSON (exports)."""
    mask = masking.masked(cls)
    return mask in text or json.dumps(mask)[1:-1] in text


@dataclass
class OutputPath:
    name: str
    fetch: object
    results: bool  # shows the result (so a financial mask must be there)
    people_see_values: bool  # a person with view_sensitive sees the values (e-mail: never)
    params: bool = True  # shows the parameters (so pii and secret masks must be there)


TABLE = [
    OutputPath(
        "trace page",
        _page(lambda w: reverse("observability:action-trace", args=[w.action.pk])),
        True,
        True,
    ),
    OutputPath(
        "inbox detail",
        _page(lambda w: reverse("approvals:detail", args=[w.approval.pk])),
        False,
        True,
    ),
    OutputPath(
        "inbox detail pane",
        _page(lambda w: reverse("approvals:detail", args=[w.approval.pk]) + "?partial=1"),
        False,
        True,
    ),
    OutputPath(
        "inbox group page",
        _page(lambda w: reverse("approvals:group", args=[str(groups.group_key_of(w.approval))])),
        False,
        True,
    ),
    OutputPath("approvals API list", _page("/api/v1/approvals/"), False, True),
    OutputPath(
        "approvals API detail",
        _page(lambda w: f"/api/v1/approvals/{w.approval.pk}/"),
        False,
        True,
    ),
    OutputPath(
        "admin action page",
        _page(lambda w: reverse("admin:autonomy_actionrequest_change", args=[w.action.pk])),
        True,
        True,
    ),
    OutputPath("admin audit record (decision)", _audit_record("action_decision"), False, True),
    OutputPath(
        "admin audit record (outcome)", _audit_record("action_outcome"), True, True, params=False
    ),
    OutputPath("audit export JSON lines", _export("jsonl"), True, True),
    OutputPath("audit export CSV", _export("csv"), True, True),
    OutputPath("action serializer (override API)", _serialized_for_person, True, True),
    OutputPath("approval e-mail", _email, False, False),
    OutputPath("approval e-mail link page", _email_link_page, False, False),
]


@pytest.mark.parametrize("path", TABLE, ids=lambda p: p.name)
def test_a_person_without_view_sensitive_sees_masks_never_the_values(world, path):
    text = path.fetch(world, world.plain)
    for marker in MARKERS:
        assert marker not in text, f"{path.name} shows {marker}"
    if path.params:
        assert shows(text, "pii") and shows(text, "secret")
        assert "INV-9" in text, "the undeclared parameters still show"
    if path.results:
        assert shows(text, "financial")


@pytest.mark.parametrize("path", TABLE, ids=lambda p: p.name)
def test_a_person_with_view_sensitive_sees_the_values_where_people_read_them(world, path):
    text = path.fetch(world, world.cleared)
    if path.people_see_values:
        if path.params:
            assert PII in text and CARD in text
        if path.results:
            assert IBAN in text
        assert not any(shows(text, cls) for cls in ("pii", "secret", "financial"))
    else:  # notifications never carry them, whoever receives them
        for marker in MARKERS:
            assert marker not in text
        assert shows(text, "pii")


def test_the_approval_email_never_carries_the_values_even_to_a_cleared_recipient(world):
    assert masking.may_view_sensitive(world.cleared)
    bodies = [m.body for m in mail.outbox]
    assert {m.to[0] for m in mail.outbox} >= {world.cleared.email, world.plain.email}
    for body in bodies:
        assert all(marker not in body for marker in MARKERS)
        assert "•••• (pii)" in body


def test_the_activity_stream_never_shows_the_values(world):
    text = _page(reverse("observability:activity"))(world, world.cleared)
    assert all(marker not in text for marker in MARKERS)
    events = activity.activity_since(after_seq=None, filters=activity.ActivityFilters(), limit=50)
    assert events and all(marker not in json.dumps(events, default=str) for marker in MARKERS)


# --- agents -----------------------------------------------------------------------------------


def test_the_agent_that_sent_an_action_reads_its_own_values(world, api):
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {world.registry.token}")
    body = api.get(f"/api/v1/actions/{world.action.pk}/").json()
    assert body["params"] == PARAMS
    assert body["outcome"] == OUTCOME
    listed = api.get("/api/v1/actions/").json()
    assert PARAMS in [a["params"] for a in listed["results"]]


def test_another_agent_never_reads_the_action_and_is_masked_by_the_rule_too(world, api):
    other = agent_services.agent_register(
        name="Other", slug="other-bot", owner=world.plain,
        business_unit=BusinessUnitFactory(slug="ops"), role=make_role("other-role"),
    )  # fmt: skip
    _, token = agent_services.credential_issue(agent=other)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api.get(f"/api/v1/actions/{world.action.pk}/").status_code == 404
    # Were another agent's user ever a viewer, the rule masks: an agent holds no permission.
    shown = masking.params_for(world.action, viewer=other.service_user)
    assert shown["holder"] == "•••• (pii)"
    assert masking.params_for(world.action, viewer=world.registry.agent.service_user) == PARAMS


def test_a_person_is_refused_the_agents_actions_api(world):
    client = Client()
    client.force_login(world.plain)
    assert client.get(f"/api/v1/actions/{world.action.pk}/").status_code in (401, 403)


# --- the rule ----------------------------------------------------------------------------------


def test_masking_keeps_keys_walks_nested_paths_and_lists_and_never_changes_the_input():
    declaration = {"a.b": "pii", "rows.iban": "financial", "tags": "secret", "absent.x": "pii"}
    value = {"a": {"b": "x", "c": 1}, "rows": [{"iban": "1"}, {"iban": None}, "odd"],
             "tags": ["t1", "t2"], "keep": "k"}  # fmt: skip
    before = json.dumps(value, sort_keys=True)
    out = masking.apply(declaration, value)
    assert out == {
        "a": {"b": "•••• (pii)", "c": 1},
        "rows": [{"iban": "•••• (financial)"}, {"iban": None}, "odd"],
        "tags": ["•••• (secret)", "•••• (secret)"],
        "keep": "k",
    }
    assert json.dumps(value, sort_keys=True) == before
    assert masking.apply({"iban": "financial"}, [{"iban": "1"}]) == [{"iban": "•••• (financial)"}]


def test_notifications_and_anonymous_viewers_never_see_values(world):
    assert not masking.may_view_sensitive(None)
    anonymous = type("Anonymous", (), {"is_authenticated": False})()
    assert not masking.may_view_sensitive(anonymous)
    assert masking.params_for(world.action, viewer=None)["card"] == {"number": "•••• (secret)"}


@pytest.mark.parametrize(
    "declaration",
    [{"x": "private"}, {"": "pii"}, {"a..b": "pii"}, {"x": None}, "pii"],
    ids=repr,
)
def test_a_declaration_with_an_unknown_class_or_a_bad_path_is_refused(world, declaration):
    operation = Operation.objects.get(pk=world.registry.post.pk)
    operation.sensitive_params = declaration
    with pytest.raises(ValidationError):
        operation.full_clean()


def test_the_admin_refuses_a_bad_class_on_the_operation_form(world):
    client = Client()
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    url = reverse("admin:autonomy_operation_change", args=[world.registry.post.pk])
    form = client.get(url).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None}
    for name in ("params_schema", "config", "content_params", "recipient_params",
                 "sensitive_results"):  # fmt: skip
        data[name] = json.dumps(form.initial.get(name) or ({} if "params" not in name else []))
    data["params_schema"] = json.dumps(SCHEMA)
    data["connector"] = world.registry.erp.pk
    data["sensitive_params"] = json.dumps({"holder": "private"})
    response = client.post(url, data)
    assert response.status_code == 200
    assert "sensitive_params" in response.context["adminform"].form.errors


def test_least_privilege_only_risk_officers_and_auditors_may_view_sensitive():
    holders = {role for role, perms in PERMISSIONS.items() if masking.PERMISSION in perms}
    assert holders == {PortalRole.RISK_OFFICER, PortalRole.AUDITOR}


def test_the_trail_keeps_the_full_record(world):
    record = AuditRecord.objects.get(action_id=world.action.pk, kind="action_decision")
    assert record.payload["params"] == PARAMS


def _export_queries(world: World) -> tuple[int, list[str]]:
    audit.seal()
    today = timezone.localdate()
    with CaptureQueriesContext(connection) as queries:
        lines = list(
            audit.export_lines(
                start=today - timedelta(days=1), end=today + timedelta(days=1), fmt="jsonl",
                viewer=world.plain,
            )
        )  # fmt: skip
    return len(queries), lines


def test_the_export_masks_in_a_constant_number_of_queries(world):
    _export_queries(world)  # warm: the first export loads keys and caches
    few, lines = _export_queries(world)
    for n in range(10):
        audit.append(
            kind="action_outcome", actor="worker", agent_id=world.action.agent_id,
            action_id=world.action.pk, payload={"status": "succeeded", "outcome": OUTCOME, "n": n},
        )  # fmt: skip
    many, more_lines = _export_queries(world)
    assert len(more_lines) == len(lines) + 10
    assert many == few
    assert all(IBAN not in line for line in more_lines)


# --- completeness: a new output path fails here until it is classified ------------------------

# URL names (or routes, for unnamed ones) whose responses show action parameters or results:
# each is a row of TABLE above, or a test of this module named beside it.
SHOWS_VALUES = {
    "observability:action-trace": "trace page",
    "approvals:detail": "inbox detail, inbox detail pane",
    "approvals:group": "inbox group page",
    "approval-list": "approvals API list",
    "approval-detail": "approvals API detail",
    "approval-decide": "approvals API detail (the same ApprovalSerializer)",
    "approvals:email-confirm": "approval e-mail link page",
    "action-list": "test_the_agent_that_sent_an_action_reads_its_own_values",
    "action-detail": "test_another_agent_never_reads_the_action_and_is_masked_by_the_rule_too",
    "action-override": "action serializer (override API)",
    "mcp-gateway": "the sending agent only (mcp_gateway._action_result through masking)",
    "workflows:run-detail": "tests/workflows/test_run_masking.py",
    "workflows:run-live": "tests/workflows/test_run_masking.py (the same run_timeline)",
    "admin:autonomy_auditrecord_export": "audit export JSON lines, audit export CSV",
}

# URL names that never show an action's values, each with why.
NEVER_SHOWS = {
    **dict.fromkeys(
        (
            "",
            "healthz",
            "readyz",
            "metrics",
            "signin-refused",
            "oidc_authentication_callback",
            "oidc_authentication_init",
            "oidc_logout",
            "api-root",
            "schema",
            "api-docs",
        ),
        "infrastructure, sign-in and API description: no records",
    ),  # fmt: skip
    **dict.fromkeys(
        ("dashboard", "dashboard-live", "analytics:index", "analytics:template"),
        "counts, rates and charts: aggregates, never values",
    ),
    **dict.fromkeys(
        ("observability:activity", "observability:activity-stream"),
        "one-line summaries that skip masking.VALUE_KEYS (test_the_activity_stream_...)",
    ),
    **dict.fromkeys(
        (
            "approvals:inbox",
            "approvals:inbox-list",
            "approvals:inbox-grouped",
            "approval-group-list",
        ),
        "lists of requests: subject, agent, operation, risk; parameters only in the detail",
    ),  # fmt: skip
    **dict.fromkeys(
        (
            "approvals:decide",
            "approvals:bulk-decide",
            "approvals:group-decide",
            "approval-group-decide",
        ),
        "POST a decision and redirect (or answer counts)",
    ),  # fmt: skip
    **dict.fromkeys(
        (
            "approvals:standing",
            "approvals:standing-detail",
            "approvals:standing-new",
            "approvals:standing-revoke",
            "standing-approval-list",
            "standing-approval-detail",
            "standing-approval-revoke",
        ),
        "standing approvals: conditions a risk officer wrote, not an action's values",
    ),  # fmt: skip
    **dict.fromkeys(
        (
            "approvals:suggestions",
            "approvals:suggestion-standing",
            "approvals:suggestion-policy",
            "approvals:suggestion-dismiss",
            "suggestion-list",
        ),
        "suggestions: counts of repeated approvals per operation and agent",
    ),  # fmt: skip
    **dict.fromkeys(
        (
            "agents:detail",
            "agents:flag-review",
            "agent-list",
            "agent-detail",
            "agent-me",
            "agent-credentials",
            "agent-retire",
            "business-unit-list",
            "business-unit-detail",
            "role-list",
            "role-detail",
            "credential-list",
            "credential-detail",
            "credential-revoke",
            "credential-rotate",
        ),
        "the agent registry and credentials: no action values (recent actions by operation)",
    ),  # fmt: skip
    **dict.fromkeys(
        (
            "agent-intervention-kill",
            "agent-intervention-pause",
            "agent-intervention-quarantine",
            "agent-intervention-resume",
            "intervention-list",
            "intervention-detail",
            "intervention-emergency-stop",
            "intervention-lift",
            "interventions:index",
            "interventions:stop",
            "interventions:lift",
            "interventions:agent",
            "interventions:override",
            "interventions:redirect",
        ),
        "interventions: who stopped what and why; the page's override redirects to the trace",
    ),  # fmt: skip
    **dict.fromkeys(
        (
            "rollouts:list",
            "rollouts:plan",
            "rollouts:plan-live",
            "rollouts:propose",
            "rollouts:demote",
            "rollout-list",
            "rollout-detail",
            "rollout-demote",
            "rollout-promotions",
            "autonomy-setting-list",
            "autonomy-setting-detail",
        ),
        "rollouts and autonomy levels: waves and measured rates",
    ),  # fmt: skip
    **dict.fromkeys(
        ("operation-list", "operation-detail", "simulate"),
        "the registry's operations, and a dry run that echoes what its caller sent",
    ),
    **dict.fromkeys(
        ("memory-entry-list", "memory-entry-detail", "memory-entry-purge"),
        "agents' shared memory: what agents wrote there, not an operation's declared values",
    ),
    **dict.fromkeys(
        (
            "claim-list",
            "claim-detail",
            "claim-release",
            "claim-renew",
            "run-list",
            "run-detail",
            "run-message-list",
            "workflows:run-list",
            "workflows:run-list-live",
            "workflows:run-control",
            "workflows:step-control",
        ),
        "claims, runs' states and hand-off messages between agents; no run context",
    ),  # fmt: skip
    **dict.fromkeys(
        (
            "task-list",
            "task-next",
            "task-detail",
            "task-claim",
            "task-complete",
            "task-context",
            "task-escalate",
            "task-fail",
            "task-handoff",
        ),
        "an agent's own assigned work: the inputs its template made visible to its step",
    ),  # fmt: skip
    **dict.fromkeys(
        (
            "admin:index",
            "admin:app_list",
            "admin:login",
            "admin:logout",
            "admin:password_change",
            "admin:password_change_done",
            "admin:jsi18n",
            "admin:view_on_site",
            "admin:autocomplete",
            "admin:auth_user_password_change",
            "admin:None",
        ),
        "the admin's own pages",
    ),  # fmt: skip
    **dict.fromkeys(
        (
            "admin:agents_agent_auditlog",
            "admin:agents_businessunit_auditlog",
            "admin:agents_credential_auditlog",
            "admin:agents_role_auditlog",
            "admin:agents_agent_credential",
            "admin:agents_agent_issue_credential",
        ),
        "registry history and credentials",
    ),  # fmt: skip
    **dict.fromkeys(
        (
            "admin:autonomy_connector_import_openapi",
            "admin:autonomy_connector_permissions",
            "admin:autonomy_connector_permissions_manage_group",
            "admin:autonomy_connector_permissions_manage_user",
            "admin:autonomy_operation_permissions",
            "admin:autonomy_operation_permissions_manage_group",
            "admin:autonomy_operation_permissions_manage_user",
            "admin:autonomy_policy_schema",
        ),
        "connectors, grants and the policy schema: the registry, not actions",
    ),  # fmt: skip
    **dict.fromkeys(
        (
            "policies:list",
            "policies:history",
            "policies:version",
            "policies:rollback",
            "policy-list",
            "policy-detail",
        ),
        "policy texts and their history: rules, not action values",
    ),  # fmt: skip
    **dict.fromkeys(
        ("trials:list", "trials:detail", "trials:start", "trials:stop", "trials:promote"),
        "draft verdicts, counts and reason messages; values only behind the trace link",
    ),  # fmt: skip
    **dict.fromkeys(
        (
            "access-review-list",
            "access-review-detail",
            "access-review-answer",
            "reviews:list",
            "reviews:detail",
            "reviews:answer",
            "reviews:open",
        ),
        "agents, grants and credentials with their last use: no action values",
    ),  # fmt: skip
    **dict.fromkeys(
        (
            "grant-list",
            "grant-detail",
            "governance-bundle",
            "governance-plan",
            "governance-apply",
            "permission-model-plan",
            "permission-model-clone",
            "permission-models:clone",
            "admin:agents_blueprint_stamp",
        ),
        "governance configuration (grants, policies, thresholds, blueprints): no action values",
    ),  # fmt: skip
    "approvals:change": "redirects to the registry change's approval request",
    "compliance:index": "controls and evidence counts: aggregates, never values",
    "compliance:pack": (
        "whole audit records (their MACs verify over every byte): refused to anyone without "
        "view_sensitive (test_the_evidence_pack_is_refused_without_view_sensitive)"
    ),
    "admin:autonomy_actionrequest_simulate": "a dry run: echoes what the admin typed in",
    **dict.fromkeys(
        (
            "admin:workflows_template_clone",
            "admin:workflows_template_export",
            "admin:workflows_template_import",
            "admin:workflows_template_new_version",
            "admin:workflows_template_publish",
            "admin:workflows_template_start_run",
        ),
        "workflow templates: authoring, no run values",
    ),  # fmt: skip
}

# Admins of models with JSON fields: what their pages show of an action's values.
ADMIN_MODELS = {
    "autonomy.ActionRequest": "admin action page (get_object masks; params/outcome excluded)",
    "autonomy.AuditRecord": "admin audit record (decision), admin audit record (outcome)",
    "workflows.Run": "excludes context",
    "auditlog.LogEntry": "admin changes to the registry; actions are not auditlog-registered",
    "autonomy.ContentRule": "a rule's options",
    "autonomy.AutonomySetting": "operation keys",
    "autonomy.MemoryEntry": "agents' shared memory, not declared operation values",
    "autonomy.Connector": "connector config (secrets are write-only elsewhere)",
    "autonomy.Operation": "the declarations themselves",
    "autonomy.RolloutPlan": "operation keys",
    "autonomy.RolloutPromotion": "measured rates",
    "autonomy.RolloutEvent": "measured rates",
    "autonomy.RolloutMeasurement": "measured rates",
    "agents.Credential": "token scopes",
    "agents.PersonalToken": "token scopes",
    "workflows.Template": "the context schema",
    "approvals.Decision": "inline on the request: params_view, always masked",
    "workflows.StepRun": "inline on the run: its fields leave out input and output",
    "workflows.RunEvent": "inline on the run: kind, actor and message, never its data",
    "workflows.Step": "inline on the template: input maps are paths, not values",
    "agents.Blueprint": "operation keys and policy texts",
    "reviews.ReviewItem": "an access review item's evidence: dates and counts",
    "autonomy.PolicySetVersion": "which version of each policy was in force",
}

# Templates that mention parameters, results, outcomes or payloads: how each gets them.
TEMPLATES = {
    "portal/trace.html": "trace page (views_trace: masking.params_for / outcome_for)",
    "approvals/_detail_action.html": "inbox detail, approval e-mail link page (params_json)",
    "approvals/_detail_gate.html": "inbox detail (content_matches with the viewer)",
    "approvals/_group.html": "inbox group page (groups.group_detail masks)",
    "approvals/email_confirm.html": "approval e-mail link page",
    "approvals/email_result.html": "the word 'outcome' of a decision, no values",
    "emails/approval_needed.txt": "approval e-mail (params_text, viewer=None)",
    "portal/activity.html": "the word 'outcome' in its help text",
    "workflows/_timeline.html": "run_timeline(viewer=) masks context and diffs",
    "admin/autonomy/actionrequest/simulate.html": "a dry run: echoes what the admin typed in",
    "portal/policies/version.html": "a policy's text, in a block styled like parameters",
    "portal/trials/list.html": "the word 'outcome' in its help text",
}
MENTIONS = re.compile(r"params|outcome|result|payload|context_json")


def _url_names(patterns, namespace=None):
    for p in patterns:
        if isinstance(p, URLResolver):
            inner = ":".join(x for x in (namespace, p.namespace) if x) or None
            yield from _url_names(p.url_patterns, inner)
        elif isinstance(p, URLPattern):
            yield f"{namespace}:{p.name}" if namespace else (p.name or "")


def _admin_models() -> list:
    return [m for m in apps.get_models() if admin.site.is_registered(m)]


def _standard_admin_names() -> set[str]:
    return {
        f"admin:{m._meta.app_label}_{m._meta.model_name}_{page}"
        for m in _admin_models()
        for page in ("changelist", "add", "change", "delete", "history")
    }


def test_every_url_is_in_the_table_or_the_allow_list():
    classified = set(SHOWS_VALUES) | set(NEVER_SHOWS)
    names = set(_url_names(get_resolver().url_patterns)) - _standard_admin_names()
    assert not set(SHOWS_VALUES) & set(NEVER_SHOWS)
    unclassified = sorted(names - classified)
    assert not unclassified, (
        "Classify these URLs in tests/autonomy/test_masking.py: a TABLE row if they show an "
        f"action's parameters or results (through autonomy.masking), else NEVER_SHOWS: "
        f"{unclassified}"
    )
    assert not sorted(classified - names), "classified URLs that no longer exist"


def _shown_in_admin() -> set:
    """Registered models and the models of their inlines."""
    shown = set(_admin_models())
    for model in _admin_models():
        shown |= {inline.model for inline in admin.site.get_model_admin(model).inlines}
    return shown


def test_every_admin_of_a_model_with_json_fields_is_classified():
    with_json = {
        m._meta.label
        for m in _shown_in_admin()
        if any(isinstance(f, JSONField) for f in m._meta.get_fields())
    }
    assert sorted(with_json - set(ADMIN_MODELS)) == []
    assert sorted(set(ADMIN_MODELS) - with_json) == []


def test_every_template_that_mentions_values_is_classified():
    root = Path(settings.BASE_DIR) / "templates"
    found = {
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and MENTIONS.search(path.read_text(errors="ignore"))
    }
    assert sorted(found - set(TEMPLATES)) == [], "classify these templates in TEMPLATES"
    assert sorted(set(TEMPLATES) - found) == []


def test_an_approver_who_edits_masked_params_keeps_the_values_they_never_saw(world):
    shown = masking.params_for(world.action, viewer=world.plain)
    edited = {**shown, "amount": 50}
    actions.action_params_narrow(action_id=world.action.pk, params=edited)
    world.action.refresh_from_db()
    assert world.action.params == {**PARAMS, "amount": 50}


def test_restore_only_puts_back_an_untouched_mask():
    operation = Operation(sensitive_params={"rows.iban": "financial", "pin": "secret"})
    stored = {"rows": [{"iban": "A"}, {"iban": "B"}], "pin": "1234"}
    edited = {"rows": [{"iban": "•••• (financial)"}, {"iban": "C"}], "pin": "9999"}
    assert masking.restore(operation, edited, stored) == {
        "rows": [{"iban": "A"}, {"iban": "C"}],
        "pin": "9999",
    }


def test_the_admin_decision_inline_always_masks_changed_params(world):
    from approvals.admin import DecisionInline
    from approvals.models import Decision

    decision = Decision(request=world.approval, params=PARAMS)
    shown = DecisionInline(ApprovalRequest, admin.site).params_view(decision)
    assert shown["holder"] == masking.masked("pii") and shown["invoice_id"] == "INV-9"


def test_content_rule_matches_quoted_from_a_sensitive_param_are_masked(world):
    reason = {
        "code": "content_needs_approval",
        "message": "Content rule 'cards' (card numbers) found card number in card.number",
        "details": {"param": "card.number", "excerpt": f"…{CARD}…",
                    "matches": [{"start": 0, "end": 16, "match": CARD}]},
    }  # fmt: skip
    other = {"code": "content_log", "details": {"param": "invoice_id", "matches": []}}
    action = ActionRequest(
        operation=world.registry.post, agent=world.registry.agent, reasons=[reason, other]
    )
    shown = masking.reasons_for(action, viewer=world.plain)
    assert CARD not in json.dumps(shown)
    assert shown[0]["details"]["matches"][0] == {
        "start": 0, "end": 16, "match": masking.masked("secret")
    }  # fmt: skip
    assert shown[1] == other
    assert masking.reasons_for(action, viewer=world.cleared) == [reason, other]


def test_the_evidence_pack_is_refused_without_view_sensitive(client):
    """The pack holds whole audit records; exporting evidence alone does not open them."""
    from django.contrib.auth.models import Permission

    from tests.factories import UserFactory

    exporter = UserFactory(username="exporter", is_staff=True)
    exporter.user_permissions.add(Permission.objects.get(codename="export_evidence"))
    client.force_login(exporter)
    assert client.post("/compliance/pack/", {"quarter": "2026-Q4"}).status_code == 403
    exporter.user_permissions.add(Permission.objects.get(codename="view_sensitive"))
    exporter = type(exporter).objects.get(pk=exporter.pk)  # permissions are cached per object
    client.force_login(exporter)
    assert client.post("/compliance/pack/", {"quarter": "2026-Q4"}).status_code == 200
