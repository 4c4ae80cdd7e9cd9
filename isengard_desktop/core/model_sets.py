"""Per-family download sets for the wizard's "Base models" page and the tabs' "Get the …
base model" notices: which catalogue files a family needs (to train and to generate on this
card), their total size, the VRAM they need, their licences, and which families to tick for a
GPU of a given size; the same for the Video tab's model sets (``[[video_sets]]``, never ticked
by themselves). Qt-free; plain functions over a loaded :class:`Catalogue`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from loguru import logger

from .models_catalogue import (Catalogue, CatalogueError, CatalogueFile, Family, Present,
                               VideoSet, load_catalogue)

__all__ = ["FamilySet", "VideoSetFiles", "family_set", "family_sets", "file_size",
           "missing_files", "offer_for", "offer_text", "recommended_families",
           "shipped_catalogue", "size_text", "suggested_family", "video_offer",
           "video_set_files", "video_sets"]

_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(KB|MB|GB|TB)\s*", re.IGNORECASE)
_UNITS = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
ORDER = ("sd15", "sdxl", "flux-schnell", "flux-dev", "chroma")


def file_size(item: CatalogueFile) -> int:
    """Bytes: the exact size when the catalogue knows it, else its ``approx_size``
    ("6.94 GB", decimal units as model pages show them); 0 when neither is known."""
    if item.size:
        return item.size
    match = _SIZE.fullmatch(item.approx_size or "")
    if not match:
        return 0
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def size_text(n: int) -> str:
    """Decimal GB/MB as model pages print them ("6.9 GB", "335 MB")."""
    if n >= 10**9:
        return f"{n / 10**9:.1f} GB"
    return f"{max(1, round(n / 10**6))} MB"


class _FileGroup:
    """Totals and licences of a group of catalogue files (a family's or a video set's)."""

    files: tuple[CatalogueFile, ...]

    @property
    def total(self) -> int:
        return sum(file_size(f) for f in self.files)

    @property
    def licences(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.licence for f in self.files))

    @property
    def non_commercial(self) -> bool:
        return any(f.non_commercial for f in self.files)

    @property
    def gated(self) -> bool:
        return any(f.gated for f in self.files)

    def missing(self, present: dict[str, Present]) -> tuple[CatalogueFile, ...]:
        return tuple(f for f in self.files if f.id not in present)


@dataclass(frozen=True)
class FamilySet(_FileGroup):
    """What one family needs on this machine."""

    family: Family
    files: tuple[CatalogueFile, ...]
    low_vram: bool              # the generate set is the low-VRAM one (fp8 T5)


@dataclass(frozen=True)
class VideoSetFiles(_FileGroup):
    """What one Video tab model needs (its files resolved from the catalogue)."""

    video: VideoSet
    files: tuple[CatalogueFile, ...]


def video_set_files(catalogue: Catalogue, set_id: str) -> VideoSetFiles:
    video = catalogue.video_sets[set_id]
    return VideoSetFiles(video, tuple(catalogue.files[f] for f in video.files))


def video_sets(catalogue: Catalogue) -> list[VideoSetFiles]:
    """Every video set, in the catalogue's order."""
    return [video_set_files(catalogue, v) for v in catalogue.video_sets]


def family_set(catalogue: Catalogue, family: str, vram_gb: float | None) -> FamilySet:
    """The files to train ``family`` and generate with it on a card with ``vram_gb`` (the
    low-VRAM generate set where it applies), each file once."""
    fam = catalogue.families[family]
    generate = catalogue.files_for(family, "generate", vram_gb)
    files = {f.id: f for f in [*catalogue.files_for(family, "train"), *generate]}
    low = bool(fam.generate_low_vram) and [f.id for f in generate] == list(
        fam.generate_low_vram) and list(fam.generate_low_vram) != list(fam.generate)
    return FamilySet(fam, tuple(files.values()), low)


def family_sets(catalogue: Catalogue, vram_gb: float | None) -> list[FamilySet]:
    """Every family's set, in the usual order (SD 1.5 … Chroma)."""
    ids = sorted(catalogue.families, key=lambda f: (ORDER.index(f) if f in ORDER else 99, f))
    return [family_set(catalogue, f, vram_gb) for f in ids]


def recommended_families(vram_gb: float | None) -> set[str]:
    """Which families to tick for a GPU with ``vram_gb`` (None or 0: no usable GPU):
    ≥ 24 GB Flux dev; 12–24 GB SDXL and Flux schnell; under 12 GB SD 1.5 and SDXL; CPU SD 1.5.
    Cards sold as "24 GB" report a little less (an RTX 4090: 24564 MiB = 23.99 GiB), so the
    steps are taken half a GB early."""
    if not vram_gb:
        return {"sd15"}
    if vram_gb >= 23.5:
        return {"flux-dev"}
    if vram_gb >= 11.5:
        return {"sdxl", "flux-schnell"}
    return {"sd15", "sdxl"}


def missing_files(sets: Iterable[FamilySet | VideoSetFiles],
                  present: dict[str, Present]) -> list[CatalogueFile]:
    """The files of ``sets`` not present, each once (families share text encoders / VAEs)."""
    out: dict[str, CatalogueFile] = {}
    for s in sets:
        for f in s.missing(present):
            out.setdefault(f.id, f)
    return list(out.values())


def offer_text(catalogue: Catalogue, family: str, purpose: str = "train",
               vram_gb: float | None = None) -> str:
    """"Get the SDXL base model (6.9 GB)" for the tabs' notices: the size of what
    ``purpose`` ("train" or "generate") needs."""
    files = catalogue.files_for(family, purpose, vram_gb)
    label = catalogue.families[family].label
    return f"Get the {label} base model ({size_text(sum(file_size(f) for f in files))})"


@functools.cache
def shipped_catalogue() -> Catalogue | None:
    """The shipped catalogue, read once per process (a ~15 KB resource file, like the theme);
    None when it is broken (logged)."""
    try:
        return load_catalogue()
    except CatalogueError as exc:
        logger.error("the model catalogue cannot be used: {}", exc)
        return None


def suggested_family(vram_gb: float | None) -> str:
    """The family a "Get the … base model" notice offers when none is chosen: SDXL where the
    card is ticked for it, else what the card is ticked for (SD 1.5 without a GPU)."""
    ticked = recommended_families(vram_gb)
    return "sdxl" if "sdxl" in ticked else sorted(ticked)[0]


def offer_for(family: str | None, purpose: str = "train", vram_gb: float | None = None) -> str:
    """:func:`offer_text` with the shipped catalogue; "" for a family it does not know."""
    cat = shipped_catalogue()
    if cat is None or not family or family not in cat.families:
        return ""
    return offer_text(cat, family, purpose, vram_gb)


def video_offer(workflow: str) -> tuple[VideoSetFiles, str] | None:
    """The shipped catalogue's video set serving ``workflow`` and its size ("24.6 GB"), for
    the Video tab's "Get it" notice; None when no set serves it (or the catalogue is broken)."""
    cat = shipped_catalogue()
    video = cat.video_set_for(workflow) if cat is not None else None
    if cat is None or video is None:
        return None
    group = video_set_files(cat, video.id)
    return group, size_text(group.total)
