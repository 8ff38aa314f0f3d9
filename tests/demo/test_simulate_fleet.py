"""``simulate_fleet`` against a live portal: demo agents through the SDK with a mix of
decisions, workflow tasks pulled and completed, and a clean stop at the end of its time."""

import random
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
import time_machine
from django.core.management import call_command

from agents.models import Credential
from autonomy.models import ActionRequest, ActionStatus, ConnectorKind, Verdict
from demo import connectors as demo_connectors
from demo import registry as demo_registry
from demo import workflows as demo_workflows
from demo.fleet import CREDENTIAL_NAME, pick_agents
from tests.conftest import wait_for
from workflows import authoring, services
from workflows.models import StepRun, StepStatus


@pytest.fixture
def demo_world(eager):
    with time_machine.travel(datetime(2026, 11, 25, 10, 0, tzinfo=UTC), tick=True):
        demo_registry.seed(agents=40)
        demo_connectors.seed()
        demo_workflows.seed()
        for n, key in enumerate(["customer-onboarding", "it-incident-triage"] * 2):
            services.run_start(
                template=authoring.latest_published(key=key),
                context=demo_workflows.demo_context(key=key, rng=random.Random(n), n=n),
                by="test",
            )
        yield


ENDED = [ActionStatus.SUCCEEDED, ActionStatus.FAILED, ActionStatus.CANCELLED]


def simulate(live_server, *args: str) -> float:
    started = time.monotonic()
    call_command("simulate_fleet", "--url", live_server.url, "--seed", "7", *args)
    return time.monotonic() - started


@pytest.fixture
def thousand_agents(transactional_db, demo_systems, settings, monkeypatch):
    """A demo registry with 1,000 active agents (of 1,050: some are seeded paused or
    quarantined), its ERP, CRM and ITSM connectors pointed at the running demo systems."""
    settings.AUTONOMY_DEMO_SYSTEMS_URL = demo_systems.url
    monkeypatch.setenv("AUTONOMY_DEMO_SYSTEMS_TOKEN", "demo-tok")
    demo_registry.seed(agents=1050)
    demo_connectors.seed()
    assert len(pick_agents(count=1000)) == 1000
    return demo_systems


@pytest.mark.timeout(180)
def test_a_fleet_of_1000_agents_works_through_a_live_server_and_a_real_worker(
    celery_worker, thousand_agents, live_server
):
    """The worker boots while the 1,000 agents are registered: each through
    ``agent_register``, as the demo seed does, which is most of this test's time."""
    elapsed = simulate(live_server, "--agents", "1000", "--duration", "5", "--rate", "30")
    assert elapsed < 5 + 30  # 1,000 credentials, then its duration, then the plays in flight
    live = Credential.objects.filter(name=CREDENTIAL_NAME, revoked_at=None)
    assert live.count() == 1000
    fleet = ActionRequest.objects.filter(credential__name=CREDENTIAL_NAME)
    decisions = Counter(fleet.values_list("verdict", flat=True))
    assert decisions["allow"] > decisions["needs_approval"] > 0, decisions
    assert decisions["deny"] > 0, decisions
    assert fleet.values("agent").distinct().count() > 50
    allowed = fleet.filter(verdict=Verdict.ALLOW)
    wait_for(lambda: not allowed.exclude(status__in=ENDED).exists(), timeout=60, interval=0.2,
             what="the worker to execute every allowed action")  # fmt: skip
    assert set(allowed.values_list("status", flat=True)) == {ActionStatus.SUCCEEDED}
    # shared-memory reads and writes run in the request that asked (``runs_inline``): no worker
    on_worker = allowed.exclude(operation__connector__kind=ConnectorKind.MEMORY)
    assert all(
        w.endswith(f":{celery_worker.proc.pid}") for w in on_worker.values_list("worker", flat=True)
    )
    called = allowed.filter(operation__connector__slug__in=["erp", "crm", "itsm"])
    assert called.exists() and all("data" in action.outcome for action in called)


def test_the_fleet_pulls_and_completes_offered_workflow_tasks(live_server, demo_world):
    simulate(live_server, "--agents", "20", "--duration", "6", "--rate", "25")
    done = StepRun.objects.filter(
        step__key__in=["gather-documents", "classify"], status=StepStatus.SUCCEEDED
    )
    assert done.exists()


def test_a_restarted_fleet_leaves_one_live_fleet_credential_per_agent(live_server, demo_world):
    simulate(live_server, "--agents", "5", "--duration", "0.5", "--rate", "2")
    simulate(live_server, "--agents", "5", "--duration", "0.5", "--rate", "2")
    agents = pick_agents(count=5)
    live = Credential.objects.filter(agent__in=agents, name=CREDENTIAL_NAME, revoked_at=None)
    assert sorted(live.values_list("agent__slug", flat=True)) == sorted(a.slug for a in agents)
