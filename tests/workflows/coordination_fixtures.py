"""Runs for coordination tests: one task step per given agent, so each is assigned to the run
and nothing executes."""

from agents.models import Agent
from tests.workflows.fixtures import published, step
from workflows import services
from workflows.models import Run


def run_for(agents: list[Agent], *, key: str = "coord") -> Run:
    """A running run whose task steps are assigned one to each agent."""
    steps = [step(f"s{i}", None, role=None, assignee_agent=a.slug) for i, a in enumerate(agents)]
    for s in steps:
        del s["assignee_role"]
    return services.run_start(template=published(key, steps), context={})
