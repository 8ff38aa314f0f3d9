"""Schemathesis against /api/schema/, with all its checks, as an agent and as an admin with a
personal token: schema-valid requests (positive) and schema-violating ones (negative) for every
operation, a bounded number of each, sent in-process through Django's WSGI application.

Every failure is collected by class (the check that failed and the operation), not stopped at,
so one run reports everything it found; ``FUZZ_EXAMPLES`` raises the bound for a deeper run.
"""

import os
from collections import defaultdict
from typing import NamedTuple

import hypothesis
import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance

from agents import user_tokens
from agents.models import PersonalTokenScope
from tests.autonomy.gate_fixtures import build_registry
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "3"))


@pytest.fixture
def wsgi_app():
    """Django's WSGI application, inside the test's transaction: as Django's test client does,
    requests must not close the connection that holds it."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def admin_token(db) -> str:
    """An admin's personal API token, with every scope."""
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    return user_tokens.user_token_issue(
        user=admin, by=admin, name="fuzz", scopes=PersonalTokenScope.values
    )[1]


@pytest.fixture
def api_schema(wsgi_app, admin_token):
    """The schema the API serves (to authenticated clients); its probes (e.g. the same request
    without credentials) are sent to the same in-process application."""
    return schemathesis.openapi.from_wsgi(
        "/api/schema/", wsgi_app, headers={"Authorization": f"Bearer {admin_token}"}
    )


class Finding(NamedTuple):
    """One failed check: which, where, and what the API answered."""

    title: str
    operation: str
    mode: str
    status: int | None
    code: str


def error_code(response) -> str:
    try:
        return response.json()["error"]["code"]
    except Exception:  # noqa: BLE001 - not the envelope: no code
        return ""


def fuzz(schema, app, token: str) -> tuple[int, list[Finding]]:
    """(cases run, every failed check), each operation in both generation modes."""
    headers = {"Authorization": f"Bearer {token}"}
    findings: list[Finding] = []
    cases = 0
    for result in schema.get_all_operations():
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            cases += fuzz_operation(result.ok(), mode, app, headers, findings)
    return cases, findings


def fuzz_operation(operation, mode, app, headers: dict, findings: list[Finding]) -> int:
    """Run one operation's bounded examples in one mode; failed checks go to ``findings``."""
    where = (operation.label, str(mode))
    cases = 0

    @hypothesis.settings(
        max_examples=EXAMPLES,
        phases=[Phase.explicit, Phase.generate],
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        nonlocal cases
        cases += 1
        try:
            response = case.call(app=app, headers=headers)
        except Exception as exc:  # noqa: BLE001 - the application raised: a 500
            findings.append(Finding(f"Server error ({type(exc).__name__})", *where, 500, ""))
            return
        try:
            case.validate_response(response, headers=headers)
        except (FailureGroup, Failure) as failed:
            group = failed.exceptions if isinstance(failed, FailureGroup) else [failed]
            code = error_code(response)
            findings.extend(Finding(f.title, *where, response.status_code, code) for f in group)

    run()
    return cases


def report(who: str, cases: int, findings: list[Finding]) -> None:
    """What the run found, by class: printed for the CI log and the issue's figures."""
    print(f"\nfuzz {who}: {cases} cases, {len(findings)} failed checks")
    by_title = defaultdict(set)
    for finding in findings:
        by_title[finding.title].add(
            f"{finding.operation} [{finding.mode}] {finding.status} {finding.code}".rstrip()
        )
    for title, where in sorted(by_title.items()):
        print(f"  {title}: {sorted(where)}")


def assert_holds(findings: list[Finding]) -> None:
    """The classes this suite guarantees. Others it reports (semantic 400s on references that
    do not exist, 500s on non-UUID ids, lenient query filters) are owned elsewhere."""
    assert [f for f in findings if f.title == "Response violates schema"] == []
    assert [f for f in findings if f.title == "Undocumented status code" and f.status < 500] == []
    assert [f for f in findings if f.title == "Undocumented Content-Type"] == []
    assert [f for f in findings if "authentication" in f.title.lower()] == []
    # A body the schema allows is never refused for carrying a field the schema does not name.
    assert [f for f in findings if f.code == "unknown_field" and f.mode == "positive"] == []


def test_the_api_holds_to_its_schema_for_an_agent(api_schema, wsgi_app):
    registry = build_registry()
    cases, findings = fuzz(api_schema, wsgi_app, registry.token)
    report("agent", cases, findings)
    assert cases >= len(list(api_schema.get_all_operations()))
    assert_holds(findings)


def test_the_api_holds_to_its_schema_for_an_admin_with_a_personal_token(
    api_schema, wsgi_app, admin_token
):
    build_registry()
    cases, findings = fuzz(api_schema, wsgi_app, admin_token)
    report("admin", cases, findings)
    assert cases >= len(list(api_schema.get_all_operations()))
    assert_holds(findings)


def test_every_operation_documents_its_error_answers_with_the_envelope(api_schema):
    envelope = {"$ref": "#/components/schemas/ErrorEnvelope"}
    for result in api_schema.get_all_operations():
        operation = result.ok()
        responses = operation.definition.raw["responses"]
        expected = {"400", "401", "403", "404", "429"}
        if operation.method.lower() in ("post", "put", "patch", "delete"):
            expected |= {"409", "413", "415"}
        assert expected <= set(responses), operation.label
        for status in expected:
            assert responses[status]["content"]["application/json"]["schema"] == envelope


def test_an_action_without_an_amount_and_a_fleet_stop_answer_as_their_schema_says(
    api_schema, wsgi_app, admin_token
):
    """Null where the schema says nullable: an action's amount, a fleet-wide stop's agent."""
    registry = build_registry()
    calls = [
        ("/api/v1/actions/", {"operation": "erp.read-invoice", "params": {}}, registry.token),
        ("/api/v1/interventions/emergency-stop/", {"reason": "drill"}, admin_token),
    ]
    for path, body, token in calls:
        case = api_schema[path]["POST"].Case(body=body, media_type="application/json")
        headers = {"Authorization": f"Bearer {token}"}
        response = case.call(app=wsgi_app, headers=headers)
        assert response.status_code in (200, 201), response.content
        assert None in response.json().values()
        case.validate_response(response, checks=[response_schema_conformance])
