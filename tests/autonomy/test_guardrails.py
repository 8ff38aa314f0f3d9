"""Output guardrails (issue 25): content rules are an input of the gate's one decision.

Table-driven over the detectors and the effects: ``block`` denies and never calls the
connector, ``redact`` delivers the redacted text (at a real SMTP server and at the demo ITSM)
and keeps the original out of every row, ``needs_approval`` sends the action to the inbox
with the matches highlighted, ``log`` only notes. The trace and simulate name the rule; a
rule changed holds from the next decision; a result over its declared bound raises a drift
flag.
"""

from datetime import UTC, datetime
from io import StringIO

import pytest
import requests
import time_machine
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from agents.models import Agent, AgentStatus, DriftFlag, DriftKind
from approvals.models import ApprovalRequest
from autonomy import actions, gate, grants
from autonomy.content import detectors
from autonomy.models import (
    ActionStatus,
    Connector,
    ConnectorCall,
    ConnectorKind,
    ContentEffect,
    ContentRule,
    Detector,
    Effect,
    Operation,
)
from autonomy.policy import services as policy_services
from tests.autonomy.gate_fixtures import build_registry
from tests.conftest import bearer
from tests.demo.conftest import demo_systems  # noqa: F401  (the demo ITSM)
from tests.factories import BusinessUnitFactory, UserFactory, make_role

pytestmark = pytest.mark.django_db

CARD = "4111 1111 1111 1111"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
# detector -> (options, a text holding one match, what the match is)
SAMPLES = {
    Detector.EMAIL: ({}, "Write to jane.doe@example.com today.", "jane.doe@example.com"),
    Detector.PHONE: ({"region": "GB"}, "Call me on 020 7946 0958 please.", "020 7946 0958"),
    Detector.IBAN: ({}, "Pay to DE89 3704 0044 0532 0130 00 now.", "DE89 3704 0044 0532 0130 00"),
    Detector.CARD: ({}, f"The card is {CARD} (exp 12/29).", CARD),
    Detector.NATIONAL_ID: ({"schemes": ["us.ssn"]}, "SSN 536-90-4399 on file.", "536-90-4399"),
    Detector.SECRET: ({}, f"key {AWS_KEY} works", AWS_KEY),
    Detector.FORBIDDEN_TERMS: ({"terms": ["guaranteed"]}, "Guaranteed returns!", "Guaranteed"),
}
CLEAN = "Hello, your order 42 ships on Monday. Kind regards, Sales"
EFFECT_VERDICT = {
    ContentEffect.BLOCK: ("deny", "content_blocked"),
    ContentEffect.NEEDS_APPROVAL: ("needs_approval", "content_needs_approval"),
    ContentEffect.REDACT: ("allow", "content_redacted"),
    ContentEffect.LOG: ("allow", "content_logged"),
}
MAIL_SCHEMA = {"type": "object"}


@pytest.fixture(autouse=True)
def office_hours():
    with time_machine.travel(datetime(2026, 11, 25, 10, 0, tzinfo=UTC), tick=True):
        yield


@pytest.fixture
def mail(smtp_server):
    """The gate fixtures' agent, granted an e-mail operation on a real SMTP server that
    declares its content (subject, body) and recipients (to, cc)."""
    port, inbox = smtp_server
    registry = build_registry()
    approvers = Group.objects.create(name="Finance approvers")
    unit = registry.agent.business_unit
    unit.approver_group = approvers
    unit.save()
    connector = Connector.objects.create(
        slug="mail", name="Outbound mail", kind=ConnectorKind.EMAIL,
        config={"host": "127.0.0.1", "port": port, "from": "bots@corp.example"},
    )  # fmt: skip
    send = Operation.objects.create(
        connector=connector, slug="send-email", name="Send an e-mail", effect=Effect.WRITE,
        sensitivity=1, params_schema=MAIL_SCHEMA, content_params=["subject", "body"],
        recipient_params=["to", "cc"],
    )  # fmt: skip
    grants.grant(target=send, to=registry.agent.role)
    policy_services.registry_changed()
    registry.send, registry.inbox = send, inbox
    registry.approver = UserFactory(username="fiona", is_staff=True)
    registry.approver.groups.add(approvers)
    return registry


def rule(name="rule", detector=Detector.CARD, effect=ContentEffect.BLOCK, options=None, **scope):
    return ContentRule.objects.create(
        name=name, detector=detector, effect=effect, options=options or {}, **scope
    )


def email(body: str, **more) -> dict:
    return {"to": "ap@corp.example", "subject": "Hello", "body": body, **more}


def codes(decision_or_reasons) -> list[str]:
    reasons = getattr(decision_or_reasons, "reasons", decision_or_reasons)
    return [r["code"] for r in reasons]


def decide(registry, params):
    return gate.decide(agent=registry.agent, operation=registry.send, params=params)


# --- the table: every detector with every effect ---------------------------------------------

TABLE = [(detector, effect) for detector in SAMPLES for effect in ContentEffect]


@pytest.mark.parametrize(("detector", "effect"), TABLE)
def test_each_detector_and_effect_decides_as_the_rule_says(mail, detector, effect):
    options, text, found = SAMPLES[detector]
    rule(name=f"{detector} {effect}", detector=detector, effect=effect, options=options)
    decision = decide(mail, email(text))
    verdict, code = EFFECT_VERDICT[effect]
    assert decision.verdict == verdict, decision.reasons
    [reason] = [r for r in decision.reasons if r["code"].startswith("content_")]
    assert reason["code"] == code
    details = reason["details"]
    assert (details["rule"], details["detector"], details["param"]) == (
        f"{detector} {effect}", detector, "body",
    )  # fmt: skip
    if detector in detectors.SENSITIVE:
        assert found not in str(decision.reasons)  # a masked excerpt, never the raw match
    else:
        assert details["matches"][0]["match"] == found  # a term is shown as written
    sensitive_block = effect == ContentEffect.BLOCK and detector in detectors.SENSITIVE
    if effect == ContentEffect.REDACT or sensitive_block:
        assert found not in decision.params["body"]
        assert "[redacted: " in decision.params["body"]
    else:
        assert decision.params is None


@pytest.mark.parametrize("detector", list(SAMPLES))
def test_clean_content_matches_no_detector(mail, detector):
    options, _, _ = SAMPLES[detector]
    rule(name=str(detector), detector=detector, effect=ContentEffect.BLOCK, options=options)
    decision = decide(mail, email(CLEAN))
    assert decision.verdict == "allow" and codes(decision) == ["allowed"]


@pytest.mark.parametrize(
    ("effect", "verdict"),
    [("block", "deny"), ("needs_approval", "needs_approval"), ("log", "allow")],
)
def test_a_recipient_outside_the_allow_list_is_a_match(mail, effect, verdict):
    rule(name="corp only", detector=Detector.RECIPIENT_DOMAINS, effect=effect,
         options={"domains": ["corp.example"]})  # fmt: skip
    inside = decide(mail, email(CLEAN, cc=["boss@eu.corp.example"]))
    assert inside.verdict == "allow"
    outside = decide(mail, email(CLEAN, cc=["x@corp.example.evil.test"]))
    assert outside.verdict == verdict
    [reason] = [r for r in outside.reasons if r["code"].startswith("content_")]
    assert reason["details"]["param"] == "cc"
    assert reason["details"]["matches"][0]["match"] == "x@corp.example.evil.test"


@pytest.mark.parametrize(
    ("effect", "verdict"),
    [("block", "deny"), ("needs_approval", "needs_approval"), ("log", "allow")],
)
def test_a_missing_required_term_is_a_match(mail, effect, verdict):
    rule(name="sign-off", detector=Detector.REQUIRED_TERMS, effect=effect,
         options={"terms": ["Kind regards"]})  # fmt: skip
    assert decide(mail, email(CLEAN)).verdict == "allow"
    missing = decide(mail, email("Hi, see you."))
    assert missing.verdict == verdict
    assert "Kind regards" in str(missing.reasons)


def test_a_redact_rule_cannot_be_stored_for_recipients_or_required_terms(mail):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        rule(name="bad", detector=Detector.RECIPIENT_DOMAINS, effect=ContentEffect.REDACT,
             options={"domains": ["corp.example"]})  # fmt: skip


# --- scope, nesting, undeclared parameters -----------------------------------------------------


def test_rules_apply_only_within_their_scope(mail):
    other_unit = BusinessUnitFactory(slug="logistics", name="Logistics")
    other_role = make_role("shipper")
    other_op = Operation.objects.create(connector=mail.erp, slug="note", name="Note")
    rule(name="unit", business_unit=other_unit)
    rule(name="role", role=other_role)
    rule(name="operation", operation=other_op)
    rule(name="connector", connector=mail.erp)
    assert decide(mail, email(f"card {CARD}")).verdict == "allow"
    rule(name="mine", operation=mail.send, role=mail.agent.role,
         business_unit=mail.agent.business_unit)  # fmt: skip
    denied = decide(mail, email(f"card {CARD}"))
    assert denied.verdict == "deny"
    assert [r["details"]["rule"] for r in denied.reasons if r["code"] == "content_blocked"] == [
        "mine"
    ]


def test_nested_content_is_scanned_and_redacted_where_it_is(mail):
    mail.send.content_params = ["body", "attachments"]
    mail.send.save()
    rule(name="secrets", detector=Detector.SECRET, effect=ContentEffect.REDACT)
    params = email("see attached", attachments=[{"name": "creds.txt", "text": f"id {AWS_KEY}"}])
    decision = decide(mail, params)
    assert decision.verdict == "allow"
    assert decision.params["attachments"][0]["text"] == "id [redacted: aws access key]"
    assert decision.params["attachments"][0]["name"] == "creds.txt"
    [reason] = [r for r in decision.reasons if r["code"] == "content_redacted"]
    assert reason["details"]["param"] == "attachments.0.text"


def test_parameters_the_operation_does_not_declare_are_not_scanned(mail):
    rule(name="cards")
    assert decide(mail, email(CLEAN, reference=CARD)).verdict == "allow"


def test_an_operation_that_declares_no_content_reads_no_rule(mail):
    rule(name="cards")
    params = {"invoice_id": CARD, "amount": 1}
    assert gate.decide(agent=mail.agent, operation=mail.post, params=params).verdict == "allow"


# --- through the lifecycle: what is stored, sent, shown ----------------------------------------


def _dump() -> str:
    out = StringIO()
    call_command("dumpdata", stdout=out)
    return out.getvalue()


def test_block_never_calls_the_connector_and_stores_no_card_number(mail):
    rule(name="Card numbers never leave")
    action, _ = actions.action_request(
        agent=mail.agent, operation_key="mail.send-email", params=email(f"card {CARD}")
    )
    assert action.status == ActionStatus.DENIED
    assert actions.action_execute(action_id=action.pk).status == ActionStatus.DENIED
    assert mail.inbox.received() == []
    assert not ConnectorCall.objects.exists()
    assert CARD not in _dump() and CARD.replace(" ", "") not in _dump()


def test_redact_delivers_the_redacted_text_at_a_real_smtp_server(mail):
    rule(name="Secrets are redacted", detector=Detector.SECRET, effect=ContentEffect.REDACT)
    action, _ = actions.action_request(
        agent=mail.agent, operation_key="mail.send-email",
        params=email(f"The deploy key is {AWS_KEY}, keep it safe."),
    )  # fmt: skip
    assert action.status == ActionStatus.APPROVED
    done = actions.action_execute(action_id=action.pk)
    assert done.status == ActionStatus.SUCCEEDED, done.error
    [message] = mail.inbox.received()
    body = message.get_content()
    assert "The deploy key is [redacted: aws access key], keep it safe." in body
    assert AWS_KEY not in message.as_string()
    assert AWS_KEY not in _dump()  # not in the action, the audit trail nor the receipt


def test_redact_delivers_the_redacted_text_at_the_demo_itsm(demo_systems, settings, monkeypatch):  # noqa: F811
    from demo import connectors as demo_connectors
    from demo import guardrails as demo_guardrails
    from demo import registry as demo_registry

    settings.AUTONOMY_DEMO_SYSTEMS_URL = demo_systems.url
    monkeypatch.setenv("AUTONOMY_DEMO_SYSTEMS_TOKEN", "demo-tok")
    demo_registry.seed(agents=30)
    demo_connectors.seed()
    demo_guardrails.seed()
    agent = Agent.objects.filter(role__slug="incident-triager", status=AgentStatus.ACTIVE)[0]
    secret = "password=Hunter2-Hunter2"
    action, _ = actions.action_request(
        agent=agent, operation_key="itsm.create-incident",
        params={"title": f"VPN broken, try {secret}", "priority": 3},
    )  # fmt: skip
    assert action.status == ActionStatus.APPROVED, action.reasons
    done = actions.action_execute(action_id=action.pk)
    assert done.status == ActionStatus.SUCCEEDED, done.error
    incident_id = done.outcome["data"]["incident_id"]
    stored = requests.get(
        f"{demo_systems.url}/itsm/incidents/{incident_id}",
        headers={"Authorization": "Bearer demo-tok"},
        timeout=5,
    ).json()
    assert stored["title"] == "VPN broken, try [redacted: assigned secret]"
    assert "Hunter2" not in _dump()


def test_needs_approval_shows_the_matches_highlighted_in_the_inbox(mail, client):
    rule(name="Brand: no promises", detector=Detector.FORBIDDEN_TERMS,
         effect=ContentEffect.NEEDS_APPROVAL, options={"terms": ["guaranteed", "risk-free"]})  # fmt: skip
    action, _ = actions.action_request(
        agent=mail.agent, operation_key="mail.send-email",
        params=email("Guaranteed returns <b>and</b> a risk-free trial."),
    )  # fmt: skip
    assert action.status == ActionStatus.PENDING_APPROVAL, action.reasons
    approval = ApprovalRequest.objects.get(action=action)
    client.force_login(mail.approver)
    page = client.get(f"/inbox/{approval.pk}/").content.decode()
    assert "Content rule Brand: no promises" in page
    assert '<mark class="content-match content-needs_approval" title="Brand: no promises">' \
           "Guaranteed</mark>" in page  # fmt: skip
    assert ">risk-free</mark>" in page
    assert "&lt;b&gt;and&lt;/b&gt;" in page  # the agent's text is escaped around the marks
    assert mail.inbox.received() == []


def test_an_approved_brand_violation_is_released_and_sent(mail):
    rule(name="brand", detector=Detector.FORBIDDEN_TERMS, effect=ContentEffect.NEEDS_APPROVAL,
         options={"terms": ["guaranteed"]})  # fmt: skip
    action, _ = actions.action_request(
        agent=mail.agent, operation_key="mail.send-email", params=email("guaranteed!")
    )
    released = actions.action_release(action_id=action.pk, code="approval_granted", message="ok")
    assert released.status == ActionStatus.APPROVED
    actions.action_execute(action_id=action.pk)
    assert len(mail.inbox.received()) == 1


def test_a_block_rule_added_while_waiting_denies_the_release(mail):
    rule(name="brand", detector=Detector.FORBIDDEN_TERMS, effect=ContentEffect.NEEDS_APPROVAL,
         options={"terms": ["guaranteed"]})  # fmt: skip
    action, _ = actions.action_request(
        agent=mail.agent, operation_key="mail.send-email", params=email(f"guaranteed {CARD}")
    )
    assert action.status == ActionStatus.PENDING_APPROVAL
    rule(name="cards")
    released = actions.action_release(action_id=action.pk, code="approval_granted", message="ok")
    assert released.status == ActionStatus.DENIED
    assert "content_blocked" in codes(released.reasons)
    assert mail.inbox.received() == []


def test_the_trace_names_the_rule_and_shows_the_masked_match(mail, client, viewer):
    rule(name="Card numbers never leave")
    action, _ = actions.action_request(
        agent=mail.agent, operation_key="mail.send-email", params=email(f"card {CARD} ok")
    )
    client.force_login(viewer)
    page = client.get(f"/actions/{action.pk}/trace/").content.decode()
    assert "Card numbers never leave" in page and "content_blocked" in page
    assert "•••••••••••••••1111" in page and CARD not in page
    assert "[redacted: card number]</mark>" in page


def test_simulate_shows_the_same_content_reasons(mail):
    rule(name="Card numbers never leave")
    rule(name="secrets", detector=Detector.SECRET, effect=ContentEffect.REDACT)
    agent = bearer(APIClient(), mail.token)
    body = agent.post(
        "/api/v1/simulate/",
        {"operation": "mail.send-email", "params": email(f"{CARD} {AWS_KEY}")},
        format="json",
    ).json()
    assert body["verdict"] == "deny"
    assert [r["details"]["rule"] for r in body["reasons"] if r["code"].startswith("content_")] == [
        "Card numbers never leave", "secrets",
    ]  # fmt: skip
    assert body["redacted"] is True
    assert AWS_KEY not in str(body) and CARD not in str(body)
    decided = decide(mail, email(f"{CARD} {AWS_KEY}"))
    assert [r for r in body["reasons"]] == decided.reasons


# --- the version-keyed cache -------------------------------------------------------------------


def test_a_rule_change_holds_from_the_next_decision(mail):
    params = email(f"card {CARD}")
    assert decide(mail, params).verdict == "allow"
    card = rule(name="cards")
    assert decide(mail, params).verdict == "deny"
    card.effect = ContentEffect.NEEDS_APPROVAL
    card.save()
    assert decide(mail, params).verdict == "needs_approval"
    card.enabled = False
    card.save()
    assert decide(mail, params).verdict == "allow"
    card.enabled = True
    card.save()
    card.delete()
    assert decide(mail, params).verdict == "allow"


def _queries(mail, params) -> int:
    decide(mail, params)  # warm the caches for this version
    with CaptureQueriesContext(connection) as ctx:
        decide(mail, params)
    return len(ctx.captured_queries)


def test_twenty_rules_cost_no_query_per_decision(mail):
    params = email("x" * 5000)
    without = _queries(mail, params)
    for i in range(20):
        rule(name=f"terms {i}", detector=Detector.FORBIDDEN_TERMS,
             effect=ContentEffect.NEEDS_APPROVAL, options={"terms": [f"word{i}"]})  # fmt: skip
    assert _queries(mail, params) == without


# --- results ---------------------------------------------------------------------------------


@pytest.fixture
def export(mail, http_system):
    crm = Connector.objects.create(
        slug="crm", name="CRM", kind=ConnectorKind.CRM, config={"base_url": http_system.url}
    )
    op = Operation.objects.create(
        connector=crm, slug="export-contacts", name="Export contacts", params_schema={},
        config={"method": "GET", "path": "/contacts"}, result_max_records=2,
        result_records_key="data.contacts",
    )  # fmt: skip
    grants.grant(target=op, to=mail.agent.role)
    policy_services.registry_changed()
    return http_system


@pytest.mark.parametrize(("records", "flagged"), [(2, False), (3, True)])
def test_a_result_over_its_bound_raises_a_drift_flag(mail, export, client, viewer, records,
                                                     flagged):  # fmt: skip
    export.routes["/contacts"] = (200, {"contacts": [{"id": i} for i in range(records)]})
    action, _ = actions.action_request(
        agent=mail.agent, operation_key="crm.export-contacts", params={}
    )
    done = actions.action_execute(action_id=action.pk)
    assert done.status == ActionStatus.SUCCEEDED, done.error
    flags = list(DriftFlag.objects.filter(agent=mail.agent, kind=DriftKind.RESULT_BOUND))
    assert len(flags) == flagged
    if flagged:
        assert flags[0].subject == "crm.export-contacts"
        assert flags[0].evidence == {
            "operation": "crm.export-contacts", "action_id": str(action.pk), "records": 3,
            "bound": 2, "records_key": "data.contacts",
        }  # fmt: skip
    client.force_login(viewer)
    page = client.get(f"/actions/{action.pk}/trace/").content.decode()
    assert 'id="trace-result"' in page and f"{records} records · bound 2" in page
    assert ("over its bound" in page) == flagged


# --- the demo ---------------------------------------------------------------------------------


def test_the_demo_rules_block_a_card_number_and_send_a_brand_violation_to_people(db):
    import random

    from demo import connectors as demo_connectors
    from demo import guardrails as demo_guardrails
    from demo import registry as demo_registry

    demo_registry.seed(agents=30)
    demo_connectors.seed()
    assert demo_guardrails.seed() == {"content_rules": 3}
    assert demo_guardrails.seed() == {"content_rules": 0}  # idempotent
    agent = Agent.objects.filter(role__slug="support-agent", status=AgentStatus.ACTIVE)[0]
    rng = random.Random(1)
    (op, card_email, _), (_, brand_email, _) = demo_guardrails.PLAYS
    blocked, _ = actions.action_request(agent=agent, operation_key=op, params=card_email(rng))
    assert blocked.status == ActionStatus.DENIED
    assert "Card numbers never leave" in str(blocked.reasons)
    waiting, _ = actions.action_request(agent=agent, operation_key=op, params=brand_email(rng))
    assert waiting.status == ActionStatus.PENDING_APPROVAL, waiting.reasons
    assert "Brand: no promises we cannot keep" in str(waiting.reasons)


def test_at_the_shadow_level_content_reasons_are_recorded_and_nothing_is_sent(mail):
    from autonomy.models import AutonomyLevel, AutonomySetting

    AutonomySetting.objects.create(level=AutonomyLevel.SHADOW, agent=mail.agent)
    rule(name="brand", detector=Detector.FORBIDDEN_TERMS, effect=ContentEffect.NEEDS_APPROVAL,
         options={"terms": ["guaranteed"]})  # fmt: skip
    rule(name="secrets", detector=Detector.SECRET, effect=ContentEffect.REDACT)
    action, _ = actions.action_request(
        agent=mail.agent, operation_key="mail.send-email", params=email(f"guaranteed {AWS_KEY}")
    )
    assert action.status == ActionStatus.SHADOWED
    assert {"content_needs_approval", "content_redacted", "autonomy_shadow"} <= set(
        codes(action.reasons)
    )
    assert AWS_KEY not in str(action.params)
    assert mail.inbox.received() == [] and not ApprovalRequest.objects.exists()


def test_simulate_returns_the_params_that_would_be_sent(mail):
    rule(name="secrets", detector=Detector.SECRET, effect=ContentEffect.REDACT)
    agent = bearer(APIClient(), mail.token)
    body = agent.post(
        "/api/v1/simulate/",
        {"operation": "mail.send-email", "params": email(f"key {AWS_KEY}")},
        format="json",
    ).json()
    assert body["verdict"] == "allow"
    assert body["redacted_params"]["body"] == "key [redacted: aws access key]"


@pytest.mark.parametrize(
    "text",
    [
        "4111111111111111",
        "card 4111-1111-1111-1111.",
        "card 4111.1111.1111.1111, thanks",
        "(4111 1111 1111 1111)",
        "pay with 5555 5555 5555 4444 today",
    ],
)
def test_card_numbers_are_found_however_they_are_written(mail, text):
    rule(name="cards")
    assert decide(mail, email(text)).verdict == "deny"


@pytest.mark.parametrize(
    "text",
    ["order 4111 1111 1111 1112", "call 020 7946 0958", "total 1,240.50 EUR on 3.12.2026"],
)
def test_numbers_that_fail_the_checksum_are_not_cards(mail, text):
    rule(name="cards")
    assert decide(mail, email(text)).verdict == "allow"


def test_a_rule_stored_with_bad_options_does_not_break_decisions(mail):
    ContentRule.objects.create(
        name="ids", detector=Detector.NATIONAL_ID, effect=ContentEffect.BLOCK,
        options={"schemes": ["xx.nope", 7]},
    )  # fmt: skip
    ContentRule.objects.create(
        name="terms", detector=Detector.FORBIDDEN_TERMS, effect=ContentEffect.BLOCK,
        options={"terms": "guaranteed"},
    )  # fmt: skip
    assert decide(mail, email(CLEAN)).verdict == "allow"
    assert decide(mail, email("SSN 536-90-4399")).verdict == "deny"  # the default schemes


# --- who may write rules -----------------------------------------------------------------------

ADD_RULE = "/admin/autonomy/contentrule/add/"


def _portal_person(username: str, role: str):
    from agents.portal_roles import group_name

    user = UserFactory(username=username, is_staff=True)
    user.groups.add(Group.objects.get(name=group_name(role)))
    return user


def _rule_form(**fields) -> dict:
    return {"name": "cards", "detector": "card", "options": "{}", "effect": "block",
            "enabled": "on", **fields}  # fmt: skip


@pytest.mark.parametrize(("role", "may"), [("risk_officer", True), ("it_admin", True),
                                           ("approver", False), ("viewer", False)])  # fmt: skip
def test_only_risk_officers_and_it_admins_write_content_rules(client, role, may):
    client.force_login(_portal_person(f"p-{role}", role))
    response = client.post(ADD_RULE, _rule_form())
    assert (response.status_code == 302) == may, response.status_code
    assert ContentRule.objects.filter(name="cards").exists() == may


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"detector": "forbidden_terms", "options": "{}"}, "options"),
        ({"detector": "recipient_domains", "options": '{"domains": "corp"}'}, "options"),
        ({"detector": "national_id", "options": '{"schemes": ["xx.nope"]}'}, "options"),
        ({"detector": "required_terms", "options": '{"terms": ["Hi"]}', "effect": "redact"},
         "effect"),
    ],
)  # fmt: skip
def test_the_admin_refuses_a_rule_the_gate_could_not_apply(client, fields, field):
    client.force_login(_portal_person("risk", "risk_officer"))
    response = client.post(ADD_RULE, _rule_form(**fields))
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert not ContentRule.objects.exists()


@pytest.mark.parametrize(
    ("detector", "options", "text", "found"),
    [
        (Detector.IBAN, {}, "to GB82 WEST 1234 5698 7654 32 please", "GB82 WEST 1234 5698 7654 32"),
        (Detector.IBAN, {}, "IBAN: NL91ABNA0417164300.", "NL91ABNA0417164300"),
        (Detector.PHONE, {"region": "GB"}, "ring +44 20 7946 0958 now", "+44 20 7946 0958"),
        (Detector.PHONE, {"region": "US"}, "call (415) 555-2671.", "(415) 555-2671"),
        (Detector.NATIONAL_ID, {}, "DNI 12345678Z, idnr 36 574 261 809", "12345678Z"),
        (Detector.REQUIRED_TERMS, {"terms": ["Kind regards"]}, "Hi", "Kind regards"),
    ],
)  # fmt: skip
def test_what_detectors_find_is_named_in_the_reason(mail, detector, options, text, found):
    rule(name="r", detector=detector, effect=ContentEffect.LOG, options=options)
    decision = decide(mail, email(text))
    [reason] = [r for r in decision.reasons if r["code"] == "content_logged"]
    matches = reason["details"]["matches"]
    if detector == Detector.REQUIRED_TERMS:
        assert matches == [{"start": 0, "end": 0, "match": "Kind regards"}]
        return
    start, end = matches[0]["start"], matches[0]["end"]
    assert text[start:end] == found
