"""E-mail over SMTP: an operation sends one message built from ``to``, ``subject``, ``body``
(and optional ``cc``, ``reply_to``).

Connector ``config``: ``host``, ``port`` (25), ``tls`` (``"starttls"``, ``"ssl"`` or
``"none"``), ``username``, ``password_secret`` (a secret name), ``from`` and
``timeout_seconds`` (10); ``allowed_domains`` restricts recipients when set. A password is
never sent in the clear: logging in with ``tls`` ``"none"`` is refused unless the server is
on this machine (a loopback address) or ``allow_plaintext_login`` is set.

At most once. SMTP has no idempotency key a server honours, so "check the receipt, send,
then record it" would send twice if a worker dies between the send and the record (the
redelivered task finds no receipt). Instead the intent is recorded and committed *before*
the send (``receipts.claim``); a redelivery that finds it does not send again — answering
from the receipt when the send finished, refusing when its outcome is unknown. A message
lost that way is reported, never doubled. An intent is released only when the server
certainly accepted nothing (no connection, refused sender or recipients, refused data).
The ``Message-ID`` is derived from the action id too, so a receiving system can also tell a
duplicate.
"""

import functools
import ipaddress
import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

from autonomy.connectors import receipts, vault
from autonomy.connectors.errors import ConnectorError
from autonomy.models import Operation

NOTHING_SENT = (
    smtplib.SMTPConnectError,
    smtplib.SMTPAuthenticationError,
    smtplib.SMTPHeloError,
    smtplib.SMTPNotSupportedError,
    smtplib.SMTPRecipientsRefused,
    smtplib.SMTPSenderRefused,
    smtplib.SMTPDataError,
    ConnectionRefusedError,
    ssl.SSLError,
)


def _recipients(value, field: str) -> list[str]:
    items = [value] if isinstance(value, str) else list(value or [])
    addresses = []
    for item in items:
        _, address = parseaddr(str(item))
        if "@" not in address:
            raise ConnectorError(f"{field!r} holds an invalid address: {item!r}.")
        addresses.append(address)
    return addresses


def build_message(
    operation: Operation, params: dict, idempotency_key: str
) -> tuple[EmailMessage, list[str]]:
    """The message and its recipients; a ConnectorError when the parameters cannot make one."""
    config = operation.connector.config
    sender = config.get("from") or "autonomy@localhost"
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    to = _recipients(params.get("to"), "to")
    cc = _recipients(params.get("cc"), "cc")
    if not to:
        raise ConnectorError(f"{operation.key} needs at least one recipient in 'to'.")
    allowed = {d.lower() for d in config.get("allowed_domains") or ()}
    refused = [a for a in to + cc if allowed and a.rpartition("@")[2].lower() not in allowed]
    if refused:
        raise ConnectorError(f"Recipients outside the allowed domains: {', '.join(refused)}.")
    message = EmailMessage()
    try:
        message["From"] = sender
        message["To"] = ", ".join(to)
        if cc:
            message["Cc"] = ", ".join(cc)
        if params.get("reply_to"):
            message["Reply-To"] = str(params["reply_to"])
        message["Subject"] = str(params.get("subject") or "")
    except ValueError as exc:  # a line break in a header: header injection
        raise ConnectorError(f"Invalid e-mail header: {exc}") from None
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = f"<{idempotency_key}@{domain}>"
    message["X-Autonomy-Action"] = idempotency_key
    message.set_content(str(params.get("body") or ""))
    return message, to + cc


class _NotSent(Exception):
    """Failed before the message was handed over: connecting, TLS or login."""

    def __init__(self, error: Exception):
        super().__init__(type(error).__name__)
        self.error = error


@functools.cache
def _fqdn() -> str:
    """smtplib looks this up (DNS) on every connection when not given; once is enough."""
    return socket.getfqdn()


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _open(connector) -> smtplib.SMTP:
    config = connector.config
    helo = config.get("helo") or _fqdn()
    host, port = config["host"], int(config.get("port") or 25)
    timeout = float(config.get("timeout_seconds") or 10)
    tls = config.get("tls", "none")
    if (
        config.get("username")
        and tls not in ("ssl", "starttls")
        and not _loopback(host)
        and not config.get("allow_plaintext_login")
    ):
        raise ConnectorError(
            f'{connector.name} would send its password unencrypted: set tls to "starttls" '
            'or "ssl" (or allow_plaintext_login, knowingly).'
        )
    context = ssl.create_default_context()
    try:
        if tls == "ssl":
            smtp = smtplib.SMTP_SSL(host, port, helo, timeout=timeout, context=context)
        else:
            smtp = smtplib.SMTP(host, port, helo, timeout=timeout)
    except (smtplib.SMTPException, OSError) as exc:
        raise _NotSent(exc) from None
    try:
        if tls == "starttls":
            smtp.starttls(context=context)
        if config.get("username"):
            password = vault.secret_value(connector, config.get("password_secret") or "password")
            smtp.login(config["username"], password)
    except ConnectorError:
        smtp.close()
        raise
    except (smtplib.SMTPException, OSError) as exc:
        smtp.close()
        raise _NotSent(exc) from None
    return smtp


def _send(connector, message: EmailMessage) -> dict:
    """Deliver to the server; the recipients it refused (the others were accepted)."""
    smtp = _open(connector)
    try:
        refused = smtp.send_message(message)
    except BaseException:
        smtp.close()
        raise
    try:  # the message is accepted: a failing goodbye changes nothing
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()
    return refused


def execute(*, operation: Operation, params: dict, idempotency_key: str) -> dict:
    connector = operation.connector
    message, recipients = build_message(operation, params, idempotency_key)
    earlier = receipts.claim(operation=operation, params=params, idempotency_key=idempotency_key)
    if earlier is not None:
        return receipts.replay_or_refuse(earlier, system=connector.name)
    try:
        refused = _send(connector, message)
    except (_NotSent, *NOTHING_SENT) as exc:
        receipts.release(idempotency_key=idempotency_key)
        cause = exc.error if isinstance(exc, _NotSent) else exc
        raise ConnectorError(
            f"{connector.name} did not accept the message ({_why(cause)})."
        ) from None
    except ConnectorError:
        receipts.release(idempotency_key=idempotency_key)
        raise
    except (smtplib.SMTPException, OSError) as exc:
        raise ConnectorError(
            f"{connector.name} failed while sending ({type(exc).__name__}); the message may "
            "or may not have been delivered, and it is not sent again."
        ) from None
    accepted = [r for r in recipients if r not in refused]
    result = {"data": {"message_id": message["Message-ID"], "accepted": accepted}}
    receipts.finish(idempotency_key=idempotency_key, result=result)
    return {**result, "replayed": False}


def _why(exc: Exception) -> str:
    code = getattr(exc, "smtp_code", None)
    return f"{type(exc).__name__} {code}" if code else type(exc).__name__
