"""Standing approvals on the portal and the API: granted from a request's pane, listed with
today's uses, revoked from their page; refused to people without the policy permission, to
an agent's owner for that agent, and answered with the JSON envelope on the API."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Group

from agents.portal_roles import PortalRole, group_name
from autonomy import actions
from autonomy.models import ActionStatus, StandingApproval
from autonomy.standing import services as standing
from tests.approvals.conftest import approver, pending_action
from tests.autonomy.gate_fixtures import build_registry
from tests.conftest import assert_envelope

pytestmark = pytest.mark.django_db


def risk_officer(username: str, *, approves: bool = False):
    user = approver(username, group=group_name(PortalRole.RISK_OFFICER))
    if approves:
        user.groups.add(Group.objects.get(name=group_name(PortalRole.APPROVER)))
    return user


@pytest.fixture
def pending(db):
    registry = build_registry()
    return registry, pending_action(registry, amount=5000)


def grant_terms(registry, **overrides) -> dict:
    terms = {
        "operation": "erp.post-invoice", "role": registry.agent.role.slug,
        "unit": registry.agent.business_unit.slug, "max_risk": 60, "daily_limit": 3,
        "days": 7, "reason": "month-end invoices",
    }  # fmt: skip
    terms.update(overrides)
    return terms


def test_the_request_pane_links_to_a_grant_form_prefilled_from_it(client, pending):
    registry, action = pending
    client.force_login(risk_officer("ro", approves=True))
    pane = client.get(f"/inbox/{action.approval.pk}/?partial=1").content.decode()
    assert 'id="grant-standing-link"' in pane
    link = pane.split('id="grant-standing-link"')[0].rsplit('href="', 1)[1].split('"')[0]
    link = link.replace("&amp;", "&")
    assert "operation=erp.post-invoice" in link and "role=invoice-processor" in link
    assert "unit=finance" in link and "days=7" in link
    rounded = -(-action.risk_score // 10) * 10
    assert f"max_risk={min(rounded, 84)}" in link
    assert f"source={action.approval.pk}" in link
    form = client.get(link).content.decode()
    assert 'value="erp.post-invoice"' in form
    assert f'value="{action.approval.pk}"' in form
    assert '<option value="invoice-processor" selected>' in form


def test_an_approver_sees_no_grant_link_and_is_refused_the_form(client, pending):
    registry, action = pending
    client.force_login(approver("plain-approver"))
    pane = client.get(f"/inbox/{action.approval.pk}/?partial=1").content.decode()
    assert "grant-standing-link" not in pane
    assert client.get("/inbox/standing/new/").status_code == 403
    assert client.post("/inbox/standing/new/", grant_terms(registry)).status_code == 403
    assert not StandingApproval.objects.exists()


def test_granting_from_the_form_lets_the_next_action_through(client, pending):
    registry, action = pending
    client.force_login(risk_officer("ro"))
    response = client.post(
        "/inbox/standing/new/",
        grant_terms(registry, max_risk=84, source=str(action.approval.pk)),
    )
    granted = StandingApproval.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/inbox/standing/{granted.pk}/"
    assert granted.source_request_id == action.approval.pk
    assert granted.role == registry.agent.role and granted.business_unit.slug == "finance"
    again, _ = actions.action_request(
        agent=registry.agent, operation_key="erp.post-invoice",
        params={"invoice_id": "INV-2", "amount": 5000},
    )  # fmt: skip
    assert again.status == ActionStatus.APPROVED, again.reasons
    listing = client.get("/inbox/standing/").content.decode()
    assert f'data-standing="{granted.pk}"' in listing
    assert 'data-used="1"' in listing and "1 / 3" in listing
    trace = client.get(f"/actions/{again.pk}/trace/").content.decode()
    assert 'id="trace-standing"' in trace
    assert f'href="/inbox/standing/{granted.pk}/"' in trace
    assert "granted by <strong>ro</strong>" in trace


def test_bad_terms_are_shown_on_the_form(client, pending):
    registry, _ = pending
    client.force_login(risk_officer("ro"))
    response = client.post("/inbox/standing/new/", grant_terms(registry, max_risk=85))
    assert response.status_code == 400
    assert "deny threshold" in response.content.decode()
    unknown = client.post("/inbox/standing/new/", grant_terms(registry, operation="erp.nope"))
    assert unknown.status_code == 400 and "No operation" in unknown.content.decode()
    assert not StandingApproval.objects.exists()


def test_the_owner_may_not_grant_their_own_agent_on_the_form(client, pending):
    registry, _ = pending
    owner = registry.officer
    owner.is_staff = True
    owner.save()
    owner.groups.add(Group.objects.get(name=group_name(PortalRole.RISK_OFFICER)))
    client.force_login(owner)
    terms = grant_terms(registry, role="", unit="", agent=registry.agent.slug)
    response = client.post("/inbox/standing/new/", terms)
    assert response.status_code == 403
    assert "someone else must grant" in response.content.decode()
    assert not StandingApproval.objects.exists()


def test_revoking_from_its_page_stops_it_and_shows_why(client, pending):
    registry, _ = pending
    officer = risk_officer("ro")
    granted = standing.standing_grant(
        by=officer, operation=registry.post, role=registry.agent.role, max_risk=84, days=7,
        reason="month end",
    )  # fmt: skip
    client.force_login(officer)
    page = client.get(f"/inbox/standing/{granted.pk}/").content.decode()
    assert 'id="revoke-standing"' in page and 'data-state="active"' in page
    assert client.post(f"/inbox/standing/{granted.pk}/revoke/", {"reason": ""}).status_code == 400
    done = client.post(f"/inbox/standing/{granted.pk}/revoke/", {"reason": "audit finding"})
    assert done.status_code == 302
    page = client.get(f"/inbox/standing/{granted.pk}/").content.decode()
    assert 'data-state="revoked"' in page and "audit finding" in page
    assert 'id="revoke-standing"' not in page
    viewer = approver("viewer-person", group=group_name(PortalRole.VIEWER))
    client.force_login(viewer)
    assert client.get(f"/inbox/standing/{granted.pk}/").status_code == 200
    assert client.post(f"/inbox/standing/{granted.pk}/revoke/", {"reason": "x"}).status_code == 403


# --- the API --------------------------------------------------------------------------------


def api_terms(registry, **overrides) -> dict:
    terms = {
        "operation": "erp.post-invoice", "role": registry.agent.role.slug, "max_risk": 60,
        "daily_limit": 200, "days": 7, "reason": "month end",
    }  # fmt: skip
    terms.update(overrides)
    return terms


def test_the_api_grants_lists_reads_and_revokes(api, pending):
    registry, action = pending
    api.force_authenticate(risk_officer("ro"))
    made = api.post(
        "/api/v1/standing-approvals/",
        api_terms(registry, source=str(action.approval.pk), max_amount="9000.00"),
        format="json",
    )
    assert made.status_code == 201, made.content
    body = made.json()
    assert body["operation"] == "erp.post-invoice" and body["state"] == "active"
    assert body["granted_by"] == "ro" and body["max_amount"] == "9000.00"
    assert body["source_request_id"] == str(action.approval.pk)
    assert StandingApproval.objects.get().max_amount == Decimal("9000.00")
    listed = api.get("/api/v1/standing-approvals/?state=active").json()
    assert [s["id"] for s in listed["results"]] == [body["id"]]
    assert api.get("/api/v1/standing-approvals/?state=revoked").json()["results"] == []
    assert api.get(f"/api/v1/standing-approvals/{body['id']}/").json()["id"] == body["id"]
    revoked = api.post(
        f"/api/v1/standing-approvals/{body['id']}/revoke/", {"reason": "done"}, format="json"
    )
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    again = api.post(
        f"/api/v1/standing-approvals/{body['id']}/revoke/", {"reason": "again"}, format="json"
    )
    assert_envelope(again, 409, "illegal_transition")


def test_api_errors_are_the_json_envelope(api, pending):
    registry, action = pending
    api.force_authenticate(risk_officer("ro"))
    url = "/api/v1/standing-approvals/"
    assert_envelope(api.post(url, api_terms(registry, colour="red"), format="json"), 400,
                    "unknown_field")  # fmt: skip
    assert_envelope(api.post(url, api_terms(registry, operation="erp.nope"), format="json"),
                    400, "validation_failed")  # fmt: skip
    assert_envelope(api.post(url, api_terms(registry, max_risk=85, business_unit="finance"),
                             format="json"), 400, "validation_failed")  # fmt: skip
    assert_envelope(api.post(url, api_terms(registry, days=91), format="json"), 400,
                    "validation_failed")  # fmt: skip
    assert_envelope(api.post(url, api_terms(registry, source="00000000-0000-0000-0000-000000000000"),
                             format="json"), 400, "validation_failed")  # fmt: skip
    assert_envelope(api.get(f"{url}999999/"), 404, "not_found")
    api.force_authenticate(approver("plain-approver"))
    assert_envelope(api.post(url, api_terms(registry), format="json"), 403, "permission_denied")
    assert api.get(url).status_code == 200  # approvers read them
    api.force_authenticate(None)
    assert api.get(url).status_code == 401
    assert not StandingApproval.objects.exists()


def test_the_owner_is_refused_on_the_api_for_their_agent(api, pending):
    registry, _ = pending
    owner = registry.officer
    owner.is_staff = True
    owner.save()
    owner.groups.add(Group.objects.get(name=group_name(PortalRole.RISK_OFFICER)))
    api.force_authenticate(owner)
    refused = api.post(
        "/api/v1/standing-approvals/",
        api_terms(registry, role=None, agent=registry.agent.slug),
        format="json",
    )
    assert_envelope(refused, 403, "permission_denied")


def test_the_list_page_and_the_api_cost_the_same_for_10_and_50(
    client, api, pending, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    registry, _ = pending
    officer = risk_officer("ro")
    client.force_login(officer)
    api.force_authenticate(officer)

    def grant_some(n: int) -> None:
        for i in range(n):
            standing.standing_grant(
                by=officer, operation=registry.post, role=registry.agent.role, max_risk=60,
                daily_limit=5, days=1 + i % 30, reason=f"batch {i}",
            )  # fmt: skip

    def queries() -> tuple[int, int]:
        with CaptureQueriesContext(connection) as page:
            assert client.get("/inbox/standing/").status_code == 200
        with CaptureQueriesContext(connection) as listed:
            assert api.get("/api/v1/standing-approvals/").status_code == 200
        return len(page.captured_queries), len(listed.captured_queries)

    grant_some(10)
    few = queries()
    grant_some(40)
    with django_assert_max_num_queries(few[0]):
        assert client.get("/inbox/standing/").content.decode().count("standing-row") == 50
    assert queries() == few
