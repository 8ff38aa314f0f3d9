"""Real systems for the connector tests: a recording HTTP server in a thread, an SMTP server."""

import email
import json
import threading
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from tests.realparts import free_port


class RecordingHTTPServer:
    """Answers each request from a script of (status, json body), else 200 ``{"ok": true}``
    (or ``routes[path]``), and records method, path, headers and body of every request."""

    def __init__(self):
        self.requests: list[dict] = []
        self.script: list[tuple[int, object]] = []
        self.routes: dict[str, tuple[int, object]] = {}
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as two writes

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                with recorder.lock:
                    recorder.requests.append(
                        {
                            "method": self.command,
                            "path": self.path,
                            "headers": dict(self.headers.items()),
                            "body": json.loads(raw) if raw else None,
                        }
                    )
                    if recorder.script:
                        status, body = recorder.script.pop(0)
                    else:
                        status, body = recorder.routes.get(
                            self.path.split("?")[0], (200, {"ok": True})
                        )
                if callable(body):
                    body = body(self)
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def received(self) -> list[dict]:
        with self.lock:
            return list(self.requests)


@pytest.fixture
def http_system():
    system = RecordingHTTPServer()
    system.thread.start()
    try:
        yield system
    finally:
        system.server.shutdown()
        system.server.server_close()


class Inbox:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content, policy=policy.default)
        with self.lock:
            self.messages.append(message)
        return "250 Message accepted for delivery"

    def received(self) -> list[email.message.EmailMessage]:
        with self.lock:
            return list(self.messages)


def start_smtp(inbox: Inbox, **kwargs) -> Controller:
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    return controller


@pytest.fixture
def smtp_server():
    """A real SMTP server on loopback; yields (port, inbox)."""
    inbox = Inbox()
    controller = start_smtp(inbox)
    try:
        yield controller.port, inbox
    finally:
        controller.stop()
