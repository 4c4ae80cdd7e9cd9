"""The offline payload's manifest: every file of the folder with its size and SHA-256.

``manifest.json``::

    {"format": 1, "app_version": "0.1.0", "device": "cpu", "lock": "cpu.txt",
     "app_wheel": "wheels/isengard_desktop-0.1.0-py3-none-any.whl",
     "python": "python/20261110/cpython-3.11.18+20261110-…-install_only_stripped.tar.gz",
     "files": [{"path": "wheels/torch-…whl", "size": 123, "sha256": "…"}, …]}

:func:`verify_manifest` names each missing, truncated or corrupt file, so a user with a bad
USB stick learns which file to copy again. ``python`` (optional, "" when the payload has
none) is uv's own CPython build, laid out as a ``python-install-mirror`` for uv; it is listed
and checked like every other file (and uv checks it against its own SHA-256 table too).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ... import __version__
from ..fsutil import atomic_write_text
from .status import RuntimeDevice

__all__ = ["MANIFEST_FORMAT", "MANIFEST_NAME", "Manifest", "ManifestError", "file_sha256",
           "read_manifest", "verify_manifest", "write_manifest"]

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
_CHUNK = 1 << 20


class ManifestError(ValueError):
    """The manifest itself is missing or malformed (the message names the file and field)."""


@dataclass(frozen=True)
class ManifestFile:
    path: str       # relative, with "/" separators
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    app_version: str
    device: RuntimeDevice
    lock: str                       # the lock's file name inside the payload
    app_wheel: str                  # relative path of the app's own wheel ("" if none)
    files: tuple[ManifestFile, ...]
    python: str = ""                # relative path of uv's Python archive ("" if none)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def file_sha256(path: Path, progress: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return digest.hexdigest()


def write_manifest(folder: Path, *, device: RuntimeDevice | str, lock_name: str,
                   app_wheel: str = "", app_version: str = __version__,
                   python: str = "") -> Manifest:
    """Hash every file under ``folder`` (except the manifest) and write ``manifest.json``."""
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel == MANIFEST_NAME:
            continue
        files.append(ManifestFile(rel, path.stat().st_size, file_sha256(path)))
    manifest = Manifest(app_version, RuntimeDevice(device), lock_name, app_wheel, tuple(files),
                        python)
    data: dict[str, Any] = {
        "format": MANIFEST_FORMAT, "app_version": app_version, "device": manifest.device.value,
        "lock": lock_name, "app_wheel": app_wheel, "python": python,
        "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in files]}
    atomic_write_text(folder / MANIFEST_NAME, json.dumps(data, indent=1))
    return manifest


def read_manifest(folder: Path) -> Manifest:
    """Parse ``folder/manifest.json``; :class:`ManifestError` names what is wrong."""
    path = folder / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path} is missing: this is not an offline payload folder") from None
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: not a JSON object")
    if data.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{path}: field 'format' is {data.get('format')!r}, this app reads "
                            f"{MANIFEST_FORMAT}")
    for key in ("app_version", "device", "lock"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ManifestError(f"{path}: field '{key}' is missing or not text")
    try:
        device = RuntimeDevice(data["device"])
    except ValueError:
        raise ManifestError(f"{path}: field 'device' is {data['device']!r}, expected one of "
                            f"{', '.join(d.value for d in RuntimeDevice)}") from None
    files = []
    entries = data.get("files")
    if not isinstance(entries, list):
        raise ManifestError(f"{path}: field 'files' is missing or not a list")
    for n, entry in enumerate(entries):
        try:
            rel, size, sha = str(entry["path"]), int(entry["size"]), str(entry["sha256"])
        except (KeyError, TypeError, ValueError):
            raise ManifestError(f"{path}: files[{n}] needs 'path', 'size' and 'sha256'") from None
        if rel.startswith("/") or ".." in Path(rel).parts:
            raise ManifestError(f"{path}: files[{n}] path {rel!r} leaves the folder")
        files.append(ManifestFile(rel, size, sha))
    python = data.get("python") or ""
    if not isinstance(python, str) or (python and not python.startswith("python/")):
        raise ManifestError(f"{path}: field 'python' must be a path under python/ "
                            f"(got {python!r})")
    return Manifest(str(data["app_version"]), device, str(data["lock"]),
                    str(data.get("app_wheel") or ""), tuple(files), python)


def verify_manifest(folder: Path, progress: Callable[[int, int], None] | None = None
                    ) -> list[str]:
    """Check every file the manifest lists; one sentence per problem (empty: all good).
    ``progress(bytes_done, bytes_total)`` is called while hashing."""
    try:
        manifest = read_manifest(folder)
    except ManifestError as exc:
        return [str(exc)]
    problems: list[str] = []
    listed = {f.path for f in manifest.files}
    if manifest.lock not in listed:
        problems.append(f"the manifest does not list the lock file {manifest.lock}")
    if manifest.python and manifest.python not in listed:
        problems.append(f"the manifest does not list its Python build {manifest.python}")
    total, done = manifest.total_bytes, 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    for entry in manifest.files:
        path = folder / entry.path
        if not path.is_file():
            problems.append(f"{entry.path} is missing")
            done += entry.size
            continue
        size = path.stat().st_size
        if size != entry.size:
            problems.append(f"{entry.path} is {'truncated' if size < entry.size else 'too long'}"
                            f" ({size:,} of {entry.size:,} bytes)")
            done += entry.size
            continue
        if file_sha256(path, step) != entry.sha256:
            problems.append(f"{entry.path} is corrupt (its SHA-256 does not match the manifest)")
    return problems
