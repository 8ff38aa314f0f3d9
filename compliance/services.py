"""The compliance use cases that change state: exporting an evidence pack, which is itself
audited (``evidence_pack_exported``, with the manifest's digest, so the export and the pack
are tied together)."""

import hashlib
import json
import tempfile
from typing import IO

from django.db import transaction

from autonomy import audit, masking
from autonomy.errors import DomainError, ErrorCode
from compliance.evidence import pack_build
from compliance.periods import Period

EXPORT_PERMISSION = "compliance.export_evidence"


def may_export_evidence(*, user) -> bool:
    """Risk officers and auditors (and superusers): the one check behind the page's button,
    the download and the command's ``--by``. The pack carries the audit records whole (their
    MACs verify only over every byte), so it also takes the right to see sensitive values
    (``autonomy.masking``): nobody gets unmasked values through a pack they could not read."""
    return (
        bool(getattr(user, "is_authenticated", False))
        and user.has_perm(EXPORT_PERMISSION)
        and masking.may_view_sensitive(user)
    )


def evidence_pack_export(*, period: Period, by) -> tuple[IO[bytes], dict]:
    """Build the pack for ``period`` into a temporary file (rewound) and audit the export;
    return the file and the pack's manifest."""
    if not may_export_evidence(user=by):
        raise DomainError(
            ErrorCode.PERMISSION_DENIED,
            "Only risk officers and auditors may download evidence packs.",
            status_code=403,
        )
    return evidence_pack_write(period=period, actor=by.get_username())


def evidence_pack_write(*, period: Period, actor: str) -> tuple[IO[bytes], dict]:
    """The pack for ``period``, exported by ``actor`` (a person, or the command line), in a
    rewound temporary file, with its audit record."""
    out = tempfile.TemporaryFile()
    manifest = pack_build(period=period, out=out, generated_by=actor)
    out.seek(0)
    manifest_digest = hashlib.sha256(
        json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    with transaction.atomic():
        audit.append(
            kind="evidence_pack_exported",
            actor=actor,
            payload={
                "period": manifest["period"],
                "label": manifest["label"],
                "generated_at": manifest["generated_at"],
                "key_id": manifest["key_id"],
                "manifest_digest": manifest_digest,
                "files": {f["name"]: f["sha256"] for f in manifest["files"]},
            },
        )
    return out, manifest
