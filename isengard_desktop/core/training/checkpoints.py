"""Finding and verifying the checkpoints of one job folder (Qt-free, torch-free).

The format is the built-in trainer's (``training_runtime/checkpoints.py`` writes it); the GUI
reads it here without importing the runtime package::

    jobs/<job_id>/checkpoints/checkpoint-<step>/      one folder per saved step
        manifest.json                                  written last
        <files the trainer needs to resume>            (LoRA weights, optimizer, RNG, ...)

``manifest.json`` (version 1; extra keys are allowed and ignored)::

    {"version": 1, "step": 250,
     "files": {"lora.safetensors": {"bytes": 1234, "sha256": "<64 hex>"},
               "optimizer.pt":     {"bytes": 5678, "sha256": "<64 hex>"}}}

(``"size"`` is accepted in place of ``"bytes"``.) File names are relative to the checkpoint
folder, use ``/`` as separator and never leave it. A checkpoint is *complete* when its
manifest exists, parses, is not from a newer version, names the folder's step, and every listed
file exists with the stated size (and, when verified deeply, the stated sha256). A trainer
killed while saving leaves no manifest (or a temporary folder name), so that checkpoint is
skipped and resume falls back to the previous one.

:func:`write_manifest` builds a manifest for a folder whose files are all written.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..fsutil import atomic_write_text

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
CHECKPOINTS_DIR = "checkpoints"
_FOLDER = re.compile(r"^checkpoint-(\d+)$")
_CHUNK = 1 << 20

__all__ = [
    "CHECKPOINTS_DIR", "MANIFEST_NAME", "MANIFEST_VERSION", "CheckpointInfo", "file_sha256", "latest_complete",
    "list_checkpoints", "read_manifest", "verify_checkpoint", "write_manifest",
]


@dataclass(frozen=True)
class CheckpointInfo:
    """One ``checkpoint-<step>`` folder and whether it can be resumed from."""

    step: int
    path: Path
    complete: bool
    problem: str = ""   # why it is not complete ("" when complete)


def _checkpoints_root(folder: Path) -> Path:
    """Accept a job folder or its ``checkpoints/`` folder."""
    folder = Path(folder)
    sub = folder / CHECKPOINTS_DIR
    return sub if sub.is_dir() else folder


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _safe_relative(name: str) -> PurePosixPath | None:
    rel = PurePosixPath(name)
    if not name or rel.is_absolute() or ".." in rel.parts or "\\" in name or ":" in name:
        return None
    return rel


def read_manifest(checkpoint_dir: Path) -> dict[str, Any]:
    """The parsed manifest; ValueError says what is wrong with it, OSError if unreadable."""
    text = (Path(checkpoint_dir) / MANIFEST_NAME).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{MANIFEST_NAME} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("step"), int) \
            or not isinstance(data.get("files"), dict):
        raise ValueError(f"{MANIFEST_NAME} must be an object with 'step' and 'files'")
    version = data.get("version", 1)
    if not isinstance(version, int) or version > MANIFEST_VERSION:
        raise ValueError(f"{MANIFEST_NAME} version {version!r} is newer than this app")
    for name, meta in data["files"].items():
        if _safe_relative(name) is None:
            raise ValueError(f"{MANIFEST_NAME} lists an unsafe file name {name!r}")
        if not isinstance(meta, dict) or not isinstance(_size(meta), int) \
                or not isinstance(meta.get("sha256"), str):
            raise ValueError(f"{MANIFEST_NAME}: entry {name!r} needs 'bytes' and 'sha256'")
    return data


def _size(meta: dict[str, Any]) -> Any:
    return meta.get("bytes", meta.get("size"))


def verify_checkpoint(checkpoint_dir: Path, *, deep: bool = True) -> tuple[bool, str]:
    """``(True, "")`` when the checkpoint is complete, else ``(False, why)``.

    ``deep`` also compares sha256 hashes (reads every byte); otherwise sizes only.
    """
    checkpoint_dir = Path(checkpoint_dir)
    match = _FOLDER.match(checkpoint_dir.name)
    if not (checkpoint_dir / MANIFEST_NAME).is_file():
        return False, f"{checkpoint_dir.name} has no {MANIFEST_NAME} (saving was interrupted)"
    try:
        manifest = read_manifest(checkpoint_dir)
    except (OSError, ValueError) as exc:
        return False, f"{checkpoint_dir.name}: {exc}"
    if match and int(match.group(1)) != manifest["step"]:
        return False, (f"{checkpoint_dir.name}: the manifest says step {manifest['step']}, "
                       "not the folder's step")
    if not manifest["files"]:
        return False, f"{checkpoint_dir.name}: the manifest lists no files"
    for name, meta in manifest["files"].items():
        path = checkpoint_dir / name
        try:
            size = path.stat().st_size
        except OSError:
            return False, f"{checkpoint_dir.name}: {name} is missing"
        if size != _size(meta):
            return False, (f"{checkpoint_dir.name}: {name} is {size} bytes, "
                           f"expected {_size(meta)}")
        if deep:
            try:
                digest = file_sha256(path)
            except OSError as exc:
                return False, f"{checkpoint_dir.name}: {name} cannot be read ({exc})"
            if digest != meta["sha256"].lower():
                return False, f"{checkpoint_dir.name}: {name} does not match its sha256"
    return True, ""


def list_checkpoints(folder: Path, *, deep: bool = False) -> list[CheckpointInfo]:
    """Every ``checkpoint-<step>`` folder under ``folder`` (a job folder or its
    ``checkpoints/``), newest (highest step) first, each with its verification result."""
    root = _checkpoints_root(folder)
    found: list[tuple[int, Path]] = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    for entry in entries:
        match = _FOLDER.match(entry.name)
        if match and entry.is_dir():
            found.append((int(match.group(1)), entry))
    found.sort(key=lambda item: item[0], reverse=True)
    out = []
    for step, path in found:
        ok, why = verify_checkpoint(path, deep=deep)
        out.append(CheckpointInfo(step, path, ok, why))
    return out


def latest_complete(folder: Path, *, deep: bool = True) -> CheckpointInfo | None:
    """The newest complete checkpoint, or None. With ``deep`` only the candidates that pass
    the cheap size check are hashed, newest first, until one verifies."""
    for info in list_checkpoints(folder, deep=False):
        if not info.complete:
            continue
        if not deep:
            return info
        ok, why = verify_checkpoint(info.path, deep=True)
        if ok:
            return info
    return None


def write_manifest(checkpoint_dir: Path, step: int) -> dict[str, Any]:
    """Hash every file under ``checkpoint_dir`` (except the manifest) and write the manifest
    atomically. Call it after all files are written; returns the manifest."""
    checkpoint_dir = Path(checkpoint_dir)
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(checkpoint_dir.rglob("*")):
        if not path.is_file() or (path.name == MANIFEST_NAME and path.parent == checkpoint_dir):
            continue
        if path.name.endswith(".part"):
            continue
        name = path.relative_to(checkpoint_dir).as_posix()
        files[name] = {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
    manifest = {"version": MANIFEST_VERSION, "step": int(step), "files": files}
    atomic_write_text(checkpoint_dir / MANIFEST_NAME, json.dumps(manifest, indent=1,
                                                                 sort_keys=True))
    return manifest
