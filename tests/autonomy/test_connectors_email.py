"""The e-mail connector against a real SMTP server (aiosmtpd): one message per action,
never two, and the password only ever reaches the server's AUTH."""

import logging

import pytest
from aiosmtpd.smtp import AuthResult

from autonomy import connectors
from autonomy.connectors import services
from autonomy.models import CallState, Connector, ConnectorCall, ConnectorKind, Effect, Operation
from tests.autonomy.connector_fixtures import Inbox, start_smtp
from tests.realparts import free_port

pytestmark = pytest.mark.django_db

PASSWORD = "smtp-Pa55-w0rd-hidden"
PARAMS = {"to": "ap@example.com", "subject": "Invoice INV-7 posted", "body": "Posted 4,200."}


def mail_connector(port: int, **config) -> Operation:
    connector = Connector.objects.create(
        slug="mail", name="Outbound mail", kind=ConnectorKind.EMAIL,
        config={"host": "127.0.0.1", "port": port, "from": "bots@corp.example", **config},
    )  # fmt: skip
    return Operation.objects.create(
        connector=connector, slug="send-email", name="Send", effect=Effect.WRITE
    )


def test_an_email_operation_sends_one_message_built_from_the_params(smtp_server):
    port, inbox = smtp_server
    send = mail_connector(port)
    result = connectors.call(operation=send, params=PARAMS, idempotency_key="act-1")
    [message] = inbox.received()
    assert message["To"] == "ap@example.com" and message["Subject"] == "Invoice INV-7 posted"
    assert message["From"] == "bots@corp.example"
    assert message["Message-ID"] == "<act-1@corp.example>"
    assert message.get_content().strip() == "Posted 4,200."
    assert result["data"] == {"message_id": "<act-1@corp.example>", "accepted": ["ap@example.com"]}


def test_a_redelivered_call_sends_nothing_more(smtp_server):
    port, inbox = smtp_server
    send = mail_connector(port)
    first = connectors.call(operation=send, params=PARAMS, idempotency_key="act-2")
    again = connectors.call(operation=send, params=PARAMS, idempotency_key="act-2")
    assert len(inbox.received()) == 1
    assert again == {**first, "replayed": True}


def test_a_send_whose_outcome_is_unknown_is_not_repeated(smtp_server):
    port, inbox = smtp_server
    send = mail_connector(port)
    ConnectorCall.objects.create(  # a worker died between recording the intent and the result
        idempotency_key="act-3", operation=send, params=PARAMS, state=CallState.STARTED
    )
    with pytest.raises(connectors.ConnectorError, match="outcome is unknown"):
        connectors.call(operation=send, params=PARAMS, idempotency_key="act-3")
    assert inbox.received() == []


def test_a_server_that_was_down_lets_the_same_action_send_later():
    send = mail_connector(free_port())
    with pytest.raises(connectors.ConnectorError, match="did not accept the message"):
        connectors.call(operation=send, params=PARAMS, idempotency_key="act-4")
    inbox = Inbox()
    controller = start_smtp(inbox)
    try:
        send.connector.config["port"] = controller.port
        send.connector.save()
        connectors.call(operation=send, params=PARAMS, idempotency_key="act-4")
    finally:
        controller.stop()
    assert len(inbox.received()) == 1


def test_a_line_break_in_the_subject_is_refused_as_header_injection(smtp_server):
    port, inbox = smtp_server
    send = mail_connector(port)
    params = {**PARAMS, "subject": "Hello\r\nBcc: everyone@example.com"}
    with pytest.raises(connectors.ConnectorError, match="Invalid e-mail header"):
        connectors.call(operation=send, params=params, idempotency_key="act-5")
    assert inbox.received() == []
    assert not ConnectorCall.objects.filter(idempotency_key="act-5").exists()


def test_recipients_outside_the_allowed_domains_are_refused(smtp_server):
    port, inbox = smtp_server
    send = mail_connector(port, allowed_domains=["corp.example"])
    with pytest.raises(connectors.ConnectorError, match="outside the allowed domains"):
        connectors.call(operation=send, params=PARAMS, idempotency_key="act-6")
    assert inbox.received() == []


def test_the_password_secret_logs_in_and_appears_in_no_log_or_error(caplog):
    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == PASSWORD.encode(), handled=False)

    inbox = Inbox()
    controller = start_smtp(inbox, authenticator=authenticator, auth_require_tls=False)
    try:
        send = mail_connector(controller.port, username="bot", password_secret="smtp")
        services.connector_secret_set(
            connector=send.connector, name="smtp", value=PASSWORD, by=None
        )
        with caplog.at_level(logging.DEBUG):
            connectors.call(operation=send, params=PARAMS, idempotency_key="act-7")
            services.connector_secret_set(
                connector=send.connector, name="smtp", value=PASSWORD + "x", by=None
            )
            with pytest.raises(connectors.ConnectorError) as caught:
                connectors.call(operation=send, params=PARAMS, idempotency_key="act-8")
    finally:
        controller.stop()
    assert logins[0] == (b"bot", PASSWORD.encode()) and len(inbox.received()) == 1
    assert "did not accept the message" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert not ConnectorCall.objects.filter(idempotency_key="act-8").exists()  # free to retry
    assert PASSWORD not in caplog.text


def test_a_password_is_never_sent_unencrypted_to_another_machine():
    send = mail_connector(25, username="bot", password_secret="smtp")
    send.connector.config["host"] = "192.0.2.10"  # TEST-NET: nothing may even be tried
    send.connector.save()
    with pytest.raises(connectors.ConnectorError) as caught:
        connectors.call(operation=send, params=PARAMS, idempotency_key="act-9")
    assert "unencrypted" in str(caught.value)
    assert not ConnectorCall.objects.filter(idempotency_key="act-9").exists()  # free to retry
