from django.apps import AppConfig


class InterventionsConfig(AppConfig):
    """People stepping in: pause, resume, quarantine, kill, emergency stop and lift, override a
    waiting decision, redirect a step. Above the kernel, agents, approvals and workflows, so
    it may call what it acts on; ``Intervention`` records stay in the kernel's models."""

    name = "interventions"
