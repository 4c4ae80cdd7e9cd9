"""The model catalogue: which files each family needs, where they come from, where they go.

The data lives in ``resources/models/catalogue.toml`` (versioned, edited without code). This
module reads it into frozen dataclasses, checks it (a broken entry raises
:class:`CatalogueError` naming the file, the entry and the field) and answers "which of these
files does the user already have?" for the linked model folders, so a file is never
downloaded twice: a file counts as present when one of its accepted names is found anywhere in
a linked folder and, when known, its size matches — and, when asked to check hashes, its
SHA-256 too. Qt-free; :func:`find_present` reads the disk (run it off the UI thread).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .downloads.fetch import hash_file

__all__ = [
    "CATALOGUE_FILE", "COMFY_FOLDERS", "Catalogue", "CatalogueError", "CatalogueFile", "Extra",
    "Family", "Present", "RuntimeModel", "VideoSet", "catalogue_file", "find_present", "load_catalogue",
    "parse_catalogue",
]

CATALOGUE_FILE = Path(__file__).resolve().parents[2] / "resources" / "models" / "catalogue.toml"


def catalogue_file() -> Path:
    """The shipped catalogue (source tree or a PyInstaller bundle, as ``ui/theme.py`` finds
    ``resources/``)."""
    import sys

    bundle = getattr(sys, "_MEIPASS", None)
    return Path(bundle) / "resources" / "models" / "catalogue.toml" if bundle else CATALOGUE_FILE
SCHEMA = 1
COMFY_FOLDERS = frozenset({
    "checkpoints", "diffusion_models", "text_encoders", "vae", "loras", "controlnet",
    "clip_vision", "ipadapter", "upscale_models", "ultralytics/bbox", "ultralytics/segm",
    "sams", "embeddings",
})
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ID = re.compile(r"[a-z0-9][a-z0-9._-]*")


class CatalogueError(ValueError):
    """The catalogue file is broken; the message names the file, the entry and the field."""


@dataclass(frozen=True)
class RuntimeModel:
    """A model file the trainer runtime's installer brings (a package pinned in
    ``resources/runtime/requirements.in``), never downloaded by the app: ``package`` is
    ``name==version``, ``file`` its path inside the installed package ("" for weights built
    into the library), ``licence`` the weights' and ``runtime_licence`` the library's."""

    id: str
    name: str
    package: str
    file: str
    used_for: str
    licence: str
    runtime_licence: str
    approx_size: str
    non_commercial: bool


@dataclass(frozen=True)
class CatalogueFile:
    """One downloadable file. ``size`` 0 / ``sha256`` "" mean "not known" (see the TOML)."""

    id: str
    name: str
    folder: str
    urls: tuple[str, ...]
    page: str
    sha256: str
    size: int
    approx_size: str
    licence: str
    non_commercial: bool
    gated: bool
    min_vram_gb: float
    accepted_names: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Every file name that counts as this file (its own name first)."""
        return (self.name, *self.accepted_names)

    @property
    def relative_path(self) -> str:
        """Where it goes inside a ComfyUI-layout models folder."""
        return f"{self.folder}/{self.name}"


@dataclass(frozen=True)
class Family:
    id: str
    label: str
    train: tuple[str, ...]
    generate: tuple[str, ...]
    generate_low_vram: tuple[str, ...]
    min_vram_train_gb: float
    min_vram_generate_gb: float


@dataclass(frozen=True)
class Extra:
    """Files a Generate toggle needs (ControlNet, IP-Adapter, FaceDetailer, upscale)."""

    id: str
    toggle: str
    label: str
    families: tuple[str, ...]
    files: tuple[str, ...]


@dataclass(frozen=True)
class VideoSet:
    """The files one Video tab model needs (issue 18), offered in the wizard's "Video
    (optional)" group: ``workflows`` are the ``workflows/manifest.yaml`` ids it serves, and
    ``files`` match those workflows' loader nodes file for file."""

    id: str
    label: str
    files: tuple[str, ...]
    min_vram_gb: float
    workflows: tuple[str, ...]


LOW_VRAM_GB = 16      # cards with this much or less get a family's ``generate_low_vram`` set


@dataclass(frozen=True)
class Catalogue:
    schema: int
    version: str
    families: Mapping[str, Family]
    files: Mapping[str, CatalogueFile]
    extras: tuple[Extra, ...]
    runtime_models: tuple[RuntimeModel, ...] = ()
    video_sets: Mapping[str, VideoSet] = field(default_factory=dict)

    def files_for(self, family: str, purpose: str, vram_gb: float | None = None
                  ) -> list[CatalogueFile]:
        """The files ``family`` needs to ``train`` or ``generate`` (on a card with ``vram_gb``:
        ≤ 16 GB takes the low-VRAM set, e.g. the fp8 T5, where the family has one)."""
        fam = self.families[family]
        if purpose == "train":
            ids = fam.train
        elif purpose == "generate":
            low = vram_gb is not None and vram_gb <= LOW_VRAM_GB and fam.generate_low_vram
            ids = fam.generate_low_vram if low else fam.generate
        else:
            raise ValueError(f"purpose must be 'train' or 'generate', not {purpose!r}")
        return [self.files[i] for i in ids]

    def extras_for(self, family: str) -> list[Extra]:
        return [e for e in self.extras if family in e.families]

    def video_set_for(self, workflow: str) -> VideoSet | None:
        """The video set that serves ``workflow`` (a manifest id such as ``wan21-i2v``)."""
        return next((v for v in self.video_sets.values() if workflow in v.workflows), None)


# -- reading and checking ------------------------------------------------------------------------
class _Checker:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, field: str, why: str) -> CatalogueError:
        return CatalogueError(f"{self.source}: {where}: field '{field}' {why}")

    def get(self, entry: Mapping[str, Any], where: str, field: str, kind: type | tuple[type, ...],
            default: Any = ...) -> Any:
        if field not in entry:
            if default is ...:
                raise self.fail(where, field, "is missing")
            return default
        value = entry[field]
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            raise self.fail(where, field, f"must be a number, not {value!r}")
        if not isinstance(value, kind):
            name = kind.__name__ if isinstance(kind, type) else "number"
            raise self.fail(where, field, f"must be a {name}, not {value!r}")
        return value

    def strings(self, entry: Mapping[str, Any], where: str, field: str,
                default: Any = ...) -> tuple[str, ...]:
        values = self.get(entry, where, field, list, default)
        if not all(isinstance(v, str) and v for v in values):
            raise self.fail(where, field, "must be a list of non-empty strings")
        return tuple(values)


def _entries(data: Mapping[str, Any], key: str, check: _Checker) -> list[Mapping[str, Any]]:
    entries = data.get(key, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise CatalogueError(f"{check.source}: '{key}' must be a list of [[{key}]] tables")
    return entries


def _file(entry: Mapping[str, Any], index: int, check: _Checker) -> CatalogueFile:
    raw_id = entry.get("id")
    where = f"file '{raw_id}'" if isinstance(raw_id, str) else f"file #{index + 1}"
    file_id = check.get(entry, where, "id", str)
    if not _ID.fullmatch(file_id):
        raise check.fail(where, "id", "must be lower-case letters, digits, '.', '_' or '-'")
    name = check.get(entry, where, "name", str)
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise check.fail(where, "name", f"must be a plain file name, not {name!r}")
    folder = check.get(entry, where, "folder", str)
    if folder not in COMFY_FOLDERS:
        raise check.fail(where, "folder", f"must be a ComfyUI models folder "
                         f"({', '.join(sorted(COMFY_FOLDERS))}), not {folder!r}")
    urls = check.strings(entry, where, "urls")
    if not urls:
        raise check.fail(where, "urls", "must name at least one URL")
    for url in urls:
        if urlsplit(url).scheme != "https" or not urlsplit(url).hostname:
            raise check.fail(where, "urls", f"must hold https URLs, not {url!r}")
    sha256 = check.get(entry, where, "sha256", str)
    if sha256 and not _HEX64.fullmatch(sha256):
        raise check.fail(where, "sha256", "must be 64 lower-case hex digits, or \"\" when not "
                         f"known (got {sha256!r})")
    size = check.get(entry, where, "size", int)
    if size < 0:
        raise check.fail(where, "size", f"must be 0 (unknown) or more, not {size}")
    vram = check.get(entry, where, "min_vram_gb", (int, float))
    if vram < 0:
        raise check.fail(where, "min_vram_gb", f"must be 0 or more, not {vram}")
    accepted = check.strings(entry, where, "accepted_names", [])
    return CatalogueFile(
        id=file_id, name=name, folder=folder, urls=urls,
        page=check.get(entry, where, "page", str, ""), sha256=sha256, size=size,
        approx_size=check.get(entry, where, "approx_size", str, ""),
        licence=check.get(entry, where, "licence", str),
        non_commercial=check.get(entry, where, "non_commercial", bool),
        gated=check.get(entry, where, "gated", bool), min_vram_gb=float(vram),
        accepted_names=accepted)


def parse_catalogue(data: Mapping[str, Any], source: str = "catalogue") -> Catalogue:
    """Check and build a :class:`Catalogue` from parsed TOML (``source`` names it in errors)."""
    check = _Checker(source)
    schema = check.get(data, "top level", "schema", int)
    if schema != SCHEMA:
        raise check.fail("top level", "schema", f"is {schema}; this app reads schema {SCHEMA}")
    version = check.get(data, "top level", "version", str)
    files: dict[str, CatalogueFile] = {}
    for index, entry in enumerate(_entries(data, "files", check)):
        item = _file(entry, index, check)
        if item.id in files:
            raise check.fail(f"file '{item.id}'", "id", "is used by two files")
        files[item.id] = item

    def known(where: str, field: str, ids: tuple[str, ...]) -> tuple[str, ...]:
        for file_id in ids:
            if file_id not in files:
                raise check.fail(where, field, f"names an unknown file '{file_id}'")
        return ids

    families: dict[str, Family] = {}
    for index, entry in enumerate(_entries(data, "families", check)):
        raw_id = entry.get("id")
        where = f"family '{raw_id}'" if isinstance(raw_id, str) else f"family #{index + 1}"
        fam_id = check.get(entry, where, "id", str)
        if fam_id in families:
            raise check.fail(where, "id", "is used by two families")
        families[fam_id] = Family(
            id=fam_id, label=check.get(entry, where, "label", str),
            train=known(where, "train", check.strings(entry, where, "train")),
            generate=known(where, "generate", check.strings(entry, where, "generate")),
            generate_low_vram=known(where, "generate_low_vram",
                                    check.strings(entry, where, "generate_low_vram", [])),
            min_vram_train_gb=float(check.get(entry, where, "min_vram_train_gb", (int, float))),
            min_vram_generate_gb=float(
                check.get(entry, where, "min_vram_generate_gb", (int, float))))
    extras: list[Extra] = []
    for index, entry in enumerate(_entries(data, "extras", check)):
        raw_id = entry.get("id")
        where = f"extra '{raw_id}'" if isinstance(raw_id, str) else f"extra #{index + 1}"
        fams = check.strings(entry, where, "families")
        for fam in fams:
            if fam not in families:
                raise check.fail(where, "families", f"names an unknown family '{fam}'")
        extras.append(Extra(
            id=check.get(entry, where, "id", str), toggle=check.get(entry, where, "toggle", str),
            label=check.get(entry, where, "label", str), families=fams,
            files=known(where, "files", check.strings(entry, where, "files"))))
    runtime: list[RuntimeModel] = []
    for index, entry in enumerate(_entries(data, "runtime_models", check)):
        raw_id = entry.get("id")
        where = (f"runtime model '{raw_id}'" if isinstance(raw_id, str)
                 else f"runtime model #{index + 1}")
        package = check.get(entry, where, "package", str)
        if "==" not in package:
            raise check.fail(where, "package", f"must pin a version (name==X), not {package!r}")
        runtime.append(RuntimeModel(
            id=check.get(entry, where, "id", str), name=check.get(entry, where, "name", str),
            package=package, file=check.get(entry, where, "file", str, ""),
            used_for=check.get(entry, where, "used_for", str),
            licence=check.get(entry, where, "licence", str),
            runtime_licence=check.get(entry, where, "runtime_licence", str),
            approx_size=check.get(entry, where, "approx_size", str, ""),
            non_commercial=check.get(entry, where, "non_commercial", bool)))
    video_sets = _video_sets(data, check, known, families)
    return Catalogue(schema, version, families, files, tuple(extras), tuple(runtime), video_sets)


def _video_sets(data: Mapping[str, Any], check: _Checker,
                known: Callable[[str, str, tuple[str, ...]], tuple[str, ...]],
                families: Mapping[str, Family]) -> dict[str, VideoSet]:
    sets: dict[str, VideoSet] = {}
    served: dict[str, str] = {}
    for index, entry in enumerate(_entries(data, "video_sets", check)):
        raw_id = entry.get("id")
        where = f"video set '{raw_id}'" if isinstance(raw_id, str) else f"video set #{index + 1}"
        set_id = check.get(entry, where, "id", str)
        if not _ID.fullmatch(set_id):
            raise check.fail(where, "id", "must be lower-case letters, digits, '.', '_' or '-'")
        if set_id in sets:
            raise check.fail(where, "id", "is used by two video sets")
        if set_id in families:
            # "base_models:<id>" ticks a family or a video set: the ids must not clash
            raise check.fail(where, "id", "is a family's id too")
        files = known(where, "files", check.strings(entry, where, "files"))
        if not files:
            raise check.fail(where, "files", "must name at least one file")
        vram = check.get(entry, where, "min_vram_gb", (int, float))
        if vram < 0:
            raise check.fail(where, "min_vram_gb", f"must be 0 or more, not {vram}")
        workflows = check.strings(entry, where, "workflows")
        if not workflows:
            raise check.fail(where, "workflows", "must name at least one workflow")
        for workflow in workflows:
            if workflow in served:
                raise check.fail(where, "workflows", f"names '{workflow}', which video set "
                                 f"'{served[workflow]}' serves already")
            served[workflow] = set_id
        sets[set_id] = VideoSet(id=set_id, label=check.get(entry, where, "label", str),
                                files=files, min_vram_gb=float(vram), workflows=workflows)
    return sets


def load_catalogue(path: Path | None = None) -> Catalogue:
    """Read and check the catalogue file (default: the shipped one; blocking, a few ms)."""
    path = path or catalogue_file()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogueError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"{path}: is not valid TOML ({exc})") from exc
    return parse_catalogue(data, str(path))


# -- what the user already has -------------------------------------------------------------------
@dataclass(frozen=True)
class Present:
    """A catalogue file found on disk; ``how`` is ``hash`` (SHA-256 matched), ``size`` (name and
    exact size matched) or ``name`` (name matched; neither size nor hash is known)."""

    file: CatalogueFile
    path: Path
    how: str


def _index_folders(folders: Iterable[Path], names: set[str]) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for root in folders:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for filename in filenames:
                if filename in names:
                    found.setdefault(filename, []).append(Path(dirpath) / filename)
    return found


def find_present(files: Iterable[CatalogueFile], folders: Iterable[Path], *,
                 check_hashes: bool = False,
                 hasher: Callable[[Path], str] | None = None) -> dict[str, Present]:
    """Which of ``files`` are already in ``folders`` (searched recursively), by catalogue id.

    A candidate is a file with one of the entry's accepted names. A known size must match
    exactly (a half-written copy never counts). With ``check_hashes`` a known SHA-256 must
    match too (hashing reads the whole file: run this off the UI thread); without it a name +
    size match is trusted. Blocking."""
    wanted = list(files)
    hash_of = hasher or (lambda p: hash_file(p).hexdigest())
    index = _index_folders(folders, {n for f in wanted for n in f.names})
    present: dict[str, Present] = {}
    for item in wanted:
        for name in item.names:
            for path in index.get(name, []):
                try:
                    size = path.stat().st_size
                except OSError:
                    continue
                if item.size and size != item.size:
                    continue
                if check_hashes and item.sha256:
                    if hash_of(path) != item.sha256:
                        continue
                    how = "hash"
                else:
                    how = "size" if item.size else "name"
                present[item.id] = Present(item, path, how)
                break
            if item.id in present:
                break
    return present
