"""OpenTelemetry spans for the gate: one per decision, one per execution, one trace from the
API request through Celery to the worker.

Off by default: a tracer provider exporting over OTLP/HTTP is installed only when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (the exporter reads the rest of the standard ``OTEL_*``
variables itself). Without it every span is a no-op. Attributes follow the OpenTelemetry
GenAI semantic conventions where they fit (an agent calling a tool) plus ``autonomy.*``.
The W3C ``traceparent`` rides in each task's message headers, as the request id does.
"""

import functools
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Status, StatusCode

log = logging.getLogger(__name__)

SERVICE_NAME = "autonomy-os"
TRACEPARENT = "traceparent"
tracer = trace.get_tracer("autonomy")

_lock = threading.Lock()
_provider = None


def _sdk_provider():
    """The process's SDK tracer provider, created (without exporters) on first use."""
    global _provider
    with _lock:
        if _provider is None:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider

            _provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
            trace.set_tracer_provider(_provider)
        return _provider


def configure() -> bool:
    """Export spans over OTLP/HTTP when an endpoint is configured. Returns whether it does."""
    if not settings.OTEL_EXPORTER_OTLP_ENDPOINT or _provider is not None:
        return _provider is not None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return True


def add_span_processor(processor) -> None:
    """Send spans to one more processor (tests add an in-memory exporter this way)."""
    _sdk_provider().add_span_processor(processor)


def force_flush(timeout_millis: int = 5000) -> None:
    if _provider is not None:
        _provider.force_flush(timeout_millis)


# --- context across threads and Celery -----------------------------------------------------


def capture():
    """The current trace context, to hand to another thread (``attached``)."""
    return otel_context.get_current()


@contextmanager
def attached(ctx) -> Iterator[None]:
    token = otel_context.attach(ctx) if ctx is not None else None
    try:
        yield
    finally:
        if token is not None:
            otel_context.detach(token)


def carrier(ctx) -> dict[str, str]:
    """The W3C headers of ``ctx`` (empty when nothing is traced), to carry in a message body
    when one message carries several actions (``autonomy.dispatch``)."""
    headers: dict[str, str] = {}
    if ctx is not None:
        propagate.inject(headers, context=ctx)
    return headers


def from_carrier(headers: dict | None):
    """The context ``carrier`` wrote, for ``attached``; None when there was none."""
    return propagate.extract(headers) if headers else None


def _w3c(get) -> object | None:
    """The trace context in W3C ``traceparent`` / ``tracestate`` values ``get(name)``
    returns, for ``attached``; None without a ``traceparent``."""
    carried = {key: value for key in (TRACEPARENT, "tracestate") if (value := get(key))}
    return propagate.extract(carried) if TRACEPARENT in carried else None


def incoming(headers) -> object | None:
    """The caller's trace context from its request headers; None without one."""
    return _w3c(headers.get)


def connect_celery_signals() -> None:
    from celery.signals import before_task_publish, task_postrun, task_prerun

    @before_task_publish.connect(weak=False)
    def _inject(headers=None, **_kwargs):
        if headers is not None and TRACEPARENT not in headers:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            if TRACEPARENT in carrier:
                headers.update(carrier)

    @task_prerun.connect(weak=False)
    def _extract(task=None, **_kwargs):
        ctx = _w3c(lambda key: getattr(task.request, key, None))
        if ctx is not None:
            task.request._otel_token = otel_context.attach(ctx)

    @task_postrun.connect(weak=False)
    def _detach(task=None, **_kwargs):
        token = getattr(task.request, "_otel_token", None)
        if token is not None:
            otel_context.detach(token)
            task.request._otel_token = None


# --- spans of the gate ---------------------------------------------------------------------


def _action_attributes(span, action) -> None:
    agent = action.agent
    span.set_attributes(
        {
            "gen_ai.tool.name": action.operation.key,
            "gen_ai.agent.id": str(agent.pk),
            "gen_ai.agent.name": agent.name,
            "autonomy.action_id": str(action.pk),
            "autonomy.decision": action.verdict,
            "autonomy.status": action.status,
            "autonomy.risk_score": action.risk_score,
        }
    )


def _trace_id(span) -> str:
    return format(span.get_span_context().trace_id, "032x")


def current_trace_id() -> str:
    """The current W3C trace id (32 hex digits), or "" outside any trace. Also set without
    a tracer provider when the request carried a ``traceparent`` (``incoming``)."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""


@contextmanager
def _span(name: str, attributes: dict) -> Iterator:
    with tracer.start_as_current_span(
        name, kind=trace.SpanKind.INTERNAL, attributes=attributes, record_exception=True
    ) as span:
        try:
            yield span
        except Exception as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            span.set_attribute("error.type", getattr(exc, "code", None) or type(exc).__name__)
            raise


def traced_request(func):
    """A span around ``action_request``: the gate's decision on one tool call."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            return func(*args, **kwargs)  # no tracer provider installed: every span a no-op
        agent, key = kwargs.get("agent"), kwargs.get("operation_key", "")
        attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": key}
        if agent is not None:
            attributes |= {"gen_ai.agent.id": str(agent.pk), "gen_ai.agent.name": agent.name}
        with _span(f"execute_tool {key}", attributes) as span:
            action, replayed = func(*args, **kwargs)
            if span.is_recording():
                _action_attributes(span, action)
                span.set_attribute("autonomy.replayed", replayed)
                log.info("action %s decided; trace_id=%s", action.pk, _trace_id(span))
            return action, replayed

    return wrapper


def traced_execute(func):
    """A span around ``action_execute``: the connector call of an allowed action."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            return func(*args, **kwargs)  # no tracer provider installed: every span a no-op
        attributes = {
            "gen_ai.operation.name": "execute_tool",
            "autonomy.action_id": str(kwargs.get("action_id", "")),
        }
        with _span("execute_tool", attributes) as span:
            action = func(*args, **kwargs)
            if action is not None and span.is_recording():
                span.update_name(f"execute_tool {action.operation.key}")
                _action_attributes(span, action)
                log.info("action %s executed; trace_id=%s", action.pk, _trace_id(span))
            return action

    return wrapper
