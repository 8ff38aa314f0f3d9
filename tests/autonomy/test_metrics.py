from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from autonomy.models import Intervention, InterventionKind, InterventionScope
from autonomy.observability.rollup import rollup_rebuild
from tests.autonomy.dashboard_fixtures import history
from tests.autonomy.gate_fixtures import build_registry

METRICS = "/metrics"
TOKEN = "scrape-secret-123"


def samples(response) -> dict:
    text = response.content.decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def fleet(db):
    registry = build_registry()
    history(
        agents=[registry.agent], operation=registry.post, n=20,
        now=timezone.now(), span=timedelta(minutes=4),
    )  # fmt: skip
    rollup_rebuild()
    return registry


@pytest.mark.django_db
@override_settings(DEBUG=True)
def test_metrics_are_open_in_development_and_count_the_fleet(fleet, client):
    # A stop in force counts; a pause (never lifted: it is not a stop) and a lifted stop do not.
    Intervention.objects.create(
        kind=InterventionKind.PAUSE, scope=InterventionScope.AGENT, reason="one agent"
    )
    Intervention.objects.create(
        kind=InterventionKind.EMERGENCY_STOP,
        scope=InterventionScope.FLEET,
        reason="old drill",
        lifted_at=timezone.now(),
    )
    Intervention.objects.create(
        kind=InterventionKind.EMERGENCY_STOP, scope=InterventionScope.FLEET, reason="drill"
    )
    response = client.get(METRICS)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    got = samples(response)
    assert got[("autonomy_actions_last_5m", (("verdict", "allow"),))] == 12
    assert got[("autonomy_actions_last_5m", (("verdict", "deny"),))] == 4
    assert got[("autonomy_actions_last_5m", (("verdict", "needs_approval"),))] == 4
    assert got[("autonomy_agents", (("status", "active"),))] == 1
    assert got[("autonomy_approvals_pending", ())] == 0
    assert got[("autonomy_interventions_open", ())] == 1
    assert got[("autonomy_workflow_runs", (("status", "running"),))] == 0


@pytest.mark.django_db
def test_a_scrape_costs_a_constant_number_of_queries(fleet, client, django_assert_max_num_queries):
    # Four for the fleet, nine for the approval load (approvals.load), four for the workflow
    # analytics (runs, steps, step times, roles: aggregates over the last 24 hours of
    # rollups, whatever the history).
    with override_settings(DEBUG=True), django_assert_max_num_queries(17):
        assert client.get(METRICS).status_code == 200


@pytest.mark.django_db
@override_settings(DEBUG=False, AUTONOMY_METRICS_TOKEN=TOKEN)
def test_production_metrics_refuse_a_scrape_without_the_token(client):
    response = client.get(METRICS)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert client.get(METRICS, HTTP_AUTHORIZATION="Bearer wrong").status_code == 401


@pytest.mark.django_db
@override_settings(DEBUG=False, AUTONOMY_METRICS_TOKEN=TOKEN)
def test_production_metrics_answer_the_bearer_token(client):
    response = client.get(METRICS, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200 and b"autonomy_approvals_pending" in response.content


@pytest.mark.django_db
@override_settings(DEBUG=False, AUTONOMY_METRICS_TOKEN="")
def test_production_metrics_answer_a_staff_session(client, viewer):
    client.force_login(viewer)
    assert client.get(METRICS).status_code == 200


@pytest.mark.django_db
@override_settings(DEBUG=False, AUTONOMY_METRICS_TOKEN="")
def test_production_metrics_without_a_token_configured_refuse_any_bearer(client):
    assert client.get(METRICS, HTTP_AUTHORIZATION="Bearer ").status_code == 401
