"""A job's dataset: the exact list of photos (path + caption) it trains on (issue 11, item 3).

The app writes ``jobs/<id>/dataset.json`` from the database when the job first starts
(:func:`write_dataset_list`); every trainer reads that list (:func:`read_dataset_list`) and
never scans a folder, so a photo on disk without a row (an import killed half-way, a file
copied in by hand) is never trained on, and a resumed job trains on the list saved at its
start. External tools read a folder, so :func:`stage_dataset` (the one staging function of
the diffusion-pipe, ai-toolkit and kohya backends) hard-links (or copies) the listed photos
into a job-local folder with ``<stem>.txt`` captions made by the backend's caption rule.

Format (version 2; version 1 had no crops)::

    {"version": 2, "images": [{"path": "/abs/photo-1a2b3c4d.jpg", "caption": "...",
                               "crop": {"x": 10, "y": 0, "width": 800, "height": 1000}}, ...]}

``crop`` (optional; issue 15 item 3) is the photo's face-centred crop in pixels of the stored
(upright) photo: the built-in trainer crops to it before bucketing, and :func:`stage_dataset`
writes a cropped copy in place of the link. The photo's own file is never changed.

Captions are as stored (the trigger word is added by each trainer's own rule). Qt-free and
torch-free: the built-in trainer child imports it too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..dataset.crops import CropRect
from ..fsutil import atomic_output, atomic_write_text, link_or_copy
from .spec import SpecError

__all__ = ["DATASET_LIST_NAME", "DATASET_LIST_VERSION", "DatasetEntry", "cropped_name",
           "dataset_list_path", "entries_from_folder", "read_dataset_list", "stage_dataset",
           "write_cropped", "write_dataset_list"]

DATASET_LIST_NAME = "dataset.json"
DATASET_LIST_VERSION = 2
# what entries_from_folder picks up (the importer stores only these)
_FOLDER_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})


@dataclass(frozen=True)
class DatasetEntry:
    """One photo of a job's dataset: its absolute path, its caption as stored and its crop
    (None: the whole photo)."""

    path: str
    caption: str = ""
    crop: CropRect | None = None

    def to_json(self) -> dict[str, object]:
        item: dict[str, object] = {"path": os.fspath(self.path), "caption": self.caption}
        if self.crop is not None:
            item["crop"] = self.crop.to_json()
        return item


def dataset_list_path(job_dir: str | Path) -> Path:
    return Path(job_dir) / DATASET_LIST_NAME


def write_dataset_list(job_dir: str | Path, entries: Iterable[DatasetEntry]) -> Path:
    """Write the job's list atomically; returns its path."""
    path = dataset_list_path(job_dir)
    images = [e.to_json() for e in entries]
    atomic_write_text(path, json.dumps({"version": DATASET_LIST_VERSION, "images": images},
                                       indent=1, ensure_ascii=False) + "\n")
    return path


def read_dataset_list(job_dir: str | Path) -> list[DatasetEntry]:
    """The job's photos, in the order written. :class:`SpecError` naming the file (and the
    field) when it is missing, unreadable, of a newer version, malformed or empty."""
    path = dataset_list_path(job_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SpecError(f"{DATASET_LIST_NAME}: {path} is missing (the app writes the job's "
                        "photo list when the job starts)") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpecError(f"{DATASET_LIST_NAME}: {path} cannot be read: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise SpecError(f"{DATASET_LIST_NAME}: {path} has no \"images\" list")
    version = data.get("version")
    if not isinstance(version, int) or version > DATASET_LIST_VERSION:
        raise SpecError(f"{DATASET_LIST_NAME}: {path} has version {version!r}; this app "
                        f"reads version {DATASET_LIST_VERSION}")
    entries = []
    for index, item in enumerate(data["images"]):
        if (not isinstance(item, dict) or not isinstance(item.get("path"), str)
                or not item["path"] or not isinstance(item.get("caption", ""), str)):
            raise SpecError(f"{DATASET_LIST_NAME}: images[{index}] in {path} needs a \"path\" "
                            "and a text \"caption\"")
        crop = None
        if item.get("crop") is not None:
            try:
                crop = CropRect.from_json(item["crop"], f"images[{index}].crop")
            except ValueError as exc:
                raise SpecError(f"{DATASET_LIST_NAME}: {exc} (in {path})") from exc
        entries.append(DatasetEntry(item["path"], item.get("caption", ""), crop))
    if not entries:
        raise SpecError(f"{DATASET_LIST_NAME}: {path} lists no photos; add photos to the "
                        "character first")
    return entries


def entries_from_folder(folder: str | Path) -> list[DatasetEntry]:
    """The photos directly in ``folder`` (sorted by name) with their ``<stem>.txt`` captions:
    for datasets that are no character's (the self-test, benchmarks, tests that run a
    trainer without the app). The app's jobs never use it: their list comes from the
    database."""
    from ..dataset.captions import read_sidecar

    entries = []
    for path in sorted(Path(folder).iterdir(), key=lambda p: p.name):
        if path.suffix.lower() in _FOLDER_SUFFIXES and path.is_file():
            try:
                caption = read_sidecar(path) or ""
            except (OSError, ValueError):
                caption = ""
            entries.append(DatasetEntry(str(path.resolve()), caption))
    return entries


def stage_dataset(entries: Iterable[DatasetEntry], target: Path,
                  caption_of: Callable[[str], str],
                  suffixes: Iterable[str] | None = None) -> dict[Path, str]:
    """Hard-link (or copy) the listed photos into ``target`` for an external tool and return
    the caption files to write there (``<stem>.txt`` with ``caption_of(caption)`` and a
    newline; only those that differ from what is there, so a tool's cache keyed on them stays
    valid). A photo with a crop is staged as a cropped copy instead (:func:`cropped_name`:
    the crop is in its name, so a changed crop is a new file and an unchanged one is not
    written again). Files of an earlier staging that are not in the list are removed (never
    a folder: diffusion-pipe keeps its latent cache in ``target/cache``). ``suffixes``: only
    entries with these extensions (lower case) are staged. Two photos with one file name
    (from different folders) get ``-2``, ``-3``… stems. :class:`SpecError` naming the file
    when a listed photo is gone, cannot be read or its crop does not fit it."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    allowed = None if suffixes is None else frozenset(s.lower() for s in suffixes)
    captions: dict[Path, str] = {}
    wanted: set[str] = set()
    for entry in entries:
        path = Path(entry.path)
        if allowed is not None and path.suffix.lower() not in allowed:
            continue
        if not path.is_file():
            raise SpecError(f"{DATASET_LIST_NAME}: the photo {path} is gone; remove it from "
                            "the character or import it again")
        base, suffix = path.stem, path.suffix
        if entry.crop is not None:
            base, suffix = cropped_name(path, entry.crop)
        stem, n = base, 1
        while f"{stem}{suffix}" in wanted:
            n += 1
            stem = f"{base}-{n}"
        dest = target / f"{stem}{suffix}"
        wanted.update((dest.name, f"{stem}.txt"))
        if entry.crop is not None:
            if not dest.is_file():
                write_cropped(path, entry.crop, dest)
        elif not (dest.exists() and os.path.samefile(path, dest)):
            link_or_copy(path, dest)
        text = caption_of(entry.caption) + "\n"
        sidecar = target / f"{stem}.txt"
        try:
            unchanged = sidecar.read_text(encoding="utf-8") == text
        except (OSError, UnicodeDecodeError):
            unchanged = False
        if not unchanged:
            captions[sidecar] = text
    for path in target.iterdir():
        if path.name not in wanted and path.is_file():
            path.unlink()   # our own link or copy of a photo no longer in the list
    return captions


def cropped_name(path: Path, crop: CropRect) -> tuple[str, str]:
    """(stem, suffix) of a photo's cropped copy: the crop in the stem; JPEG stays JPEG
    (quality 95, no chroma subsampling), anything else becomes a lossless PNG."""
    suffix = ".jpg" if path.suffix.lower() in (".jpg", ".jpeg") else ".png"
    return f"{path.stem}_crop{crop.x}-{crop.y}-{crop.width}x{crop.height}", suffix


def write_cropped(source: Path, crop: CropRect, dest: Path) -> None:
    """Write ``source`` (made upright, as the app stores and shows it) cut to ``crop`` to
    ``dest`` atomically, keeping its colour profile. :class:`SpecError` naming the file when
    it cannot be read or the crop does not fit it."""
    from ..dataset.decode import ImageProblem, load_pixels, open_image, upright_rgb

    try:
        with open(source, "rb") as fh:
            im = open_image(fh, ext=source.suffix)
            load_pixels(im)
            icc = im.info.get("icc_profile")
            img = upright_rgb(im)
    except (OSError, ImageProblem) as exc:
        raise SpecError(f"{DATASET_LIST_NAME}: the photo {source} cannot be read: {exc}"
                        ) from exc
    problem = crop.problem(*img.size)
    if problem:
        raise SpecError(f"{DATASET_LIST_NAME}: {source}: {problem}")
    out = img.crop(crop.box())
    extra = {"icc_profile": icc} if icc else {}
    with atomic_output(dest) as fh:
        if dest.suffix == ".jpg":
            out.save(fh, format="JPEG", quality=95, subsampling=0, **extra)
        else:
            out.save(fh, format="PNG", compress_level=1, **extra)
