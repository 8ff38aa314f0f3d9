"""Worker liveness: each Celery worker process says every ``AUTONOMY_WORKER_BEAT_SECONDS``
that it is alive (a ``WorkerBeat`` row, written by a thread of its own), and names itself on
each action (``ActionRequest.worker``) and workflow step (``StepRun.worker``) it starts
executing. So ``actions_redispatch`` and ``workflows_sweep`` take back the work of a worker
that died in the middle within ``AUTONOMY_WORKER_LOST_SECONDS``, instead of when its lease
(300 s by default) runs out. Work run elsewhere (tests, eager mode) names no worker and
keeps the lease alone.
"""

import logging
import os
import socket
import threading

from django.conf import settings
from django.db import close_old_connections, connections

log = logging.getLogger(__name__)

# This process's heartbeat, by pid: a prefork child inherits its parent's entry, and starts
# its own.
_beats: dict[int, tuple[str, threading.Event, threading.Thread]] = {}


def current_worker() -> str:
    """This process's worker name (host:pid) while its heartbeat runs, else ''."""
    beat = _beats.get(os.getpid())
    return beat[0] if beat else ""


def start(sender=None, **kwargs) -> None:
    """Signal receiver (``worker_ready``: the solo and threads pools' process;
    ``worker_process_init``: each prefork child): start this process's heartbeat. Returns
    once the first beat is written, so no work is claimed in the name of a worker that has
    not beaten yet.

    Never in a prefork pool's parent (``worker_ready``'s ``sender`` is its consumer): it
    executes nothing, and it forks a new child whenever one dies. A fork copies only the
    forking thread, so a lock another thread held at that moment (the beat's database
    connection's, its logging's) would stay held in the new child for ever."""
    interval = settings.AUTONOMY_WORKER_BEAT_SECONDS
    pid = os.getpid()
    if interval <= 0 or pid in _beats or _forks_children(sender):
        return
    name = f"{socket.gethostname()}:{pid}"[:200]
    stop_event, first = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=_beat, args=(name, interval, stop_event, first), name="worker-beat", daemon=True
    )
    _beats[pid] = (name, stop_event, thread)
    thread.start()
    if not first.wait(10):
        log.warning("worker %s: no first heartbeat within 10 s", name)


def _forks_children(sender) -> bool:
    from celery.concurrency.prefork import TaskPool

    return isinstance(getattr(sender, "pool", None), TaskPool)


def stop(**kwargs) -> None:
    """Signal receiver (``worker_process_shutdown``, ``worker_shutdown``): the process stops
    cleanly, nothing of its own runs any more; its row goes."""
    beat = _beats.pop(os.getpid(), None)
    if beat is not None:
        beat[1].set()
        beat[2].join(5)


def _beat(name: str, interval: float, stop_event: threading.Event, first) -> None:
    from autonomy import services

    try:
        while True:
            # A connection the database dropped (a restart, a failover, pg_terminate_backend)
            # is closed here and opened again by the beat, as Django's request cycle does:
            # otherwise every later beat failed on it, and a live worker counted as lost.
            close_old_connections()
            try:
                services.worker_beat(name=name)
            except Exception:  # noqa: BLE001 (the next beat tries again; the sweep decides)
                log.exception("worker %s could not write its heartbeat", name)
            first.set()
            if stop_event.wait(interval):
                break
        close_old_connections()
        services.worker_gone(name=name)
    except Exception:  # noqa: BLE001 (a thread's last words go to the log)
        log.exception("worker %s: heartbeat stopped", name)
    finally:
        connections.close_all()  # this thread's own
