"""``resources/comfyui/release.toml``: the pinned ComfyUI release and optional node packs.

``ISENGARD_COMFY_RELEASE`` points at another file of the same shape (tests, or a developer
trying a newer release).
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ENV_RELEASE", "ComfyRelease", "NodePack", "ReleaseError", "load_release",
           "release_file"]

ENV_RELEASE = "ISENGARD_COMFY_RELEASE"
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEX = re.compile(r"^[0-9a-f]*$")


class ReleaseError(ValueError):
    """The release file is missing or wrong; the message names the file and field."""


@dataclass(frozen=True)
class NodePack:
    """A custom-node pack: cloned at ``commit`` into ``custom_nodes/<name>`` when ticked."""

    name: str
    repo: str
    commit: str
    purpose: str

    @property
    def archive_url(self) -> str:
        """GitHub's zip of the pinned commit."""
        return f"{self.repo.rstrip('/')}/archive/{self.commit}.zip"

    @property
    def archive_name(self) -> str:
        return f"{self.name}-{self.commit[:12]}.zip"


@dataclass(frozen=True)
class ComfyRelease:
    tag: str
    commit: str
    url: str
    archive: str
    sha256: str
    node_packs: tuple[NodePack, ...] = ()


def release_file() -> Path:
    override = os.environ.get(ENV_RELEASE, "").strip()
    if override:
        return Path(override).expanduser()
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "resources" / "comfyui" / "release.toml"
    return Path(__file__).resolve().parents[3] / "resources" / "comfyui" / "release.toml"


def load_release(path: Path | None = None) -> ComfyRelease:
    """Parse the release file; :class:`ReleaseError` names what is wrong."""
    path = release_file() if path is None else path
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReleaseError(f"{path} is missing: this build of the app cannot install "
                           "ComfyUI") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ReleaseError(f"{path} cannot be read: {exc}") from None
    if data.get("format") != 1:
        raise ReleaseError(f"{path}: field 'format' is {data.get('format')!r}, this app reads 1")
    rel = data.get("release")
    if not isinstance(rel, dict):
        raise ReleaseError(f"{path}: the [release] table is missing")

    def text(table: dict[str, object], key: str, where: str, required: bool = True) -> str:
        value = table.get(key, "")
        if not isinstance(value, str) or (required and not value.strip()):
            raise ReleaseError(f"{path}: field '{where}.{key}' is missing or not text")
        return value.strip()

    tag = text(rel, "tag", "release")
    if not _TAG.match(tag):
        raise ReleaseError(f"{path}: field 'release.tag' {tag!r} is not a plain tag name "
                           "(letters, digits, '.', '_', '-')")
    archive = text(rel, "archive", "release")
    if "/" in archive or "\\" in archive or archive in (".", ".."):
        raise ReleaseError(f"{path}: field 'release.archive' {archive!r} must be a file name")
    sha = text(rel, "sha256", "release", required=False).lower()
    if sha and (len(sha) != 64 or not _HEX.match(sha)):
        raise ReleaseError(f"{path}: field 'release.sha256' is not 64 hex digits (or \"\")")
    commit = text(rel, "commit", "release").lower()
    if not _HEX.match(commit) or len(commit) < 7:
        raise ReleaseError(f"{path}: field 'release.commit' is not a git commit id")
    packs = []
    raw = data.get("custom_nodes", [])
    if not isinstance(raw, list):
        raise ReleaseError(f"{path}: 'custom_nodes' must be a list of tables")
    for n, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise ReleaseError(f"{path}: custom_nodes[{n}] is not a table")
        where = f"custom_nodes[{n}]"
        name = text(entry, "name", where)
        if not _TAG.match(name):
            raise ReleaseError(f"{path}: field '{where}.name' {name!r} is not a plain folder "
                               "name")
        packs.append(NodePack(name, text(entry, "repo", where),
                              text(entry, "commit", where, required=False),
                              text(entry, "for", where, required=False)))
    return ComfyRelease(tag, commit, text(rel, "url", "release"), archive, sha, tuple(packs))
