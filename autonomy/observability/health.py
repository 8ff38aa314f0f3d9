"""Liveness and readiness for load balancers."""

import logging
import time

from celery import current_app
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

log = logging.getLogger(__name__)


@never_cache
@require_GET
def healthz(request):
    """The process answers. Touches nothing else, so a slow database never kills the pod."""
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_broker() -> None:
    # The project's Celery app (``config.celery``) is the current one in every process Django
    # runs in; the kernel reaches it that way rather than importing the project above it.
    with current_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2, timeout=2)


CHECKS = {"database": _check_database, "broker": _check_broker}


@never_cache
@require_GET
def readyz(request):
    """The database and the broker are reachable: 200, else 503 naming what failed."""
    results = {}
    ready = True
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
            results[name] = {"ok": True}
        except Exception as exc:  # a readiness probe reports, it never raises
            log.warning("readiness check %s failed: %s", name, exc)
            results[name] = {"ok": False, "error": exc.__class__.__name__}
            ready = False
        results[name]["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return JsonResponse(
        {"status": "ready" if ready else "unavailable", "checks": results},
        status=200 if ready else 503,
    )
