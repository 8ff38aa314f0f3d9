from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    """Templates, runs and coordination between agents."""

    name = "workflows"

    def ready(self) -> None:
        from autonomy.signals import action_settled

        action_settled.connect(_settled, dispatch_uid="workflows.step_action_settled")

        # A worker process that executes steps beats while it runs (``workflows.liveness``).
        from celery import signals

        from workflows import liveness

        signals.worker_ready.connect(liveness.start, weak=False)
        signals.worker_process_init.connect(liveness.start, weak=False)
        signals.worker_process_shutdown.connect(liveness.stop, weak=False)
        signals.worker_shutdown.connect(liveness.stop, weak=False)


def _settled(sender, action, **kwargs) -> None:
    from workflows import services

    services.on_action_settled(action=action)
