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
           "lock_sources"]

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


def lock_file(device: RuntimeDevice | str) -> Path:
    """The hashed requirement file for ``device`` (it may not exist: see ``packaging/README``)."""
    return lock_dir() / f"{RuntimeDevice(device).value}.txt"


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
        for link in self.find_links:
            args += ["--find-links", link]
        return args


def lock_sources(device: RuntimeDevice | str) -> LockSources:
    """The index settings for ``device`` from ``locks.toml`` (a table per device with
    ``index_url`` / ``extra_index_url(s)`` / ``find_links``); defaults when absent."""
    path = lock_dir() / "locks.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return LockSources()
    table = data.get(RuntimeDevice(device).value)
    if not isinstance(table, dict):
        locks = data.get("locks")
        table = locks.get(RuntimeDevice(device).value) if isinstance(locks, dict) else None
    if not isinstance(table, dict):
        return LockSources()

    def strings(*keys: str) -> tuple[str, ...]:
        out: list[str] = []
        for key in keys:
            value = table.get(key)
            if isinstance(value, str) and value:
                out.append(value)
            elif isinstance(value, list):
                out += [v for v in value if isinstance(v, str) and v]
        return tuple(out)

    index = table.get("index_url") or table.get("index") or ""
    return LockSources(index_url=index if isinstance(index, str) else "",
                       extra_index_urls=strings("extra_index_url", "extra_index_urls"),
                       find_links=strings("find_links"))
