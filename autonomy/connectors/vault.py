"""Connector secrets, encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256).

The keys come from ``settings.AUTONOMY_SECRETS_KEY`` (a list): the first encrypts, every one
decrypts, so a rotation puts a new key first and ``reencrypt_all`` moves the stored secrets
onto it before the old key is dropped. Each configured key is hashed into a Fernet key, so any
long random string serves. Only executors call ``secret_value``, inside a call; nothing shows
a decrypted value, and ``scrub`` removes every secret of a connector from text before it
leaves the connector layer (error messages).
"""

import base64
import functools
import hashlib
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

from autonomy.connectors.errors import ConnectorError
from autonomy.models import Connector, ConnectorSecret

REDACTED = "[secret]"


@functools.lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ConnectorError("AUTONOMY_SECRETS_KEY is empty: connector secrets are unavailable.")
    derived = [
        Fernet(base64.urlsafe_b64encode(hashlib.sha256(f"autonomy-secrets:{k}".encode()).digest()))
        for k in keys
    ]
    return MultiFernet(derived)


def _box() -> MultiFernet:
    return _fernet(tuple(settings.AUTONOMY_SECRETS_KEY))


def encrypt(value: str) -> str:
    return _box().encrypt(value.encode()).decode()


def decrypt(ciphertext: str) -> str:
    return _box().decrypt(ciphertext.encode()).decode()


def secret_value(connector: Connector, name: str) -> str:
    """The clear value of one secret, for an executor about to call the system."""
    row = ConnectorSecret.objects.filter(connector=connector, name=name).first()
    if row is None:
        raise ConnectorError(f"Connector {connector.slug!r} has no secret named {name!r}.")
    try:
        return decrypt(row.ciphertext)
    except InvalidToken:
        raise ConnectorError(
            f"Secret {name!r} of connector {connector.slug!r} cannot be decrypted with the "
            "configured AUTONOMY_SECRETS_KEY."
        ) from None


def _fragments(value: str) -> set[str]:
    """The value, and the password inside it when it is a URL or a libpq DSN."""
    found = {value}
    try:
        password = urlsplit(value).password
    except ValueError:
        password = None
    if password:
        found.add(password)
    for part in value.split():
        if part.startswith("password="):
            found.add(part.removeprefix("password=").strip("'\""))
    return {f for f in found if len(f) >= 4}


def scrub(connector: Connector, text: str) -> str:
    """``text`` with every secret of ``connector`` (and the passwords inside them) redacted."""
    for row in ConnectorSecret.objects.filter(connector=connector):
        try:
            value = decrypt(row.ciphertext)
        except InvalidToken:
            continue
        for fragment in sorted(_fragments(value), key=len, reverse=True):
            text = text.replace(fragment, REDACTED)
    return text


def reencrypt_all() -> int:
    """Re-encrypt every stored secret with the first configured key (after a rotation)."""
    box, count = _box(), 0
    for row in ConnectorSecret.objects.all():
        row.ciphertext = box.rotate(row.ciphertext.encode()).decode()
        row.save(update_fields=["ciphertext", "updated_at"])
        count += 1
    return count
