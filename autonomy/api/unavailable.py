"""A database that is away (a dropped connection, a killed COMMIT, a failover) answers the
API's callers 503 with the error envelope and ``Retry-After``: the request may be sent again
(with its ``Idempotency-Key``, a write is never made twice), unlike a 500, which says the
request itself is at fault.

It is the API's exception handler: every view under ``/api/`` is a DRF view, and every other
error goes on to ``autonomy.api.errors``; ``server_error`` answers the same for an error
raised before or after the view (``handler500``).
"""

import logging
import sys

from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from rest_framework.response import Response

from autonomy.api import errors
from autonomy.errors import ErrorCode

log = logging.getLogger(__name__)

DATABASE_AWAY = (OperationalError, InterfaceError)
RETRY_AFTER_SECONDS = 2
MESSAGE = (
    "The database was unavailable, so this request's outcome is unknown. Send it again "
    "shortly, with the same Idempotency-Key."
)
HEADERS = {"Retry-After": str(RETRY_AFTER_SECONDS)}


def exception_handler(exc, context):
    """The API's exception handler: 503 for a database that is away, else the usual one."""
    if isinstance(exc, DATABASE_AWAY):
        log.warning("API request failed on the database: %s", exc)
        body = errors.error_body(ErrorCode.DATABASE_UNAVAILABLE, MESSAGE)
        return Response(body, status=503, headers=HEADERS)
    return errors.exception_handler(exc, context)


def server_error(request):
    """``handler500`` under ``/api/``: a database error raised outside any API view (a
    middleware reading the session, say) answers as one inside a view does, 503. Django
    calls the handler while it handles the exception, so ``sys.exc_info`` names it."""
    if isinstance(sys.exc_info()[1], DATABASE_AWAY):
        body = errors.error_body(ErrorCode.DATABASE_UNAVAILABLE, MESSAGE)
        return JsonResponse(body, status=503, headers=HEADERS)
    return errors.json_500(request)
