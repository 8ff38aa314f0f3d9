"""What a long-running process (web server, Celery worker) does once it has started."""

import gc


def freeze_startup_objects(**kwargs) -> None:
    """Keep what the process imported and built to start out of the garbage collector's
    full passes (``gc.freeze``): they would scan it all every few seconds under load. Such
    a pass took 80-160 ms on a 2-core VM, stalling the request, step or task in hand
    (measured with ``gc.callbacks`` in ``tests.bench.workflows``' worker: 118 ms before,
    0.9 ms after). Objects made later are collected as usual. ``kwargs``: a signal's."""
    gc.freeze()
