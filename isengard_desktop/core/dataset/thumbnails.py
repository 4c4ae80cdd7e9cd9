"""Cached JPEG thumbnails of dataset photos, keyed by the photo's sha256.

``cache_dir/ab/abcdef…-256.jpg``: sharded by the first two hex characters. Safe to call from
several worker threads at once: a thumbnail is written to a temp file and renamed into place,
so a reader sees no file or a whole one, and two threads making the same one write the same
bytes.
"""

from __future__ import annotations

import errno
import io
import re
from pathlib import Path

from PIL import Image

from isengard_desktop.core.dataset.decode import ImageProblem, load_pixels, open_image, upright_rgb
from isengard_desktop.core.fsutil import atomic_write_bytes

THUMB_SIZE = 256
JPEG_QUALITY = 85
_SHA_RE = re.compile(r"[0-9a-f]{8,64}")


def thumbnail_path(cache_dir: Path, sha256: str, size: int = THUMB_SIZE) -> Path:
    """Where the ``size`` px thumbnail of the photo with this sha256 lives (may not exist)."""
    if not isinstance(sha256, str) or not _SHA_RE.fullmatch(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"thumbnail size must be a positive integer, not {size!r}")
    return Path(cache_dir) / sha256[:2] / f"{sha256}-{size}.jpg"


def ensure_thumbnail(src: Path, cache_dir: Path, sha256: str, size: int = THUMB_SIZE) -> Path:
    """Return the cached thumbnail of ``src``, making it first if it is missing.

    The thumbnail is upright (EXIF-transposed), RGB (alpha on white), fits in ``size``×``size``
    keeping the aspect ratio, JPEG quality 85. Raises ``OSError`` (missing/unreadable file) or
    ``ValueError`` (not a usable image), both naming the file.
    """
    target = thumbnail_path(cache_dir, sha256, size)
    if is_cached(target):
        return target
    src = Path(src)
    write_cached(target, make_thumbnail_bytes(src, size))
    return target


def is_cached(target: Path) -> bool:
    """Whether the thumbnail file ``target`` is there. An empty file counts as missing: cache
    entries are written without fsync (see :func:`write_cached`)."""
    try:
        return target.stat().st_size > 0
    except OSError:
        return False


def write_cached(target: Path, data: bytes) -> None:
    """Write a cache entry atomically (readers see it whole or not at all) but without the
    fsyncs that make it survive a power cut: an entry lost or left empty by one is simply
    made again (:func:`is_cached`). Two fsyncs per photo were a third of an import's time."""
    atomic_write_bytes(target, data, sync_dir=False, sync_file=False)


def make_thumbnail_bytes(src: Path, size: int = THUMB_SIZE) -> bytes:
    """JPEG bytes of the thumbnail of ``src`` (see :func:`ensure_thumbnail`)."""
    name = Path(src).name
    try:
        with open(src, "rb") as fh:
            im = open_image(fh, ext=Path(src).suffix)
            if im.format in ("JPEG", "MPO"):
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale, never below the target size.
                im.draft("RGB", (size, size))
            load_pixels(im)
            rgb = upright_rgb(im)
    except OSError as exc:
        code = exc.errno if exc.errno is not None else errno.EIO
        raise OSError(code, f"cannot read {name}: {exc.strerror or exc}", str(src)) from exc
    except ImageProblem as exc:
        raise ValueError(f"cannot make a thumbnail of {name}: {exc}") from exc
    return thumbnail_bytes_from_image(rgb, size)


def thumbnail_bytes_from_image(rgb: Image.Image, size: int = THUMB_SIZE) -> bytes:
    """JPEG thumbnail bytes from already decoded, upright RGB pixels (``rgb`` is not changed
    unless it is already small enough to be used as is)."""
    if rgb.width > size or rgb.height > size:
        # resize() makes a new image straight from the source: no full-size copy.
        rgb = rgb.resize(_fit(rgb.size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _fit(wh: tuple[int, int], box: int) -> tuple[int, int]:
    """The size that fits in box×box keeping the aspect ratio (as ImageOps.contain does)."""
    w, h = wh
    if w >= h:
        return box, max(1, round(h / w * box))
    return max(1, round(w / h * box)), box
