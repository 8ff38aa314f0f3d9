import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from autonomy import dispatch
from autonomy.models import ActionRequest, ActionStatus
from autonomy.observability import tracing
from tests import realparts
from tests.autonomy.gate_fixtures import build_registry
from tests.conftest import bearer, wait_for

ACTIONS = "/api/v1/actions/"
GOOD = {
    "operation": "erp.post-invoice",
    "params": {"invoice_id": "INV-1", "amount": 120},
    "reason": "monthly close",
}


class _Exporter(InMemorySpanExporter):
    """Keeps spans only while a test of this module runs, not for the rest of the session."""

    active = False

    def export(self, spans):
        return super().export(spans) if self.active else SpanExportResult.SUCCESS


_exporter = _Exporter()


@pytest.fixture(autouse=True)
def office_hours():
    with time_machine.travel(datetime(2026, 11, 25, 10, 0, tzinfo=UTC), tick=True):
        yield


@pytest.fixture
def spans():
    """Every span this process ends, in memory (one processor per process: a tracer
    provider takes processors but never gives them back)."""
    if not getattr(_exporter, "installed", False):
        tracing.add_span_processor(SimpleSpanProcessor(_exporter))
        _exporter.installed = True
    _exporter.clear()
    _exporter.active = True
    yield _exporter
    _exporter.active = False
    _exporter.clear()


def post(token: str, body=GOOD):
    from rest_framework.test import APIClient

    return bearer(APIClient(), token).post(ACTIONS, body, format="json")


def trace_id(span) -> str:
    return format(span.context.trace_id, "032x")


@pytest.mark.django_db
def test_a_decision_is_a_span_with_gen_ai_and_gate_attributes(spans, monkeypatch):
    monkeypatch.setattr(dispatch.publisher, "submit", lambda action_id: None)
    registry = build_registry()
    response = post(registry.token)
    assert response.status_code == 201, response.content
    body = response.json()
    (span,) = [s for s in spans.get_finished_spans() if s.name == "execute_tool erp.post-invoice"]
    attributes = dict(span.attributes)
    assert attributes["gen_ai.operation.name"] == "execute_tool"
    assert attributes["gen_ai.tool.name"] == "erp.post-invoice"
    assert attributes["gen_ai.agent.id"] == str(registry.agent.pk)
    assert attributes["gen_ai.agent.name"] == registry.agent.name
    assert attributes["autonomy.action_id"] == body["id"]
    assert attributes["autonomy.decision"] == body["decision"]
    assert attributes["autonomy.risk_score"] == body["risk_score"]
    assert span.resource.attributes["service.name"] == "autonomy-os"


@pytest.mark.django_db
def test_a_refused_request_ends_its_span_with_an_error(spans):
    registry = build_registry()
    response = post(registry.token, {**GOOD, "operation": "erp.no-such-thing"})
    assert response.status_code == 400
    (span,) = spans.get_finished_spans()
    assert span.status.status_code == trace.StatusCode.ERROR
    assert span.attributes["error.type"] == "operation_unknown"


@pytest.mark.django_db
def test_the_publisher_thread_sends_the_task_in_the_requests_trace(spans, monkeypatch):
    from autonomy import tasks

    published = []
    monkeypatch.setattr(
        tasks.action_execute,
        "apply_async",
        lambda args, **options: published.append(
            trace.get_current_span().get_span_context().trace_id
        ),
    )
    publisher = dispatch.Publisher()
    with tracing.tracer.start_as_current_span("api") as span:
        publisher.submit("some-action")
    publisher.flush()
    assert published == [span.get_span_context().trace_id]


@pytest.mark.django_db
def test_a_batch_keeps_each_actions_trace_and_request_id_through_the_fan_out(
    spans, settings, monkeypatch
):
    from autonomy import tasks
    from autonomy.observability.request_id import request_id_var

    settings.AUTONOMY_PUBLISH_LINGER_MS = 500
    batches, executed = [], []
    monkeypatch.setattr(
        tasks.actions_fan_out, "apply_async", lambda args, **options: batches.append(args[0])
    )
    monkeypatch.setattr(
        tasks.action_execute,
        "apply_async",
        lambda args, **options: executed.append(
            (args[0], request_id_var.get(), trace.get_current_span().get_span_context().trace_id)
        ),
    )
    publisher, expected = dispatch.Publisher(), []
    for n in range(3):
        token = request_id_var.set(f"req-{n}")
        with tracing.tracer.start_as_current_span(f"api {n}") as span:
            publisher.submit(f"action-{n}")
            expected.append((f"action-{n}", f"req-{n}", span.get_span_context().trace_id))
        request_id_var.reset(token)
    publisher.flush()

    # The first may go out alone at once (nothing was published before it); the others
    # arrive while the thread lingers and go out as one message.
    assert len(batches) == 1 and len(executed) + len(batches[0]) == 3
    dispatch.fan_out(batches[0])  # what the worker's actions_fan_out does
    assert executed == expected


def test_a_published_task_carries_the_traceparent_header(spans):
    from celery.signals import before_task_publish

    headers: dict = {}
    with tracing.tracer.start_as_current_span("api") as span:
        before_task_publish.send(sender="autonomy.tasks.action_execute", headers=headers, body={})
    version, trace_hex, span_hex, _flags = headers["traceparent"].split("-")
    assert trace_hex == trace_id(span) and span_hex == format(span.context.span_id, "016x")


# --- across processes: the API here, the worker in its own process --------------------------


class _Receiver(BaseHTTPRequestHandler):
    """A tiny OTLP/HTTP collector: decodes each export and keeps its spans."""

    received: list[dict] = []

    def do_POST(self):
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        message = ExportTraceServiceRequest()
        message.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
        for resource_spans in message.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}.get(
                "service.name"
            )
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.received.append(
                        {
                            "service": service,
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(),
                            "attributes": {
                                a.key: a.value.string_value or a.value.int_value
                                for a in span.attributes
                            },
                        }
                    )
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def otlp_receiver():
    _Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", realparts.free_port()), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def celery_worker_env(otlp_receiver):
    host, port = otlp_receiver.server_address
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{host}:{port}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


def test_the_workers_execute_span_joins_the_api_requests_trace(
    postgres, celery_worker, spans, otlp_receiver
):
    registry = build_registry()
    response = post(registry.token)
    assert response.status_code == 201 and response.json()["decision"] == "allow"
    action_id = response.json()["id"]
    (api_span,) = [s for s in spans.get_finished_spans() if s.name.startswith("execute_tool")]

    wait_for(
        lambda: ActionRequest.objects.get(pk=action_id).status == ActionStatus.SUCCEEDED,
        what="the worker to execute the action",
    )
    worker_spans = wait_for(
        lambda: [
            s for s in _Receiver.received if s["attributes"].get("autonomy.action_id") == action_id
        ],
        what="the worker's span at the OTLP receiver",
    )
    (executed,) = worker_spans
    assert executed["service"] == "autonomy-os"
    assert executed["name"] == "execute_tool erp.post-invoice"
    assert executed["trace_id"] == trace_id(api_span)
    assert executed["parent_span_id"] == format(api_span.context.span_id, "016x")
    assert executed["attributes"]["autonomy.decision"] == "allow"


@pytest.mark.django_db
def test_an_agents_traceparent_makes_the_decision_part_of_its_trace(spans, monkeypatch):
    from rest_framework.test import APIClient

    monkeypatch.setattr(dispatch.publisher, "submit", lambda action_id: None)
    registry = build_registry()
    agent_trace, agent_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    response = bearer(APIClient(), registry.token).post(
        ACTIONS, GOOD, format="json", HTTP_TRACEPARENT=f"00-{agent_trace}-{agent_span}-01"
    )
    assert response.status_code == 201, response.content
    (span,) = [s for s in spans.get_finished_spans() if s.name.startswith("execute_tool")]
    assert trace_id(span) == agent_trace
    assert format(span.parent.span_id, "016x") == agent_span
    # The action keeps the trace id: the API and the trace page lead to the same trace.
    assert response.json()["trace_id"] == agent_trace
    assert ActionRequest.objects.get(pk=response.json()["id"]).trace_id == agent_trace


@pytest.mark.django_db
def test_an_agents_traceparent_is_kept_on_its_action_without_a_tracer_provider(monkeypatch):
    from rest_framework.test import APIClient

    monkeypatch.setattr(dispatch.publisher, "submit", lambda action_id: None)
    registry = build_registry()
    agent_trace = "0af7651916cd43dd8448eb211c80319c"
    response = bearer(APIClient(), registry.token).post(
        ACTIONS, GOOD, format="json", HTTP_TRACEPARENT=f"00-{agent_trace}-b7ad6b7169203331-01"
    )
    assert response.status_code == 201, response.content
    assert ActionRequest.objects.get(pk=response.json()["id"]).trace_id == agent_trace
