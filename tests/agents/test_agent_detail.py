"""The agent detail page: identity, grants, recent actions, drift flags, risk over time."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from agents.models import AgentBaseline, DriftFlag, DriftKind, FlagStatus
from agents.portal_roles import PortalRole, group_name
from autonomy.models import ActionRequest, ActionStatus, AuditRecord, Verdict
from tests.autonomy.gate_fixtures import build_registry
from tests.factories import UserFactory


@pytest.fixture
def registry(db):
    return build_registry(slug="ap-bot")


@pytest.fixture
def officer(db):
    user = UserFactory(username="risk-officer", is_staff=True)
    user.groups.add(Group.objects.get(name=group_name(PortalRole.RISK_OFFICER)))
    return user


def _fill(registry, n: int, start: int = 0) -> None:
    now = timezone.now()
    ActionRequest.objects.bulk_create(
        ActionRequest(
            agent=registry.agent, operation=registry.read, verdict=Verdict.ALLOW,
            status=ActionStatus.SUCCEEDED, created_at=now - timedelta(minutes=i * 7),
            risk_score=(i * 13) % 90,
        )
        for i in range(n)
    )  # fmt: skip
    DriftFlag.objects.bulk_create(
        DriftFlag(
            agent=registry.agent, kind=DriftKind.FIRST_CONNECTOR, subject=f"c{start + i}",
            status=FlagStatus.OPEN if i % 2 else FlagStatus.DISMISSED,
            evidence={"connector": f"c{i}", "actions": i}, reviewed_by=None,
        )
        for i in range(n)
    )  # fmt: skip


def _flag(registry) -> DriftFlag:
    AgentBaseline.objects.create(agent=registry.agent, connectors={"erp": 40}, sample_size=40)
    return DriftFlag.objects.create(
        agent=registry.agent,
        kind=DriftKind.FIRST_CONNECTOR,
        subject="crm",
        evidence={"connector": "crm", "actions": 12, "baseline_connectors": ["erp"]},
    )


def test_page_shows_identity_grants_credentials_and_never_a_secret(registry, officer, client):
    client.force_login(officer)

    page = client.get(f"/agents/{registry.agent.slug}/").content.decode()

    assert "AP bot" in page and "Finance" in page and "Invoice-Processor" in page
    assert "erp.post-invoice" in page and "to role:invoice-processor" in page
    prefix = registry.token.split("_")[1]
    assert f"aos_{prefix}_…" in page
    assert registry.token not in page and registry.token.split("_", 2)[2] not in page


def test_recent_actions_link_to_their_trace(registry, officer, client):
    _fill(registry, 3)
    client.force_login(officer)
    action = ActionRequest.objects.filter(agent=registry.agent).latest("created_at")

    page = client.get(f"/agents/{registry.agent.slug}/").content.decode()

    assert f'href="/actions/{action.pk}/trace/"' in page
    assert "<svg" in page and "<polyline" in page


def test_open_flag_shows_its_evidence_and_review_buttons(registry, officer, client):
    flag = _flag(registry)
    client.force_login(officer)

    page = client.get(f"/agents/{registry.agent.slug}/").content.decode()

    assert "First use of a connector" in page and "baseline connectors" in page
    assert f"/agents/ap-bot/flags/{flag.pk}/review/" in page
    assert 'value="dismiss"' in page and 'value="confirm"' in page


def test_page_query_count_is_the_same_with_10_and_200_actions_and_flags(
    registry, officer, client, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(officer)
    url = f"/agents/{registry.agent.slug}/"
    _fill(registry, 10)
    client.get(url)
    with CaptureQueriesContext(connection) as small:
        assert client.get(url).status_code == 200
    _fill(registry, 190, start=10)
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert client.get(url).status_code == 200


def test_risk_officer_dismisses_a_flag_and_the_baseline_accepts_it(registry, officer, client):
    flag = _flag(registry)
    client.force_login(officer)

    response = client.post(
        f"/agents/ap-bot/flags/{flag.pk}/review/", {"verdict": "dismiss", "note": "new CRM task"}
    )

    assert response.status_code == 302 and response["Location"] == "/agents/ap-bot/"
    flag.refresh_from_db()
    assert (flag.status, flag.review_note, flag.reviewed_by) == (
        "dismissed",
        "new CRM task",
        officer,
    )
    assert AgentBaseline.objects.get(agent=registry.agent).accepted == {"connectors": ["crm"]}
    assert AuditRecord.objects.filter(kind="drift.flag_reviewed").exists()


def test_viewer_may_read_the_page_but_not_review_flags(registry, viewer, client):
    flag = _flag(registry)
    client.force_login(viewer)

    page = client.get(f"/agents/{registry.agent.slug}/")
    review = client.post(f"/agents/ap-bot/flags/{flag.pk}/review/", {"verdict": "dismiss"})

    assert page.status_code == 200 and 'value="dismiss"' not in page.content.decode()
    assert review.status_code == 403
    flag.refresh_from_db()
    assert flag.status == FlagStatus.OPEN


def test_review_refuses_a_get(registry, officer, client):
    flag = _flag(registry)
    client.force_login(officer)

    assert client.get(f"/agents/ap-bot/flags/{flag.pk}/review/").status_code == 405


def test_agents_service_user_gets_403(registry, client):
    client.force_login(registry.agent.service_user)

    assert client.get(f"/agents/{registry.agent.slug}/").status_code == 403


def test_unknown_agent_is_404(officer, client):
    client.force_login(officer)

    assert client.get("/agents/nobody/").status_code == 404


def test_admin_agent_list_links_to_the_page(registry, it_admin, client):
    it_admin.is_superuser = True
    it_admin.save()
    client.force_login(it_admin)

    page = client.get("/admin/agents/agent/").content.decode()

    assert 'href="/agents/ap-bot/"' in page
