"""The Celery app. Tasks live in each app's ``tasks.py`` and stay thin."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("autonomy")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Carry the request id from the web request into the worker's logs.
from autonomy.observability import request_id as _request_id  # noqa: E402

_request_id.connect_celery_signals()
from autonomy.observability import tracing as _tracing  # noqa: E402

_tracing.connect_celery_signals()


# A worker freezes what it built to start (``autonomy.process``): the solo and threads
# pools' process once ready, and each prefork child once forked.
from celery.signals import worker_process_init, worker_ready  # noqa: E402

from autonomy.process import freeze_startup_objects  # noqa: E402

worker_ready.connect(freeze_startup_objects, weak=False)
worker_process_init.connect(freeze_startup_objects, weak=False)

# ... and says it is alive while it runs (``autonomy.liveness``), so that the actions and
# steps it was executing are taken back soon after it dies.
from celery.signals import worker_process_shutdown, worker_shutdown  # noqa: E402

from autonomy import liveness  # noqa: E402

worker_ready.connect(liveness.start, weak=False)
worker_process_init.connect(liveness.start, weak=False)
worker_process_shutdown.connect(liveness.stop, weak=False)
worker_shutdown.connect(liveness.stop, weak=False)


# Reuse each worker's database connection across tasks (``CELERY_DB_REUSE_MAX``), and close
# it around a task only when it is past ``CONN_MAX_AGE`` or broken (a database restart), as
# Django does around a request. Never for an eager task: it runs inside the caller's
# transaction, whose connection must stay open.
from celery.signals import task_postrun, task_prerun  # noqa: E402
from django.db import close_old_connections  # noqa: E402


def _close_old_connections(sender=None, **kwargs) -> None:
    if not getattr(getattr(sender, "request", None), "is_eager", False):
        close_old_connections()


task_prerun.connect(_close_old_connections, weak=False)
task_postrun.connect(_close_old_connections, weak=False)


# A worker that reconnects to its broker (a restart, a failover) resends at once the work
# the broker may have lost with its memory: approved actions and ready workflow steps not
# started yet. Without it they waited for the sweeps (up to ~45 s after a 5 s outage). Each
# is executed once however often it is sent.
from celery import bootsteps  # noqa: E402


class ResendAfterReconnect(bootsteps.StartStopStep):
    """A consumer step: Celery starts it each time the consumer (re)connects."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.connected_before = False

    def start(self, parent):
        if self.connected_before:
            from autonomy.tasks import actions_redispatch
            from workflows.tasks import workflows_sweep

            actions_redispatch.apply_async(kwargs={"broker_returned": True})
            workflows_sweep.apply_async(kwargs={"broker_returned": True})
        self.connected_before = True


app.steps["consumer"].add(ResendAfterReconnect)
