"""The demo keeps its promise end to end: its workflows' steps go through the gate on a real
Celery worker and land in the demo ERP, CRM and ITSM (not the built-in ledger)."""

import random

import pytest

from agents.models import Agent, AgentStatus
from demo import connectors as demo_connectors
from demo import registry as demo_registry
from demo import workflows as demo_workflows
from tests.conftest import wait_for
from workflows import authoring, services
from workflows.models import RUN_FINISHED, Run, RunStatus, StepRun, StepStatus

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def wired(demo_systems, settings, monkeypatch, transactional_db):
    """The demo registry and templates, its connectors pointed at the running demo systems."""
    settings.AUTONOMY_DEMO_SYSTEMS_URL = demo_systems.url
    monkeypatch.setenv("AUTONOMY_DEMO_SYSTEMS_TOKEN", "demo-tok")
    demo_registry.seed(agents=30)
    demo_connectors.seed()
    demo_workflows.seed()
    return demo_systems


def start(key: str, n: int, **context) -> Run:
    context = context or demo_workflows.demo_context(key=key, rng=random.Random(n), n=n)
    return services.run_start(
        template=authoring.latest_published(key=key), context=context, by="test"
    )


def finished(run: Run) -> Run:
    def done():
        run.refresh_from_db()
        return run.status in RUN_FINISHED and run

    return wait_for(done, timeout=60, interval=0.1, what=f"run {run.template.key} to end")


def do_task(run: Run) -> None:
    """What the demo agents do for a task step (``demo_runs``), in this process."""
    step_run = wait_for(
        lambda: (
            StepRun.objects.filter(run=run, status=StepStatus.WAITING_AGENT)
            .select_related("step__assignee_role")
            .first()
        ),
        what="a task step offered",
    )
    agent = Agent.objects.filter(
        role__slug=step_run.step.assignee_role.slug, status=AgentStatus.ACTIVE
    ).order_by("slug")[0]
    offered = services.task_next(agent=agent)
    assert offered.pk == step_run.pk
    output = demo_workflows.task_output(step_key=step_run.step.key, rng=random.Random(3))
    services.task_complete(agent=agent, step_run_id=offered.pk, output=output)


def executed_on_the_worker(run: Run, step_key: str, worker) -> dict:
    step_run = StepRun.objects.select_related("action").get(run=run, step__key=step_key)
    action = step_run.action
    assert action.status == "succeeded", (action.status, action.error)
    assert step_run.worker.endswith(f":{worker.proc.pid}"), step_run.worker
    assert "data" in action.outcome, action.outcome  # the demo system's answer, not a receipt
    return action.outcome["data"]


def test_a_demo_invoice_is_matched_and_posted_in_the_demo_erp_by_the_worker(wired, celery_worker):
    invoice = {"id": "INV-E2E", "amount": 640, "po_number": "PO-7", "currency": "EUR",
               "requester": "ap@example.com"}  # fmt: skip
    run = start("invoice-processing", n=1, invoice=invoice)
    assert finished(run).status == RunStatus.SUCCEEDED
    executed_on_the_worker(run, "match-po", celery_worker)
    posted = executed_on_the_worker(run, "post", celery_worker)
    assert posted["status"] == "posted"
    assert wired.app.store.get("erp", "invoice", "INV-E2E")["status"] == "posted"


def test_a_demo_onboarding_verifies_and_updates_the_customer_in_the_demo_crm(wired, celery_worker):
    run = start("customer-onboarding", n=2)
    do_task(run)
    assert finished(run).status == RunStatus.SUCCEEDED
    customer = run.context["customer"]
    check = executed_on_the_worker(run, "validate-identity", celery_worker)
    assert wired.app.store.get("crm", "identity_check", check["check_id"])["verified"] is True
    executed_on_the_worker(run, "update-crm", celery_worker)
    contact = wired.app.store.get("crm", "contact", customer["contact_id"])
    assert contact["email"] == customer["email"]


def test_a_demo_incident_is_enriched_and_assigned_in_the_demo_itsm(wired, celery_worker):
    run = start("it-incident-triage", n=3)
    do_task(run)
    assert finished(run).status == RunStatus.SUCCEEDED
    incident_id = run.context["incident"]["id"]
    executed_on_the_worker(run, "enrich", celery_worker)
    executed_on_the_worker(run, "assign", celery_worker)
    assert wired.app.store.get("itsm", "incident", incident_id)["status"] == "assigned"
