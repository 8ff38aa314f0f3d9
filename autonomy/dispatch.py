"""Hands approved actions to Celery after commit, off the request thread.

Publishing a task costs a request as much as a decision (serialising, the broker's round
trip), and the agent does not wait for it: after commit, the action id goes on an
in-process queue that one daemon thread publishes from. Nothing accepted is lost by that:
the action is committed as ``approved`` before it is queued, and a publish that never happens
(the process dies, the broker is down) is caught by ``services.actions_redispatch`` on Celery
beat, which sends again every approved action that has not started after
``AUTONOMY_ACTION_REDISPATCH_SECONDS``. ``action_execute`` is idempotent by action id, so a
second delivery is harmless. Eager mode (``CELERY_TASK_ALWAYS_EAGER``) publishes inline.
"""

import atexit
import logging
import os
import queue
import threading

from autonomy.observability import tracing
from autonomy.observability.request_id import current as current_request_id
from autonomy.observability.request_id import request_id_var

log = logging.getLogger(__name__)

_STOP = object()


class Publisher:
    """One queue and one daemon thread per process (a forked child starts its own)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, action_id: str) -> None:
        from autonomy import tasks

        if tasks.action_execute.app.conf.task_always_eager:
            tasks.action_execute.delay(action_id)
            return
        # The ids travel with the task: captured here, on the request's thread.
        self._running().put((action_id, current_request_id(), tracing.capture()))

    def _running(self) -> queue.SimpleQueue:
        thread = self._thread
        if self._pid == os.getpid() and thread is not None and thread.is_alive():
            return self._queue
        with self._lock:
            if self._pid != os.getpid():  # new, or forked: the parent's queue is not ours
                self._queue, self._pid = queue.SimpleQueue(), os.getpid()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._publish_forever,
                    args=(self._queue,),
                    name="autonomy-action-publisher",
                    daemon=True,
                )
                self._thread.start()
            return self._queue

    @staticmethod
    def _publish_forever(jobs: queue.SimpleQueue) -> None:
        from autonomy import tasks

        while (job := jobs.get()) is not _STOP:
            action_id, request_id, trace_context = job
            token = request_id_var.set(request_id)  # the id travels with the task
            try:
                with tracing.attached(trace_context):
                    tasks.action_execute.delay(action_id)
            except Exception:
                log.exception(
                    "publishing action %s failed; the redispatch sweep resends it", action_id
                )
            finally:
                request_id_var.reset(token)

    def flush(self, timeout: float = 5.0) -> None:
        """Publish what is queued before the process exits (the sweep covers the rest)."""
        thread = self._thread
        if thread is None or self._pid != os.getpid() or not thread.is_alive():
            return
        self._queue.put(_STOP)
        thread.join(timeout)


publisher = Publisher()
atexit.register(publisher.flush)
