"""One HTTP server for the three demo systems: ``/erp/``, ``/crm/`` and ``/itsm/``.

Each system serves its OpenAPI document at ``/<system>/openapi.json`` (no token needed, so
the portal can import it) and its operations behind a bearer token. A write carrying an
``Idempotency-Key`` is answered once: the same key with the same request gets the stored
answer (``Idempotent-Replayed: true``) and makes no second record; with another request, 409.
"""

import hashlib
import hmac
import json
import logging
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from demo.systems.store import Store
from demo.systems.systems import SYSTEMS, Op, Problem, openapi_document

log = logging.getLogger("demo.systems")

DEFAULT_TOKEN = "demo-systems-token"
MAX_BODY_BYTES = 1024 * 1024


def default_token() -> str:
    return os.environ.get("AUTONOMY_DEMO_SYSTEMS_TOKEN") or DEFAULT_TOKEN


def default_database() -> Path:
    data_dir = os.environ.get("AUTONOMY_DATA_DIR") or str(
        Path(__file__).resolve().parent.parent / "var"
    )
    return Path(data_dir) / "demo-systems.sqlite3"


def _route(op: Op) -> re.Pattern:
    pattern = re.sub(r"\\\{([a-z_]+)\\\}", r"(?P<\1>[^/]+)", re.escape(op.path))
    return re.compile(f"^{pattern}$")


ROUTES = {
    system: [(op, _route(op)) for op in spec["operations"]] for system, spec in SYSTEMS.items()
}


def _coerce(value: str, schema: dict):
    kind = schema.get("type")
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
    except ValueError:
        raise Problem(400, "bad_request", f"{value!r} is not a {kind}.") from None
    return value


class DemoSystems:
    """The application: (method, path, headers, body) in, (status, headers, body) out."""

    def __init__(self, store: Store, *, token: str):
        self.store, self.token = store, token

    def handle(self, method: str, target: str, headers, body: bytes) -> tuple[int, dict, bytes]:
        try:
            return self._handle(method, target, headers, body)
        except Problem as problem:
            return self._json(
                problem.status, {"error": {"code": problem.code, "message": problem.message}}
            )

    @staticmethod
    def _json(status: int, data, extra: dict | None = None) -> tuple[int, dict, bytes]:
        return (
            status,
            {"Content-Type": "application/json", **(extra or {})},
            json.dumps(data).encode(),
        )

    def _handle(self, method, target, headers, body):
        url = urlsplit(target)
        system, _, rest = url.path.lstrip("/").partition("/")
        if system not in SYSTEMS:
            if url.path in ("/", "/healthz"):
                return self._json(200, {"systems": sorted(SYSTEMS)})
            raise Problem(404, "not_found", f"No system at {url.path}.")
        path = "/" + rest
        if path == "/openapi.json" and method == "GET":
            host = headers.get("Host") or "127.0.0.1"
            return self._json(200, openapi_document(system, server_url=f"http://{host}/{system}"))
        supplied = (headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(supplied.encode(), self.token.encode()):
            raise Problem(401, "unauthorized", "A valid bearer token is required.")
        op, found = self._match(system, method, path)
        params = {k: unquote(v) for k, v in found.items()}
        query = parse_qs(url.query)
        for name, schema in op.query.items():
            if name in query:
                params[name] = _coerce(query[name][0], schema)
        if op.body:
            try:
                payload = json.loads(body or b"{}")
            except ValueError:
                raise Problem(400, "bad_request", "The body is not JSON.") from None
            if not isinstance(payload, dict):
                raise Problem(400, "bad_request", "The body must be a JSON object.")
            params.update({k: v for k, v in payload.items() if k in op.body})
        missing = [n for n in op.required if params.get(n) in (None, "")]
        if missing:
            raise Problem(400, "bad_request", f"Missing {', '.join(missing)}.")
        key = headers.get("Idempotency-Key")
        if method == "GET" or not key:
            with self.store.transaction():
                status, data = op.handler(self.store, params)
            return self._json(status, data)
        return self._once(system, key, method, target, body, op, params)

    def _match(self, system, method, path):
        allowed = []
        for op, pattern in ROUTES[system]:
            found = pattern.match(path)
            if found:
                if op.method == method:
                    return op, found.groupdict()
                allowed.append(op.method)
        if allowed:
            raise Problem(405, "method_not_allowed", f"{method} is not allowed on {path}.")
        raise Problem(404, "not_found", f"No operation at /{system}{path}.")

    def _once(self, system, key, method, target, body, op, params):
        fingerprint = hashlib.sha256(f"{method} {target}\n".encode() + (body or b"")).hexdigest()
        with self.store.transaction() as store:
            seen = store.answered(system, key)
            if seen is None:
                try:
                    status, data = op.handler(store, params)
                except Problem as problem:
                    status, data = (
                        problem.status,
                        {"error": {"code": problem.code, "message": problem.message}},
                    )
                answer = json.dumps(data)
                store.remember(system, key, fingerprint, status, answer)
                return status, {"Content-Type": "application/json"}, answer.encode()
        if seen[0] != fingerprint:
            raise Problem(
                409,
                "idempotency_key_reused",
                "This Idempotency-Key was used for a different request.",
            )
        return (
            seen[1],
            {"Content-Type": "application/json", "Idempotent-Replayed": "true"},
            seen[2].encode(),
        )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the connector's pooled session reuses sockets
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed ACK
    server_version = "AutonomyDemoSystems/1.0"

    def _serve(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            status, headers, payload = DemoSystems._json(413, {"error": {"code": "too_large"}})
            self.close_connection = True
        else:
            body = self.rfile.read(length) if length else b""
            status, headers, payload = self.server.app.handle(
                self.command, self.path, self.headers, body
            )
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _serve

    def log_message(self, format, *args):
        log.debug("%s %s", self.address_string(), format % args)


class DemoSystemsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, app: DemoSystems):
        self.app = app
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def make_server(
    *,
    host: str = "127.0.0.1",
    port: int = 8100,
    database: Path | str | None = None,
    token: str | None = None,
) -> DemoSystemsServer:
    """A bound server (``port=0`` picks a free one); call ``serve_forever`` to run it."""
    store = Store(database or default_database())
    return DemoSystemsServer((host, port), DemoSystems(store, token=token or default_token()))


def serve_in_thread(**kwargs) -> DemoSystemsServer:
    """A running server in a daemon thread (tests, benchmarks); ``shutdown()`` stops it."""
    server = make_server(**kwargs)
    threading.Thread(target=server.serve_forever, name="demo-systems", daemon=True).start()
    return server
