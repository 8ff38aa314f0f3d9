"""The workflow bench's baseline task, imported by its Celery worker (``-I tests.bench.noop``).

A chain of ``noop`` tasks is raw Celery's cost per task on the same broker and worker: the
worker runs one, publishes the next, and takes it from the queue again. The last link names a
file and writes the worker's clock into it, which the bench reads as the chain's end.
"""

import time
from pathlib import Path

from celery import shared_task


@shared_task(name="bench.noop", acks_late=True)
def noop(marker: str = "") -> None:
    if marker:
        Path(marker).write_text(repr(time.time()))
