"""Signed checkpoints of the chain's head, published outside the database.

A checkpoint is ``{seq, hash, time, key_id}`` signed with Ed25519 (``autonomy.audit.keys``).
``publish`` seals, checks that the head still extends the last published checkpoint, and
appends a new one to the sink: by default a JSON-lines file (``AUTONOMY_AUDIT_HEAD_SINK``),
appended and fsynced line by line. An operator can configure any other sink class
(``AUTONOMY_AUDIT_HEAD_SINK_CLASS``) with the same two methods, ``append`` and ``tail``: a
write-once bucket, a transparency service, a syslog host. Someone who can rewrite the
database cannot rewrite what was published, so ``verify_chain`` holds the chain to it.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string

from autonomy.audit import keys
from autonomy.audit.chain import head, seal
from autonomy.models import AuditRecord

SIGNED_FIELDS = ("seq", "hash", "time", "key_id")


class HeadSink(Protocol):
    """Where checkpoints go: appended one at a time, read back oldest first."""

    def append(self, checkpoint: dict) -> None: ...

    def tail(self, count: int | None) -> list[dict]:
        """The last ``count`` checkpoints (all of them for None), oldest first."""


class FileSink:
    """A JSON-lines file: each checkpoint one line, written with O_APPEND and fsynced."""

    def __init__(self, location: str) -> None:
        self.path = Path(location)

    def append(self, checkpoint: dict) -> None:
        line = (json.dumps(checkpoint, sort_keys=True, separators=(",", ":")) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            written = os.write(fd, line)  # one write: an O_APPEND line is never interleaved
            if written != len(line):
                raise OSError(f"short write to {self.path}")
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:  # the new file's directory entry is durable too
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

    def tail(self, count: int | None) -> list[dict]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as file:
            lines = file.read().splitlines() if count is None else _last_lines(file, count)
        checkpoints = []
        for line in lines:
            if not line.strip():
                continue
            try:
                checkpoint = json.loads(line)
            except ValueError:
                checkpoint = None
            if not isinstance(checkpoint, dict):
                checkpoint = {"malformed": f"{self.path} holds a line that is not a checkpoint"}
            checkpoints.append(checkpoint)
        return checkpoints


def _last_lines(file, count: int, block: int = 65536) -> list[bytes]:
    """The last ``count`` lines of a binary file, read backwards a block at a time."""
    end = file.seek(0, os.SEEK_END)
    data, position = b"", end
    while position > 0 and data.count(b"\n") <= count:
        position = max(0, position - block)
        file.seek(position)
        data = file.read(end - position)
    lines = data.splitlines()
    return lines[-count:] if count else []


def sink() -> HeadSink:
    return import_string(settings.AUTONOMY_AUDIT_HEAD_SINK_CLASS)(settings.AUTONOMY_AUDIT_HEAD_SINK)


def _message(checkpoint: dict) -> bytes:
    signed = {name: checkpoint.get(name) for name in SIGNED_FIELDS}
    return json.dumps(signed, sort_keys=True, separators=(",", ":")).encode()


def sign(*, seq: int, hash: str, time: str) -> dict:
    key_id, private = keys.signing_key()
    checkpoint = {"seq": seq, "hash": hash, "time": time, "key_id": key_id}
    checkpoint["signature"] = base64.b64encode(private.sign(_message(checkpoint))).decode()
    return checkpoint


def signature_problem(checkpoint: dict) -> str:
    """Why this checkpoint cannot be trusted, or "" when its signature holds."""
    if "malformed" in checkpoint:
        return checkpoint["malformed"]
    if not isinstance(checkpoint.get("seq"), int) or not isinstance(checkpoint.get("hash"), str):
        return "a checkpoint without a seq and a hash"
    public = keys.verifying_key_for(str(checkpoint.get("key_id")))
    if public is None:
        return f"checkpoint #{checkpoint['seq']} is signed by an unknown key"
    try:
        public.verify(base64.b64decode(str(checkpoint.get("signature", ""))), _message(checkpoint))
    except (InvalidSignature, ValueError):
        return f"checkpoint #{checkpoint['seq']} has a bad signature: forged or altered"
    return ""


class NotExtending(Exception):
    """The head no longer extends the last published checkpoint: the chain was rewritten."""


@dataclass(frozen=True)
class Published:
    checkpoint: dict | None  # None: nothing new to publish
    sealed: int


def publish(*, force: bool = False) -> Published:
    """Seal, then sign the head and append it to the sink (unless it is already the last
    published checkpoint and ``force`` is off). Refuses, raising ``NotExtending``, when the
    chain no longer holds the last published checkpoint's hash at its seq."""
    sealed = seal()
    current, target = head(), sink()
    seq, hash_ = (current.seq, current.hash) if current else (0, "")
    last = next((c for c in reversed(target.tail(10)) if not signature_problem(c)), None)
    if last is not None:
        at = AuditRecord.objects.filter(seq=last["seq"]).values_list("hash", flat=True).first()
        if at != last["hash"] or seq < last["seq"]:
            raise NotExtending(
                f"the chain does not hold checkpoint #{last['seq']} published at {last['time']}"
            )
        if not force and (last["seq"], last["hash"]) == (seq, hash_):
            return Published(None, sealed)
    if seq == 0 and not force:
        return Published(None, sealed)
    checkpoint = sign(seq=seq, hash=hash_, time=timezone.now().isoformat())
    target.append(checkpoint)
    return Published(checkpoint, sealed)
