from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    """Templates, runs and coordination between agents."""

    name = "workflows"

    def ready(self) -> None:
        from autonomy.signals import action_needs_approval, action_settled

        action_settled.connect(_settled, dispatch_uid="workflows.step_action_settled")
        action_settled.connect(_counted, dispatch_uid="workflows.agent_action_settled")
        action_needs_approval.connect(_asked, dispatch_uid="workflows.agent_action_asked")


def _settled(sender, action, **kwargs) -> None:
    from workflows import services

    services.on_action_settled(action=action)


def _counted(sender, action, **kwargs) -> None:
    from workflows.services import rollup

    rollup.agent_action_settled(action=action)


def _asked(sender, action, **kwargs) -> None:
    from workflows.services import rollup

    rollup.agent_action_needs_approval(action=action)
