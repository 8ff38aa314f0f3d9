"""Use cases of the kernel's workers: each Celery worker process says it is alive
(``autonomy.liveness``), so the sweeps take back the work of one that died.

The action lifecycle is ``autonomy.actions``; grants are ``autonomy.grants``.
"""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from autonomy import selectors
from autonomy.models import WorkerBeat


def worker_beat(*, name: str, now=None) -> None:
    """A worker process says it is alive."""
    now = now or timezone.now()
    if not WorkerBeat.objects.filter(pk=name).update(beat_at=now):
        WorkerBeat.objects.get_or_create(name=name, defaults={"started_at": now, "beat_at": now})


def worker_gone(*, name: str) -> None:
    """A worker process stopped cleanly: nothing of its own runs any more."""
    WorkerBeat.objects.filter(pk=name).delete()


def _lost_before(now=None):
    """A worker whose last beat is not after this is lost."""
    lost = timedelta(seconds=settings.AUTONOMY_WORKER_LOST_SECONDS)
    return (now or timezone.now()) - lost


def worker_alive(*, beat_at, now=None) -> bool:
    """Whether a worker whose last beat was at ``beat_at`` counts as alive."""
    return beat_at > _lost_before(now)


def workers_alive(*, now=None) -> set[str]:
    """The workers that beat within ``AUTONOMY_WORKER_LOST_SECONDS``."""
    return set(selectors.live_workers(since=_lost_before(now)))


def workers_prune(*, now=None) -> int:
    """Delete the rows of workers silent for longer than ``AUTONOMY_WORKER_LOST_SECONDS``:
    they count as lost with or without their row."""
    return WorkerBeat.objects.filter(beat_at__lte=_lost_before(now)).delete()[0]
