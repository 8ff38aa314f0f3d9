"""The audit trail's keys, which live outside the database.

- The MAC key (``settings.AUTONOMY_AUDIT_KEY``, a list: the first keys new records, every one
  verifies, so a rotation puts the new key first): HMAC-SHA256 over each record's content.
  A record stores the id of the key it was made with.
- The signing key (``settings.AUTONOMY_AUDIT_SIGNING_KEY``, a list the same way): Ed25519,
  signs the checkpoints published outside the database.

Each configured secret is a string; the key itself is derived from it with a salt of its own,
so the development defaults (derived from SECRET_KEY) differ from each other and from every
other key derived from SECRET_KEY.
"""

import functools
import hashlib
import hmac

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings

MIN_SECRET_LENGTH = 32
_MAC_SALT = b"autonomy.audit.record-mac\x00"
_SIGNING_SALT = b"autonomy.audit.checkpoint-signing\x00"


class AuditKeyError(Exception):
    """No usable audit key is configured."""


def _secrets(value) -> tuple[str, ...]:
    secrets = (value,) if isinstance(value, str) else tuple(value or ())
    if not secrets:
        raise AuditKeyError("no audit key is configured")
    for secret in secrets:
        if len(secret) < MIN_SECRET_LENGTH:
            raise AuditKeyError(f"audit keys must be at least {MIN_SECRET_LENGTH} characters")
    return secrets


@functools.cache
def _mac_keys(secrets: tuple[str, ...]) -> tuple[tuple[str, bytes], ...]:
    keys = []
    for secret in secrets:
        key = hashlib.sha256(_MAC_SALT + secret.encode()).digest()
        key_id = hmac.new(key, b"key-id", hashlib.sha256).hexdigest()[:16]
        keys.append((key_id, key))
    return tuple(keys)


def mac_key() -> tuple[str, bytes]:
    """(key id, key) that MACs new records."""
    return _mac_keys(_secrets(settings.AUTONOMY_AUDIT_KEY))[0]


def mac_key_for(key_id: str) -> bytes | None:
    """The MAC key with this id, or None when no configured key has it."""
    return dict(_mac_keys(_secrets(settings.AUTONOMY_AUDIT_KEY))).get(key_id)


@functools.cache
def _signing_keys(secrets: tuple[str, ...]) -> tuple[tuple[str, Ed25519PrivateKey], ...]:
    keys = []
    for secret in secrets:
        private = Ed25519PrivateKey.from_private_bytes(
            hashlib.sha256(_SIGNING_SALT + secret.encode()).digest()
        )
        keys.append((public_key_id(private.public_key()), private))
    return tuple(keys)


def public_key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def signing_key() -> tuple[str, Ed25519PrivateKey]:
    """(key id, private key) that signs new checkpoints."""
    return _signing_keys(_secrets(settings.AUTONOMY_AUDIT_SIGNING_KEY))[0]


def verifying_key_for(key_id: str) -> Ed25519PublicKey | None:
    """The public key of the configured signing key with this id, or None."""
    for known_id, private in _signing_keys(_secrets(settings.AUTONOMY_AUDIT_SIGNING_KEY)):
        if known_id == key_id:
            return private.public_key()
    return None
