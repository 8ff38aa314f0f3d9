from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    """Templates, runs and coordination between agents (built by the orchestration issue)."""

    name = "workflows"
