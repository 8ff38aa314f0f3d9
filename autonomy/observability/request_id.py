"""A request id that follows a request from the web process into Celery tasks and logs.

The id comes from the caller's ``X-Request-ID`` header (if sane) or is generated, is echoed
in the response, stamped on every log record, and travels with each task as a message header.
"""

import logging
import re
import uuid
from contextvars import ContextVar

from autonomy.observability import tracing

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

HEADER = "X-Request-ID"
_SAFE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def current() -> str:
    return request_id_var.get()


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get(HEADER, "")
        value = incoming if _SAFE.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(value)
        request.request_id = value
        # An agent that traces its own work sends a W3C ``traceparent``: the gate's spans
        # continue that trace instead of starting one of their own.
        with tracing.attached(tracing.incoming(request.headers)):
            try:
                response = self.get_response(request)
            finally:
                request_id_var.reset(token)
        response[HEADER] = value
        return response


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def connect_celery_signals() -> None:
    from celery.signals import before_task_publish, task_postrun, task_prerun

    @before_task_publish.connect(weak=False)
    def _stamp(headers=None, **_kwargs):
        if headers is not None and "request_id" not in headers:
            headers["request_id"] = request_id_var.get()

    @task_prerun.connect(weak=False)
    def _enter(task=None, **_kwargs):
        value = getattr(task.request, "request_id", None) or "-"
        task.request._request_id_token = request_id_var.set(value)

    @task_postrun.connect(weak=False)
    def _leave(task=None, **_kwargs):
        token = getattr(task.request, "_request_id_token", None)
        if token is not None:
            request_id_var.reset(token)
