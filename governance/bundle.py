"""A governance bundle as files: a directory of readable files, or a .zip / .tar.gz of one.

``bundle.yaml`` says what the bundle is (format 1, when and where it was generated, the
digest of its content); every other file belongs to a section (``governance.sections``).
Files are UTF-8 text with stable bytes (YAML with sorted keys), so exporting twice gives
the same files and a git diff shows only real changes. Reading refuses what a bundle never
holds: paths that leave the bundle, other file types, aliases in YAML, more than a few MiB.
"""

import hashlib
import io
import re
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

import yaml

from autonomy.errors import DomainError, ErrorCode
from workflows.yaml_io import NoAliasLoader

FORMAT = 1
HEADER = "bundle.yaml"
MAX_BYTES = 4 * 1024 * 1024
MAX_FILES = 5000
SUFFIXES = (".yaml", ".cedar")
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# A zip's entries carry a timestamp; a fixed one keeps the archive's bytes stable.
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)


def invalid(message: str, **details) -> DomainError:
    return DomainError(ErrorCode.BUNDLE_INVALID, message, details)


def yaml_text(data) -> str:
    """The one way a bundle writes YAML: block style, keys sorted, unicode kept."""
    return yaml.safe_dump(
        data, sort_keys=True, allow_unicode=True, default_flow_style=False, width=100
    )


def yaml_data(text: str, *, path: str):
    """A bundle file's YAML, or ``bundle_invalid`` naming the file and the line."""
    try:
        return yaml.load(text, Loader=NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise invalid(f"{path}: YAML syntax error{where}: {exc.problem}.", file=path) from exc
    except yaml.YAMLError as exc:
        raise invalid(f"{path}: YAML syntax error: {exc}.", file=path) from exc
    except RecursionError as exc:  # [[[[...]]]] thousands deep: the composer recurses
        raise invalid(f"{path}: nested too deeply.", file=path) from exc


def digest(files: dict[str, str]) -> str:
    """The content digest: every file but the header, by path."""
    sha = hashlib.sha256()
    for path in sorted(files):
        if path != HEADER:
            sha.update(path.encode() + b"\0" + files[path].encode() + b"\0")
    return f"sha256:{sha.hexdigest()}"


def header_text(
    *, files: dict[str, str], source: str, generated_at: str, sections: list[str]
) -> str:
    """``bundle.yaml``: what the bundle is; ``sections`` are the ones it manages."""
    return yaml_text(
        {
            "format": FORMAT,
            "generated_at": generated_at,
            "source": source,
            "digest": digest(files),
            "sections": sections,
        }
    )


def header_of(files: dict[str, str]) -> dict:
    """The bundle's header, checked: a mapping of format 1."""
    if HEADER not in files:
        raise invalid(f"A bundle has a {HEADER} (format {FORMAT}).", file=HEADER)
    header = yaml_data(files[HEADER], path=HEADER)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise invalid(f"{HEADER}: this reads bundles of format {FORMAT}.", file=HEADER)
    return header


def _checked_name(name: str) -> str:
    path = PurePosixPath(name)
    if (
        path.is_absolute()
        or not path.parts
        or not all(_PART.match(part) for part in path.parts)
        or not name.endswith(SUFFIXES)
    ):
        raise invalid(f"{name!r} is not a bundle file (.yaml or .cedar inside the bundle).")
    return str(path)


def _decoded(files: dict[str, bytes]) -> dict[str, str]:
    if len(files) > MAX_FILES or sum(len(b) for b in files.values()) > MAX_BYTES:
        raise invalid(f"A bundle holds at most {MAX_FILES} files and {MAX_BYTES // 2**20} MiB.")
    out = {}
    for name, data in files.items():
        try:
            out[_checked_name(name)] = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise invalid(f"{name} is not UTF-8 text.", file=name) from exc
    return out


def read_dir(root: Path) -> dict[str, bytes]:
    files = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue  # .git and editors' files
        if path.is_symlink():
            raise invalid(f"{relative} is a symbolic link; a bundle holds plain files.")
        if path.suffix in SUFFIXES:
            files[relative.as_posix()] = path.read_bytes()
    return files


def read_zip(data: bytes) -> dict[str, str]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = [i for i in archive.infolist() if not i.is_dir()]
            if len(entries) > MAX_FILES or sum(i.file_size for i in entries) > MAX_BYTES:
                raise invalid(f"A bundle holds at most {MAX_BYTES // 2**20} MiB.")
            return _decoded({i.filename: archive.read(i) for i in entries})
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise invalid("Not a zip archive of a bundle.") from exc


def read_tar(data: bytes) -> dict[str, str]:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            members = [m for m in archive.getmembers() if not m.isdir()]
            if any(not m.isfile() for m in members):
                raise invalid("A bundle archive holds plain files only.")
            if len(members) > MAX_FILES or sum(m.size for m in members) > MAX_BYTES:
                raise invalid(f"A bundle holds at most {MAX_BYTES // 2**20} MiB.")
            return _decoded({m.name: archive.extractfile(m).read() for m in members})
    except tarfile.TarError as exc:
        raise invalid("Not a tar archive of a bundle.") from exc


def read(path: Path) -> dict[str, str]:
    """A bundle from a directory, a .zip or a .tar.gz."""
    if path.is_dir():
        return _decoded(read_dir(path))
    if not path.is_file():
        raise invalid(f"No bundle at {path}.")
    if path.stat().st_size > MAX_BYTES:
        raise invalid(f"A bundle holds at most {MAX_BYTES // 2**20} MiB.")
    data = path.read_bytes()
    return read_zip(data) if path.name.endswith(".zip") else read_tar(data)


def zip_bytes(files: dict[str, str]) -> bytes:
    """A zip of the files with stable bytes: sorted entries, fixed timestamps."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(files):
            info = zipfile.ZipInfo(path, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, files[path].encode())
    return buffer.getvalue()


def tar_bytes(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
        for path in sorted(files):
            data = files[path].encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def write(path: Path, files: dict[str, str]) -> None:
    """Write the bundle: an archive by the name's suffix, else a directory holding exactly
    these bundle files (ones it held that the bundle no longer has are removed; a .git and
    other files stay)."""
    if path.name.endswith(".zip"):
        path.write_bytes(zip_bytes(files))
        return
    if path.name.endswith((".tar.gz", ".tgz")):
        path.write_bytes(tar_bytes(files))
        return
    path.mkdir(parents=True, exist_ok=True)
    for stale in set(read_dir(path)) - set(files):
        (path / stale).unlink()
    for name, text in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")


def previous_header(path: Path) -> str | None:
    """The header a directory bundle already has, to keep when its content is unchanged."""
    header = path / HEADER
    return header.read_text(encoding="utf-8") if path.is_dir() and header.is_file() else None
