"""Hands approved actions to Celery after commit, off the request thread.

Publishing a task costs a request more than a decision's SQL (serialising, the broker's
round trip), and the agent does not wait for it: after commit, the action id goes on an
in-process queue that one daemon thread publishes from. Under load (it published less than
``AUTONOMY_PUBLISH_LINGER_MS`` ago) the thread lingers that long after the first id and
publishes what arrived meanwhile as one message (``actions_fan_out``; a worker sends each
action its own ``action_execute``), so a busy web process pays one publish per batch; after
a quiet spell it publishes at once. Nothing accepted is lost by that: the action
is committed as ``approved`` before it is queued, and a publish that never happens (the
process dies, the broker is down) is caught by ``services.actions_redispatch`` on Celery
beat, which sends again every approved action that has not started after
``AUTONOMY_ACTION_REDISPATCH_SECONDS``. ``action_execute`` is idempotent by action id, so a
second delivery is harmless. Eager mode (``CELERY_TASK_ALWAYS_EAGER``) publishes inline.
"""

import atexit
import logging
import os
import queue
import threading
import time

from django.conf import settings

from autonomy.observability import tracing
from autonomy.observability.request_id import current as current_request_id
from autonomy.observability.request_id import request_id_var

log = logging.getLogger(__name__)

_STOP = object()
MAX_BATCH = 500  # actions per fan-out message


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
        linger = settings.AUTONOMY_PUBLISH_LINGER_MS / 1000
        last_publish = 0.0
        stop = False
        while not stop:
            batch = [jobs.get()]
            # Under load (the last publish was less than a linger ago), linger and publish
            # what came meanwhile as one message: a busy web process then pays one publish
            # per batch, not one per action. After a quiet spell, publish at once.
            busy = time.monotonic() - last_publish < linger
            if busy and batch[0] is not _STOP:
                time.sleep(linger)
            while True:
                try:
                    batch.append(jobs.get_nowait())
                except queue.Empty:
                    break
            if _STOP in batch:
                stop = True
                batch = [job for job in batch if job is not _STOP]
            for start in range(0, len(batch), MAX_BATCH):
                _publish(batch[start : start + MAX_BATCH])
            last_publish = time.monotonic()

    def flush(self, timeout: float = 5.0) -> None:
        """Publish what is queued before the process exits (the sweep covers the rest)."""
        thread = self._thread
        if thread is None or self._pid != os.getpid() or not thread.is_alive():
            return
        self._queue.put(_STOP)
        thread.join(timeout)


def _publish(batch: list) -> None:
    """One action: its own ``action_execute`` message. Several: one ``actions_fan_out``
    message carrying each id with its request id and trace context, and a worker sends the
    ``action_execute`` messages. A Celery publish costs the web process more than a gate
    decision's SQL, so a busy web process pays it once per batch (``make bench``)."""
    from autonomy import tasks

    try:
        if len(batch) == 1:
            _send(tasks.action_execute, *batch[0])
        else:
            entries = [
                [action_id, request_id, tracing.carrier(trace_context)]
                for action_id, request_id, trace_context in batch
            ]
            # The headers' readable form of the arguments, given: Celery's safe repr of a
            # batch cost a fifth of the publish.
            tasks.actions_fan_out.apply_async(
                (entries,), argsrepr=f"({len(entries)} actions)", kwargsrepr="{}"
            )
    except Exception:
        log.exception("publishing %d actions failed; the redispatch sweep resends them", len(batch))


def _send(task, action_id: str, request_id: str, trace_context) -> None:
    token = request_id_var.set(request_id)  # the id travels with the task
    try:
        with tracing.attached(trace_context):
            task.apply_async((action_id,), argsrepr=f"('{action_id}',)", kwargsrepr="{}")
    finally:
        request_id_var.reset(token)


def fan_out(entries: list) -> None:
    """On a worker: one ``action_execute`` message per ``[action_id, request_id, trace
    headers]`` entry of a batch the web process sent as one."""
    from autonomy import tasks

    for action_id, request_id, headers in entries:
        _send(tasks.action_execute, action_id, request_id, tracing.from_carrier(headers))


publisher = Publisher()
atexit.register(publisher.flush)
