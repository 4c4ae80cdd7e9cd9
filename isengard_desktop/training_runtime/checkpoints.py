"""Resumable checkpoints: ``checkpoints/checkpoint-<step>/`` with a manifest of sha256 sums.

A checkpoint folder is built under a temporary name and renamed into place only when every
file and the manifest are written and fsynced, so a crash leaves either no checkpoint or a
whole one. The manifest lists each file's size and sha256; :func:`verify` recomputes them, so
a checkpoint damaged later (a truncated file, a half-copied folder) is detected and skipped.

Pure stdlib (no torch): what goes into the files is the loop's business.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.fsutil import atomic_write_text, fsync_dir, fsync_file, replace

log = logging.getLogger("isengard.trainer.checkpoints")

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
_NAME = re.compile(r"^checkpoint-(\d+)$")
_TMP_PREFIX = ".tmp-checkpoint-"


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def checkpoint_path(root: Path, step: int) -> Path:
    return Path(root) / f"checkpoint-{step}"


def save(root: Path, step: int, writers: Mapping[str, Callable[[Path], None]],
         meta: Mapping[str, Any] | None = None) -> Checkpoint:
    """Write a checkpoint for ``step``: ``writers`` maps file name → function writing that
    file at the given path. Replaces an existing checkpoint of the same step."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{_TMP_PREFIX}{step}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        files: dict[str, dict[str, Any]] = {}
        for name, write in writers.items():
            if "/" in name or "\\" in name or name == MANIFEST:
                raise ValueError(f"bad checkpoint file name {name!r}")
            path = tmp / name
            write(path)
            fsync_file(path)  # opened for writing on Windows (FlushFileBuffers)
            files[name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
        manifest = {"version": MANIFEST_VERSION, "step": step, "files": files, **dict(meta or {})}
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
        fsync_dir(tmp)
        final = checkpoint_path(root, step)
        if final.exists():
            old = root / f"{_TMP_PREFIX}old-{step}-{os.getpid()}"
            replace(final, old)  # retried on Windows while a file in it is held open
            shutil.rmtree(old, ignore_errors=True)
        replace(tmp, final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Checkpoint(step, final)


def verify(path: Path, full: bool = True) -> tuple[bool, str]:
    """(ok, why not). ``full`` recomputes sha256 sums; otherwise only names and sizes."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
        if int(manifest.get("version", 0)) > MANIFEST_VERSION:
            return False, f"manifest version {manifest.get('version')} is newer than this app"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return False, f"no readable manifest ({exc.__class__.__name__})"
    for name, info in files.items():
        f = path / name
        try:
            size = f.stat().st_size
        except OSError:
            return False, f"{name} is missing"
        if size != info.get("bytes"):
            return False, f"{name} has {size} bytes, expected {info.get('bytes')}"
        if full and sha256_file(f) != info.get("sha256"):
            return False, f"{name} does not match its checksum"
    return True, ""


def list_checkpoints(root: Path) -> list[Checkpoint]:
    """Checkpoint folders under ``root``, newest step first (unverified)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        m = _NAME.match(child.name)
        if m and child.is_dir():
            found.append(Checkpoint(int(m.group(1)), child))
    return sorted(found, key=lambda c: c.step, reverse=True)


def newest_valid(root: Path, accept: Callable[[Checkpoint], str] | None = None,
                 on_skip: Callable[[Checkpoint, str], None] | None = None) -> Checkpoint | None:
    """The newest checkpoint that verifies (and that ``accept`` returns "" for; otherwise it
    returns why it is refused). Skipped ones are reported through ``on_skip``."""
    for ckpt in list_checkpoints(root):
        ok, why = verify(ckpt.path)
        if ok and accept is not None:
            why = accept(ckpt)
            ok = not why
        if ok:
            return ckpt
        log.warning("skipping %s: %s", ckpt.path.name, why)
        if on_skip is not None:
            on_skip(ckpt, why)
    return None


def prune(root: Path, keep: int) -> list[Path]:
    """Keep the newest ``keep`` complete checkpoints; delete older ones, broken ones and
    leftovers of interrupted saves. Returns what was removed.

    Checkpoints are the trainer's own intermediate files (not user data), so they are
    deleted outright rather than sent to the trash, which would only fill up with gigabytes.
    """
    root = Path(root)
    removed: list[Path] = []
    kept = 0
    for ckpt in list_checkpoints(root):
        ok, _ = verify(ckpt.path, full=False)
        if ok and kept < keep:
            kept += 1
            continue
        shutil.rmtree(ckpt.path, ignore_errors=True)
        removed.append(ckpt.path)
    if root.is_dir():
        for child in root.iterdir():
            if child.name.startswith(_TMP_PREFIX) and not child.name.endswith(f"-{os.getpid()}"):
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child)
    return removed
