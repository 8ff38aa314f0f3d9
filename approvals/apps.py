from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    """Humans in the loop: approval requests and decisions (built by the approvals issue)."""

    name = "approvals"
