"""The demo workflows: seeded published and valid, idempotently, and each can run with the
demo registry's agents; ``demo_runs`` keeps runs going and does the agents' tasks."""

import random
from datetime import UTC, datetime

import pytest
import time_machine
from django.core.management import call_command

from agents.models import Agent, AgentStatus
from approvals.models import ApprovalRequest
from demo import connectors as demo_connectors
from demo import registry as demo_registry
from demo import workflows as demo_workflows
from tests.factories import UserFactory
from workflows import authoring, services
from workflows.models import Run, RunStatus, StepRun, StepStatus, Template, TemplateStatus


def seed_world() -> None:
    demo_registry.seed(agents=30)
    demo_connectors.seed()
    demo_workflows.seed()


def demo_agent(role: str) -> Agent:
    return Agent.objects.filter(role__slug=role, status=AgentStatus.ACTIVE).order_by("slug")[0]


def start(key: str, **context) -> Run:
    template = authoring.latest_published(key=key)
    context = context or demo_workflows.demo_context(key=key, rng=random.Random(1), n=1)
    return services.run_start(template=template, context=context, by="test")


def statuses(run: Run) -> dict[str, str]:
    return dict(run.step_runs.values_list("step__key", "status"))


@pytest.mark.django_db
def test_seed_demo_publishes_the_three_demo_templates_valid(capsys):
    call_command("seed_demo", "--agents", "30")
    assert ", 3 templates," in capsys.readouterr().out
    templates = Template.objects.filter(key__in=demo_workflows.KEYS)
    assert sorted(t.key for t in templates) == sorted(demo_workflows.KEYS)
    for template in templates:
        assert template.status == TemplateStatus.PUBLISHED
        assert authoring.template_validate(template=template) == []
    units = dict(templates.values_list("key", "business_unit__slug"))
    assert units == {
        "customer-onboarding": "customer-ops", "invoice-processing": "finance",
        "it-incident-triage": "it",
    }  # fmt: skip


@pytest.mark.django_db
def test_seed_demo_twice_creates_no_duplicate_templates(capsys):
    call_command("seed_demo", "--agents", "30")
    call_command("seed_demo", "--agents", "30")
    assert ", 0 templates," in capsys.readouterr().out.splitlines()[-1]
    assert Template.objects.count() == 3


def test_a_demo_agent_completes_the_onboarding_task_and_the_run_finishes(eager):
    seed_world()
    run = start("customer-onboarding")
    assert statuses(run)["gather-documents"] == StepStatus.WAITING_AGENT
    agent = demo_agent("onboarding-agent")
    task = services.task_next(agent=agent)
    assert task.step.key == "gather-documents" and task.run_id == run.pk
    output = demo_workflows.task_output(step_key="gather-documents", rng=random.Random(2))
    services.task_complete(agent=agent, step_run_id=task.pk, output=output)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, statuses(run)
    validate = StepRun.objects.get(run=run, step__key="validate-identity")
    assert validate.action.params["document"] == output["identity_document"]


def test_a_small_demo_invoice_runs_through_without_a_person(eager):
    seed_world()
    invoice = {"id": "INV-1", "amount": 300, "po_number": "PO-1", "currency": "EUR",
               "requester": "ap@example.com"}  # fmt: skip
    run = start("invoice-processing", invoice=invoice)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, statuses(run)


def test_a_large_demo_invoice_waits_for_approval_in_the_inbox(eager):
    seed_world()
    invoice = {"id": "INV-2", "amount": 25_000, "po_number": "PO-2", "currency": "EUR",
               "requester": "ap@example.com"}  # fmt: skip
    run = start("invoice-processing", invoice=invoice)
    post = StepRun.objects.get(run=run, step__key="post")
    assert post.status == StepStatus.WAITING_APPROVAL
    assert ApprovalRequest.objects.filter(action=post.action, status="pending").exists()
    assert statuses(run)["notify"] == StepStatus.PENDING


def test_the_incident_triage_enriches_and_assigns_in_parallel_after_classification(eager):
    seed_world()
    run = start("it-incident-triage")
    agent = demo_agent("incident-triager")
    task = services.task_next(agent=agent)
    services.task_complete(
        agent=agent,
        step_run_id=task.pk,
        output={"category": "network", "team": "network-ops", "priority": 2},
    )
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, statuses(run)
    steps = run.template.steps.all()
    assert {s.key: s.depends_on for s in steps}["enrich"] == ["classify"]
    assert {s.key: s.depends_on for s in steps}["assign"] == ["classify"]
    assign = StepRun.objects.get(run=run, step__key="assign")
    assert assign.action.params == {
        "incident_id": "INC-00001",
        "team": "network-ops",
        "priority": 2,
    }


def test_demo_runs_keeps_runs_in_flight_and_does_the_agents_tasks(eager, capsys):
    seed_world()
    call_command("demo_runs", "--rounds", "3", "--interval", "0", "--think", "0", "--seed", "4")
    out = capsys.readouterr().out
    assert "started " in out and " took " in out and " completed " in out
    assert out.strip().splitlines()[-1] == "demo_runs: stopped"
    assert Run.objects.count() >= 3
    assert StepRun.objects.filter(step__kind="task", status=StepStatus.SUCCEEDED).exists()


def test_the_analytics_page_names_the_onboarding_bottleneck(eager, client):
    """Demo runs played on a clock that moves: the onboarding's task waits for a demo agent's
    round and its thinking, while its operation steps take no time, so the page names it."""
    seed_world()
    with time_machine.travel(datetime(2026, 12, 1, 9, 0, tzinfo=UTC), tick=False) as clock:
        player = demo_workflows.DemoPlayer(in_flight=4, think_seconds=4, rng=random.Random(5))
        for _ in range(12):
            player.tick()
            clock.shift(2)
        player.finish_tasks(now=None)
        onboarding = authoring.latest_published(key="customer-onboarding")
        assert onboarding.runs.filter(status=RunStatus.SUCCEEDED).exists()
        client.force_login(UserFactory(username="demo-reader", is_staff=True, is_superuser=True))
        page = client.get("/workflows/analytics/customer-onboarding/?window=24h")
    assert page.status_code == 200
    assert "Step &#x27;Gather documents&#x27; is the bottleneck" in page.content.decode()
