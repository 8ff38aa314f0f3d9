from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    """Templates, runs and coordination between agents."""

    name = "workflows"

    def ready(self) -> None:
        from autonomy.signals import action_settled

        action_settled.connect(_settled, dispatch_uid="workflows.step_action_settled")


def _settled(sender, action, **kwargs) -> None:
    from workflows import services

    services.on_action_settled(action=action)
