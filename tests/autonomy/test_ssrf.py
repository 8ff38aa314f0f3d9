"""Connectors reach only addresses the outbound guard allows: never link-local or cloud metadata,
never loopback or private networks unless the operator allows them. The guard answers one
error whatever the host's state, on import, on saving a connector and before every call."""

import json
import socket
import ssl
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.contrib.auth.models import Group

from agents.portal_roles import PortalRole, group_name
from autonomy import connectors
from autonomy.connectors import openapi, outbound, services
from autonomy.models import Connector, ConnectorKind, Operation
from tests.factories import UserFactory
from tests.realparts import free_port

pytestmark = pytest.mark.django_db

DOCUMENT = {
    "openapi": "3.0.3",
    "info": {"title": "ERP", "version": "1"},
    "paths": {"/ping": {"get": {"operationId": "ping", "responses": {"200": {}}}}},
}


@pytest.fixture
def no_private_networks(settings):
    """Production's default: only the public internet is reachable."""
    settings.AUTONOMY_CONNECTOR_ALLOWED_NETWORKS = []


def http_connector(url: str, kind: str = ConnectorKind.HTTP, key: str = "base_url") -> Connector:
    return Connector.objects.create(
        slug="erp", name="ERP", kind=kind, config={key: url, "retries": 0, "timeout_seconds": 2}
    )


def import_error(url: str) -> str:
    with pytest.raises(openapi.OpenAPIError) as caught:
        openapi.fetch(url, timeout=2)
    return str(caught.value)


def test_importing_openapi_from_internal_hosts_fails_with_one_error_whatever_their_state(
    no_private_networks, http_system
):
    http_system.routes["/openapi.json"] = (200, DOCUMENT)
    port = http_system.server.server_address[1]
    urls = [
        f"{http_system.url}/openapi.json",  # listening, and would serve a document
        f"http://127.0.0.1:{free_port()}/openapi.json",  # closed port
        f"http://localhost:{port}/openapi.json",
        f"http://[::1]:{port}/openapi.json",
        f"http://0.0.0.0:{port}/openapi.json",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/openapi.json",
        "http://no-such-host.invalid/openapi.json",
        "file:///etc/passwd",
    ]
    errors = {url: import_error(url) for url in urls}
    assert len(set(errors.values())) == 1, errors
    assert http_system.received() == []


def test_link_local_and_metadata_addresses_stay_refused_even_when_every_network_is_allowed(
    settings,
):
    settings.AUTONOMY_CONNECTOR_ALLOWED_NETWORKS = ["0.0.0.0/0", "::/0"]
    for url in (
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:169.254.169.254]/",
        "http://224.0.0.1/",
    ):
        with pytest.raises(outbound.OutboundRefused):
            outbound.check_url(url)
    assert outbound.check_url("http://10.1.2.3/") == "10.1.2.3"


def test_a_rest_call_to_a_refused_host_is_never_sent(no_private_networks, http_system):
    connector = http_connector(http_system.url)
    ping = Operation.objects.create(
        connector=connector, slug="ping", name="Ping", config={"method": "GET", "path": "/ping"}
    )
    with pytest.raises(connectors.ConnectorError) as caught:
        connectors.call(operation=ping, params={}, idempotency_key="ssrf-1")
    assert str(caught.value) == outbound.REFUSED_MESSAGE
    assert http_system.received() == []


def test_an_mcp_connector_on_a_metadata_address_is_refused_before_any_connection():
    connector = http_connector("http://169.254.169.254/mcp", kind=ConnectorKind.MCP, key="url")
    with pytest.raises(connectors.ConnectorError) as caught:
        services.connector_import_mcp_tools(connector=connector, by=None)
    assert str(caught.value) == outbound.REFUSED_MESSAGE


def test_saving_a_connector_whose_url_is_refused_is_refused_in_the_admin(client):
    admin = UserFactory(username="ita", is_staff=True)
    admin.groups.add(Group.objects.get(name=group_name(PortalRole.IT_ADMIN)))
    client.force_login(admin)
    form = {
        "slug": "meta",
        "name": "Metadata",
        "kind": ConnectorKind.HTTP,
        "enabled": "on",
        "config": json.dumps({"base_url": "http://169.254.169.254/"}),
        "operations-TOTAL_FORMS": "0",
        "operations-INITIAL_FORMS": "0",
    }
    response = client.post("/admin/autonomy/connector/add/", form)
    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors["config"]
    assert error == f"base_url: {outbound.REFUSED_MESSAGE}"
    assert not Connector.objects.filter(slug="meta").exists()

    form.update(slug="local", config=json.dumps({"base_url": "http://127.0.0.1:9/"}))
    assert client.post("/admin/autonomy/connector/add/", form).status_code == 302


def test_a_call_connects_to_the_address_the_guard_checked_not_to_a_second_dns_answer(
    monkeypatch, http_system
):
    """DNS rebinding: the first answer is allowed, later ones name a refused address."""
    real = socket.getaddrinfo
    answers = iter(["127.0.0.1"])

    def rebinding(host, port, *args, **kwargs):
        if host == "erp.rebind.test":
            return real(next(answers, "203.0.113.7"), port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    port = http_system.server.server_address[1]
    connector = http_connector(f"http://erp.rebind.test:{port}")
    ping = Operation.objects.create(
        connector=connector, slug="ping", name="Ping", config={"method": "GET", "path": "/ping"}
    )
    assert connectors.call(operation=ping, params={}, idempotency_key="ssrf-2")["status"] == 200
    [request] = http_system.received()
    assert request["headers"]["Host"] == f"erp.rebind.test:{port}"


@pytest.fixture
def tls_system(tmp_path):
    """An HTTPS server on 127.0.0.1 whose certificate names only ``localhost``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = self.headers["Host"].encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], str(cert_file)
    finally:
        server.shutdown()
        server.server_close()


def test_a_pinned_https_call_still_verifies_the_certificate_against_the_host_name(
    monkeypatch, tls_system
):
    port, ca = tls_system
    real = socket.getaddrinfo

    def localhost_is_ipv4(host, *args, **kwargs):
        return real("127.0.0.1" if host == "localhost" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", localhost_is_ipv4)
    session = outbound.session()
    answer = session.get(f"https://localhost:{port}/", verify=ca, timeout=5)
    assert answer.status_code == 200 and answer.text == f"localhost:{port}"
    with pytest.raises(requests.exceptions.SSLError):  # the certificate does not name the IP
        session.get(f"https://127.0.0.1:{port}/", verify=ca, timeout=5)


def test_the_admins_openapi_import_shows_the_same_error_for_a_metadata_or_a_closed_host(
    client, no_private_networks
):
    admin = UserFactory(username="ita", is_staff=True)
    admin.groups.add(Group.objects.get(name=group_name(PortalRole.IT_ADMIN)))
    client.force_login(admin)
    connector = http_connector("https://erp.example.com")
    page = f"/admin/autonomy/connector/{connector.pk}/import-openapi/"
    errors = set()
    for url in ("http://169.254.169.254/openapi.json", f"http://127.0.0.1:{free_port()}/"):
        response = client.post(page, {"url": url, "document": ""})
        assert response.status_code == 200
        errors.add(tuple(response.context["form"].non_field_errors()))
    assert errors == {(openapi.FETCH_FAILED,)}
    assert not Operation.objects.filter(connector=connector).exists()
