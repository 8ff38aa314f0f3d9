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
from autonomy.models import ActionRequest
from demo import connectors as demo_connectors
from demo import registry as demo_registry
from demo import workflows as demo_workflows
from demo.fleet import CREDENTIAL_NAME, pick_agents
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


def simulate(live_server, *args: str) -> float:
    started = time.monotonic()
    call_command("simulate_fleet", "--url", live_server.url, "--seed", "7", *args)
    return time.monotonic() - started


def test_the_fleet_gets_allowed_approval_and_denied_decisions_and_stops_in_time(
    live_server, demo_world
):
    elapsed = simulate(live_server, "--agents", "20", "--duration", "6", "--rate", "25")
    fleet = ActionRequest.objects.filter(credential__name=CREDENTIAL_NAME)
    decisions = Counter(fleet.values_list("verdict", flat=True))
    assert decisions["allow"] > decisions["needs_approval"] > 0, decisions
    assert decisions["deny"] > 0, decisions
    assert fleet.values("agent").distinct().count() > 5
    assert elapsed < 6 + 10  # setup, then its duration, then the plays in flight


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
