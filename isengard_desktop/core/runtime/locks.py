"""Where the committed lock files live, and what each lock installs from.

The locks are ``resources/runtime/<device>.txt`` (``uv pip compile --generate-hashes`` output)
with ``resources/runtime/locks.toml`` naming each lock's package index. Everything reads them
through :func:`lock_file` and :func:`lock_sources`, so tests (and a developer trying a new
lock) can point ``ISENGARD_RUNTIME_LOCKS`` at another folder holding the same file names.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .status import RuntimeDevice

__all__ = ["ENV_LOCKS", "LockSources", "lock_dir", "lock_file", "lock_packages", "lock_sha256",
           "lock_note", "lock_sources"]

ENV_LOCKS = "ISENGARD_RUNTIME_LOCKS"
_REQ_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def lock_dir() -> Path:
    """The folder holding ``<device>.txt`` and ``locks.toml``: ``$ISENGARD_RUNTIME_LOCKS``, else
    the bundle's or the checkout's ``resources/runtime``."""
    override = os.environ.get(ENV_LOCKS, "").strip()
    if override:
        return Path(override).expanduser()
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "resources" / "runtime"
    return Path(__file__).resolve().parents[3] / "resources" / "runtime"


def _entry(device: RuntimeDevice | str, windows: bool | None = None) -> dict[str, object]:
    """``locks.toml``'s ``[devices.<device>]`` table, or its ``.windows`` sub-table on Windows
    (empty when the file or the entry is missing)."""
    try:
        data = tomllib.loads((lock_dir() / "locks.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    devices = data.get("devices")
    entry = devices.get(RuntimeDevice(device).value) if isinstance(devices, dict) else None
    if not isinstance(entry, dict):
        return {}
    on_windows = sys.platform == "win32" if windows is None else windows
    if on_windows:
        sub = entry.get("windows")
        return sub if isinstance(sub, dict) else {}
    return entry


def lock_file(device: RuntimeDevice | str, *, windows: bool | None = None) -> Path:
    """The hashed requirement file for ``device`` on this platform (``locks.toml``'s ``file``;
    ``<device>.txt`` when the table does not name one). It may not exist: locks served only by
    PyTorch's own index are not compiled here (``compiled = false``, see ``packaging/README``)."""
    name = _entry(device, windows).get("file")
    if not isinstance(name, str) or not name:
        name = f"{RuntimeDevice(device).value}{'-windows' if windows else ''}.txt"
    return lock_dir() / name


def lock_note(device: RuntimeDevice | str, *, windows: bool | None = None) -> str:
    """``locks.toml``'s plain-words notes for ``device`` ("" when there are none)."""
    notes = _entry(device, windows).get("notes")
    return " ".join(notes.split()) if isinstance(notes, str) else ""


def lock_sha256(path: Path) -> str:
    """SHA-256 of a lock file ("" when it cannot be read)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def lock_packages(path: Path) -> list[tuple[str, str]]:
    """``(name, version)`` of every pinned requirement in a lock, in file order."""
    out: list[tuple[str, str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _REQ_LINE.match(line.strip())
        if match:
            out.append((match.group(1), match.group(2)))
    return out


@dataclass(frozen=True)
class LockSources:
    """Where a lock's packages come from online.

    Attributes:
        index_url: the primary index ("" = uv's default, PyPI).
        extra_index_urls: further indexes (PyTorch's own index for CUDA/ROCm builds).
        find_links: local or remote folders of wheels.
    """

    index_url: str = ""
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()

    def uv_args(self) -> list[str]:
        args: list[str] = []
        if self.index_url:
            args += ["--index-url", self.index_url]
        for url in self.extra_index_urls:
            args += ["--extra-index-url", url]
        if self.extra_index_urls:
            # PyTorch's indexes also serve numpy, pillow… at other versions: take each pinned
            # package from whichever index has that version (the hashes still decide)
            args += ["--index-strategy", "unsafe-best-match"]
        for link in self.find_links:
            args += ["--find-links", link]
        return args


def lock_sources(device: RuntimeDevice | str, *, windows: bool | None = None) -> LockSources:
    """Where ``device``'s packages come from online: ``locks.toml``'s ``index_urls`` (the first
    is the index, the rest extra indexes) and ``find_links``; uv's defaults when absent."""
    entry = _entry(device, windows)

    def strings(key: str) -> tuple[str, ...]:
        value = entry.get(key)
        if isinstance(value, str):
            return (value,) if value else ()
        if isinstance(value, list):
            return tuple(v for v in value if isinstance(v, str) and v)
        return ()

    urls = strings("index_urls")
    return LockSources(index_url=urls[0] if urls else "", extra_index_urls=urls[1:],
                       find_links=strings("find_links"))
