"""Dataset quality checks: each finding names one photo and what is wrong with it.

Checks: low resolution (short side under 512 px), extreme aspect ratio (over 2.5:1), very
blurry, exact duplicates (same sha256), near duplicates (perceptual hash within 6 bits), and
photos that cannot be opened at all ("unreadable", never an exception).

Blur measure: the photo is decoded at 512 px on its long side (never upscaled), turned to
grayscale, and the variance of its 4-neighbour Laplacian is taken. :data:`BLUR_THRESHOLD`
was calibrated on synthetic 600×800 images (random rectangles/ellipses/lines with and without
noise, 5 to 43 shapes; and a smooth "portrait" with fine hair lines and noise), 60 images:
the sharp ones scored 32.9 at least, the same images after a Gaussian blur of radius 3 px at full
size (≈2 px at the 512 px scale; visibly out of focus) scored 6.2 at most, radius 2 px at most
18.0. The threshold, 15, sits near the geometric mean of 6.2 and 32.9, so only clearly
out-of-focus photos are flagged; mildly soft ones pass. Sparse sharp pictures (a plain
background with 5 flat shapes) score as low as ~17, another reason not to go higher.
``tests/unit/test_checks.py`` repeats the calibration on fresh seeds. Known limit: heavy sensor
noise raises the score, so a noisy out-of-focus photo may pass.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

from isengard_desktop.core.dataset.decode import (
    exif_orientation,
    load_pixels,
    open_image,
    upright_rgb,
)
from isengard_desktop.core.dataset.importer import display_name
from isengard_desktop.core.training.presets import MIN_SHORT_SIDE
from isengard_desktop.core.types import Progress

MAX_ASPECT = 2.5
BLUR_THRESHOLD = 15.0
BLUR_LONG_SIDE = 512
NEAR_DUP_MAX_DISTANCE = 6
PROGRESS_LABEL = "Checking photos"

KINDS = (
    "unreadable",
    "low_resolution",
    "extreme_aspect",
    "blurry",
    "exact_duplicate",
    "near_duplicate",
)


@dataclass(frozen=True)
class CheckImage:
    """A dataset photo to check (``width``/``height`` as recorded; the file is the truth)."""

    id: int
    path: Path
    sha256: str
    width: int
    height: int


@dataclass(frozen=True)
class Finding:
    """One problem with one photo. ``kind`` is one of :data:`KINDS`."""

    image_id: int
    kind: str
    message: str


@dataclass(frozen=True)
class ImageStats:
    """What the checks measure on one decoded photo (size is upright, full resolution)."""

    width: int
    height: int
    sharpness: float
    phash: int  # 64-bit perceptual hash


def laplacian_variance(gray: Image.Image) -> float:
    """Variance of the 4-neighbour Laplacian of an ``L`` image (higher = sharper)."""
    a = np.asarray(gray, dtype=np.float64)
    if a.shape[0] < 3 or a.shape[1] < 3:
        return 0.0
    lap = a[:-2, 1:-1] + a[2:, 1:-1] + a[1:-1, :-2] + a[1:-1, 2:] - 4.0 * a[1:-1, 1:-1]
    return float(lap.var())


def sharpness(im: Image.Image) -> float:
    """Blur measure of an upright image: :func:`laplacian_variance` at 512 px long side."""
    gray = im.convert("L")
    w, h = gray.size
    scale = BLUR_LONG_SIDE / max(w, h)
    if scale < 1:
        gray = gray.resize(
            (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX
        )
    return laplacian_variance(gray)


def _phash_int(im: Image.Image) -> int:
    bits = imagehash.phash(im).hash.flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def analyse_image(path: Path) -> ImageStats:
    """Decode ``path`` (fast JPEG draft decode) and measure it. Raises on unreadable files."""
    with open(path, "rb") as fh:
        im = open_image(fh, ext=Path(path).suffix)
        width, height = im.size
        if exif_orientation(im) in (5, 6, 7, 8):
            width, height = height, width
        if im.format in ("JPEG", "MPO"):
            im.draft("RGB", (BLUR_LONG_SIDE, BLUR_LONG_SIDE))
        load_pixels(im)
        rgb = upright_rgb(im)
    w, h = rgb.size
    scale = BLUR_LONG_SIDE / max(w, h)
    if scale < 1:
        rgb = rgb.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX)
    return ImageStats(width, height, sharpness(rgb), _phash_int(rgb))


def _size_findings(img: CheckImage, stats: ImageStats) -> list[Finding]:
    out = []
    w, h = stats.width, stats.height
    short, long = min(w, h), max(w, h)
    if short < MIN_SHORT_SIDE:
        out.append(
            Finding(
                img.id,
                "low_resolution",
                f"{MIN_SHORT_SIDE} px short side recommended; this is {w}×{h}",
            )
        )
    if short > 0 and long / short > MAX_ASPECT:
        out.append(
            Finding(
                img.id,
                "extreme_aspect",
                f"aspect ratio {long / short:.1f}:1 is extreme (over {MAX_ASPECT}:1; this is "
                f"{w}×{h}) — crop it closer to the subject",
            )
        )
    if stats.sharpness < BLUR_THRESHOLD:
        out.append(
            Finding(
                img.id,
                "blurry",
                f"looks very blurry (sharpness {stats.sharpness:.1f}, below "
                f"{BLUR_THRESHOLD:g}) — use a sharper photo",
            )
        )
    return out


def _name(img: CheckImage) -> str:
    return display_name(os.fspath(img.path))


def run_checks(
    images: Sequence[CheckImage],
    report: Callable[[Progress], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> list[Finding]:
    """Check every photo; return the findings ordered by photo, then by :data:`KINDS`.

    ``report`` gets a :class:`Progress` after each photo is measured. When ``cancelled()``
    says yes, measuring stops and the findings for the photos measured so far (duplicates
    among them included) are returned. Of a group of duplicates, the first photo is taken as
    the original and each later one gets a finding naming it.
    """
    total = len(images)
    per_image: dict[int, list[Finding]] = {}
    checked: list[CheckImage] = []
    hashes: list[tuple[int, int]] = []  # (index into checked, phash) for readable photos
    for done, img in enumerate(images, start=1):
        if cancelled is not None and cancelled():
            break
        found: list[Finding] = []
        try:
            stats = analyse_image(img.path)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # unreadable is a finding, never an exception
            found.append(Finding(img.id, "unreadable", f"cannot be opened: {_reason(exc)}"))
        else:
            found.extend(_size_findings(img, stats))
            hashes.append((len(checked), stats.phash))
        per_image.setdefault(img.id, []).extend(found)
        checked.append(img)
        if report is not None:
            report(Progress(PROGRESS_LABEL, done, total, detail=_name(img)))

    for idx, finding in _duplicate_findings(checked, hashes):
        per_image.setdefault(checked[idx].id, []).append(finding)

    order = {k: i for i, k in enumerate(KINDS)}
    result: list[Finding] = []
    emitted: set[int] = set()
    for img in checked:
        if img.id in emitted:
            continue
        emitted.add(img.id)
        result.extend(sorted(per_image.get(img.id, []), key=lambda f: order[f.kind]))
    return result


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "the file is missing"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc) or type(exc).__name__


def _duplicate_findings(
    checked: Sequence[CheckImage], hashes: Sequence[tuple[int, int]]
) -> list[tuple[int, Finding]]:
    out: list[tuple[int, Finding]] = []
    first_by_sha: dict[str, int] = {}
    for i, img in enumerate(checked):
        first = first_by_sha.setdefault(img.sha256, i)
        if first != i:
            out.append(
                (i, Finding(img.id, "exact_duplicate", f"exact duplicate of {_name(checked[first])}"))
            )

    if len(hashes) < 2:
        return out
    idx = np.array([i for i, _ in hashes], dtype=np.int64)
    values = np.array([h for _, h in hashes], dtype=np.uint64)
    for k in range(1, len(hashes)):
        dist = np.bitwise_count(np.bitwise_xor(values[:k], values[k]))
        img = checked[idx[k]]
        for j in np.flatnonzero(dist <= NEAR_DUP_MAX_DISTANCE):
            other = checked[idx[j]]
            if other.sha256 == img.sha256:
                continue  # reported as an exact duplicate
            out.append(
                (
                    int(idx[k]),
                    Finding(
                        img.id,
                        "near_duplicate",
                        f"nearly identical to {_name(other)} "
                        f"(perceptual hash distance {int(dist[j])})",
                    ),
                )
            )
            break  # name the earliest match only
    return out
