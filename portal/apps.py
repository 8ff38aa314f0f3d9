from django.apps import AppConfig


class PortalConfig(AppConfig):
    """The pages that read across every app: the fleet dashboard, the live activity stream,
    one action's trace (its approval and workflow step included) and the Prometheus gauges.
    Above the kernel and the apps, so the kernel never imports approvals or workflows."""

    name = "portal"
