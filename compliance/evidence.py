"""The evidence pack: one period's proof, as a signed zip an auditor can check.

Layout (this order, every entry dated 1980-01-01 so equal content gives equal bytes):
the sections (``SECTIONS``), then ``manifest.json`` (period, generation time, generator,
key id and public key, and the SHA-256 and size of every section) and ``signature``
(Ed25519 over the manifest's exact bytes, base64), made with the audit trail's signing key
(``autonomy.audit.keys.signing_key``), whose key id the published checkpoints carry too.

``audit_records.jsonl`` is the contiguous stretch of the chain that holds the period's
records, between two checkpoints signed at export (``audit_verification.json``), with the
newest head published outside the database and the result of verifying the whole trail
against it when the pack was made. ``pack_verify`` checks the signature, every file's
hash, and recomputes the stretch's chain (MACs, hashes, links, both ends): an edited,
removed or reordered record fails even in a pack whose manifest was rebuilt around it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import IO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.utils import timezone

from autonomy.audit import keys, verify_chain
from autonomy.audit.checkpoint import signature_problem, sink
from autonomy.audit.segment import Segment, segment_for_period, segment_lines, verify_segment
from compliance import selectors
from compliance.periods import Period

FORMAT = "autonomy-evidence-pack/1"
GENERATOR = "Autonomy OS compliance.evidence"
MANIFEST, SIGNATURE = "manifest.json", "signature"
AUDIT_RECORDS, AUDIT_VERIFICATION = "audit_records.jsonl", "audit_verification.json"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def _json(value) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _json_with_list(head: dict, name: str, items: Iterable[dict]) -> Iterator[bytes]:
    """A JSON object whose ``name`` list is streamed item by item (the rest is ``head``)."""
    opening = json.dumps(head, sort_keys=True, ensure_ascii=False)[:-1]
    yield f'{opening}{", " if head else ""}"{name}": [\n'.encode()
    for i, item in enumerate(items):
        yield (",\n" if i else "").encode() + json.dumps(
            item, sort_keys=True, ensure_ascii=False
        ).encode()
    yield b"\n]}\n"


# --- sections ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    period: Period
    segment: Segment


def _policies(ctx: _Context) -> Iterator[bytes]:
    yield _json(selectors.policies_section(start=ctx.period.start, end=ctx.period.end))


def _controls(ctx: _Context) -> Iterator[bytes]:
    rows = selectors.controls_with_counts(start=ctx.period.start, end=ctx.period.end)
    yield _json({"controls": rows})


def _decisions(ctx: _Context) -> Iterator[bytes]:
    yield _json(selectors.decisions_section(start=ctx.period.start, end=ctx.period.end))


def _approvals(ctx: _Context) -> Iterator[bytes]:
    start, end = ctx.period.start, ctx.period.end
    yield from _json_with_list(
        selectors.approvals_summary(start=start, end=end),
        "decisions",
        selectors.approval_decisions(start=start, end=end),
    )


def _interventions(ctx: _Context) -> Iterator[bytes]:
    start, end = ctx.period.start, ctx.period.end
    yield from _json_with_list(
        selectors.interventions_summary(start=start, end=end),
        "interventions",
        selectors.interventions(start=start, end=end),
    )


def _reviews(ctx: _Context) -> Iterator[bytes]:
    yield _json({"reviews": selectors.reviews(start=ctx.period.start, end=ctx.period.end)})


def _audit_records(ctx: _Context) -> Iterator[bytes]:
    for line in segment_lines(ctx.segment):
        yield line.encode()


def _newest_published_head() -> dict | None:
    return next((c for c in reversed(sink().tail(10)) if not signature_problem(c)), None)


def _audit_verification(ctx: _Context) -> Iterator[bytes]:
    report = verify_chain()
    segment = ctx.segment
    yield _json(
        {
            "trail": {
                "ok": report.ok,
                "records_checked": report.checked,
                "first_broken_seq": report.first_broken_seq,
                "problem": report.problem,
                "unsealed": report.unsealed,
                "head_seq": report.head_seq,
                "checkpoints_held": report.checkpoints,
                "checked": list(report.checked_what),
            },
            "published_head": _newest_published_head(),
            "segment": {
                "first_seq": segment.first_seq,
                "last_seq": segment.last_seq,
                "records": segment.count,
                "start": segment.start,
                "end": segment.end,
            },
        }
    )


# Name and writer of each section, in the pack's order.
SECTIONS: tuple[tuple[str, Callable[[_Context], Iterator[bytes]]], ...] = (
    ("policies_in_force.json", _policies),
    ("controls.json", _controls),
    ("decisions.json", _decisions),
    ("approvals.json", _approvals),
    ("interventions.json", _interventions),
    ("reviews.json", _reviews),
    (AUDIT_RECORDS, _audit_records),
    (AUDIT_VERIFICATION, _audit_verification),
)


# --- building -------------------------------------------------------------------------------


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def pack_build(*, period: Period, out: IO[bytes], generated_by: str) -> dict:
    """Write the pack for ``period`` to ``out``; return its manifest. Sections are streamed
    into the zip, so the audit records of a long period are never all in memory."""
    ctx = _Context(period, segment_for_period(start=period.start, end=period.end))
    key_id, private = keys.signing_key()
    files = []
    with zipfile.ZipFile(out, "w") as archive:
        for name, write in SECTIONS:
            digest, size = hashlib.sha256(), 0
            with archive.open(_entry(name), "w") as target:
                for chunk in write(ctx):
                    digest.update(chunk)
                    size += len(chunk)
                    target.write(chunk)
            files.append({"name": name, "sha256": digest.hexdigest(), "bytes": size})
        manifest = {
            "format": FORMAT,
            "period": {"from": period.start.isoformat(), "to": period.end.isoformat()},
            "label": period.label,
            "generated_at": timezone.now().isoformat(),
            "generator": GENERATOR,
            "generated_by": generated_by,
            "key_id": key_id,
            "public_key": base64.b64encode(
                private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            ).decode(),
            "files": files,
        }
        manifest_bytes = _json(manifest)
        archive.writestr(_entry(MANIFEST), manifest_bytes)
        signature = base64.b64encode(private.sign(manifest_bytes)).decode()
        archive.writestr(_entry(SIGNATURE), signature + "\n")
    return manifest


# --- verifying ------------------------------------------------------------------------------


@dataclass
class PackReport:
    signature_ok: bool = False
    files_ok: bool = False
    audit_ok: bool = False
    audit_records_checked: int = 0
    problems: list[str] = field(default_factory=list)
    manifest: dict | None = None

    @property
    def ok(self) -> bool:
        return self.signature_ok and self.files_ok and self.audit_ok

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def _check_signature(archive: zipfile.ZipFile, names: set, report: PackReport) -> None:
    if MANIFEST not in names or SIGNATURE not in names:
        report.problems.append("the pack has no manifest.json or no signature")
        return
    manifest_bytes = archive.read(MANIFEST)
    try:
        report.manifest = json.loads(manifest_bytes)
    except ValueError:
        report.problems.append("manifest.json is not JSON")
        return
    key_id = str(report.manifest.get("key_id", ""))
    public = keys.verifying_key_for(key_id)
    if public is None:
        report.problems.append(f"the manifest is signed by an unknown key ({key_id or 'none'})")
        return
    try:
        public.verify(base64.b64decode(archive.read(SIGNATURE).strip()), manifest_bytes)
    except (InvalidSignature, ValueError):
        report.problems.append("the manifest's signature does not verify: forged or altered")
        return
    report.signature_ok = True


def _sha256(archive: zipfile.ZipFile, name: str) -> str:
    digest = hashlib.sha256()
    with archive.open(name) as source:
        for chunk in iter(lambda: source.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_files(archive: zipfile.ZipFile, names: set, report: PackReport) -> None:
    listed = {
        f.get("name"): f.get("sha256")
        for f in (report.manifest or {}).get("files", [])
        if isinstance(f, dict)
    }
    if not listed:
        report.problems.append("the manifest lists no files")
        return
    problems = [f"{name} is missing" for name in sorted(set(listed) - names)]
    problems += [
        f"{name} is not in the manifest"
        for name in sorted(names - set(listed) - {MANIFEST, SIGNATURE})
    ]
    problems += [
        f"{name}: its SHA-256 does not match the manifest"
        for name in sorted(set(listed) & names)
        if _sha256(archive, name) != listed[name]
    ]
    report.problems += problems
    report.files_ok = not problems


def _check_audit(archive: zipfile.ZipFile, names: set, report: PackReport) -> None:
    """Recompute the stretch of the chain in the pack, whatever its manifest says."""
    if AUDIT_RECORDS not in names or AUDIT_VERIFICATION not in names:
        report.problems.append("the pack has no audit records or no audit verification")
        return
    try:
        verification = json.loads(archive.read(AUDIT_VERIFICATION))
        segment = verification["segment"]
        start, end = segment["start"], segment["end"]
    except (ValueError, KeyError, TypeError):
        report.problems.append("audit_verification.json is unreadable")
        return
    head = verification.get("published_head")
    published = [head] if isinstance(head, dict) else []
    with archive.open(AUDIT_RECORDS) as source:
        lines = io.TextIOWrapper(source, encoding="utf-8")
        result = verify_segment(lines, start=start, end=end, published=published)
    report.audit_records_checked = result.checked
    if not result.ok:
        where = f" at record #{result.first_broken_seq}" if result.first_broken_seq else ""
        report.problems.append(f"audit records{where}: {result.problem}")
        return
    trail = verification.get("trail") or {}
    if trail.get("ok") is not True:
        report.problems.append(
            f"the audit trail did not verify when the pack was made: {trail.get('problem')}"
        )
        return
    report.audit_ok = True


def pack_verify(pack: bytes | IO[bytes]) -> PackReport:
    """Check an evidence pack with this installation's audit keys: the manifest's
    signature, every file's SHA-256, and the audit records' chain. Each check runs on its
    own, so a report names every way a pack was altered."""
    report = PackReport()
    source = io.BytesIO(pack) if isinstance(pack, bytes | bytearray) else pack
    try:
        archive = zipfile.ZipFile(source)
    except zipfile.BadZipFile:
        report.problems.append("not a zip archive")
        return report
    with archive:
        names = set(archive.namelist())
        _check_signature(archive, names, report)
        _check_files(archive, names, report)
        _check_audit(archive, names, report)
    return report


def pack_filename(period: Period) -> str:
    return f"evidence-{period.slug}.zip"
