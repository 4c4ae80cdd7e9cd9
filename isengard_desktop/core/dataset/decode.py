"""Identify and decode photos safely: format from contents, size checked from the header
before any decoding (decompression bombs), and conversion to upright 8-bit RGB.

Qt-free; used by the importer, the dataset checks and the thumbnailer.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from functools import cache
from typing import IO

import numpy as np
import pi_heif
from PIL import Image, ImageFile, ImageOps

SUPPORTED_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif"}
MAX_PIXELS = 150_000_000
# Formats we accept, by Pillow plugin name ("HEIF" is registered by pi-heif, the decode-only
# build of pillow-heif: LGPL libheif + libde265, without pillow-heif's GPL x265 encoder).
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "HEIF")
# Formats where more than one frame means an animation we refuse (MPO/TIFF/HEIF: first frame).
_ANIMATED_FORMATS = {"GIF", "PNG", "WEBP"}
_FORMAT_NAMES = "JPEG, PNG, WebP, BMP, TIFF or HEIC"
_ORIENTATION = 0x0112

pi_heif.register_heif_opener()
if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_PIXELS:
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class ImageProblem(ValueError):
    """A file we refuse to use as a photo; ``str(exc)`` is the plain-English reason."""


class Cancelled(Exception):
    """Cancel was pressed while a file was being read or decoded (the caller stops)."""


# --------------------------------------------------------------------------- identifying


@cache
def _plugins_ready() -> bool:
    Image.init()
    pi_heif.register_heif_opener()
    return True


def _webp_header_size(prefix: bytes) -> tuple[int, int] | None:
    """Canvas size from a WebP header. Pillow's WebP plugin allocates the canvas while opening,
    so the size must be checked before handing the file to it."""
    if len(prefix) < 30 or prefix[:4] != b"RIFF" or prefix[8:12] != b"WEBP":
        return None
    chunk = prefix[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(prefix[24:27], "little") + 1
        h = int.from_bytes(prefix[27:30], "little") + 1
        return w, h
    if chunk == b"VP8L" and prefix[20] == 0x2F:
        bits = int.from_bytes(prefix[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and prefix[23:26] == b"\x9d\x01\x2a":
        w = int.from_bytes(prefix[26:28], "little") & 0x3FFF
        h = int.from_bytes(prefix[28:30], "little") & 0x3FFF
        return w, h
    return None


def _bomb_reason(width: int, height: int) -> str:
    return (
        f"image is too large to open safely ({width}×{height} = {width * height / 1e6:.0f} "
        f"megapixels, limit {MAX_PIXELS / 1e6:.0f}) — possible decompression bomb"
    )


def _check_pixels(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise ImageProblem(_bomb_reason(width, height))


def _try_formats(fp: IO[bytes], formats: Iterable[str]) -> ImageFile.ImageFile | None:
    """Like ``Image.open(fp, formats=...)`` minus Pillow's bomb warning and possible-format
    warnings: the caller checks the size itself."""
    _plugins_ready()
    fp.seek(0)
    prefix = fp.read(32)
    size = _webp_header_size(prefix)
    if size is not None:
        _check_pixels(*size)
    for fmt in formats:
        entry = Image.OPEN.get(fmt)
        if entry is None:
            continue
        factory, accept = entry
        try:
            if accept is not None:
                ok = accept(prefix[:16])
                if not ok or isinstance(ok, str):
                    continue
            fp.seek(0)
            return factory(fp, "")
        except Image.DecompressionBombError as exc:
            raise ImageProblem(
                "image is too large to open safely — possible decompression bomb"
            ) from exc
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception:
            continue
    return None


def _other_format(fp: IO[bytes]) -> ImageFile.ImageFile | None:
    """Identify a file in a format we do not accept (to name it in the reason)."""
    _plugins_ready()
    try:
        return _try_formats(fp, [f for f in Image.ID if f not in ALLOWED_FORMATS])
    except ImageProblem:
        return None


def _frame_count(im: ImageFile.ImageFile) -> int:
    try:
        return int(getattr(im, "n_frames", 1) or 1)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception:
        return 1


def open_image(fp: IO[bytes], *, ext: str = "") -> ImageFile.ImageFile:
    """Identify an image in a seekable binary file without decoding its pixels.

    Accepts only :data:`ALLOWED_FORMATS`, one frame (first frame of MPO/TIFF/HEIF), at most
    :data:`MAX_PIXELS`. Raises :class:`ImageProblem` whose text says what is wrong. ``ext``
    (the file's extension) only improves the wording of reasons. The caller keeps ``fp`` open
    until the image is loaded.
    """
    im = _try_formats(fp, ALLOWED_FORMATS)
    if im is None:
        other = _other_format(fp)
        if other is not None:
            _check_pixels(*other.size)
            frames = _frame_count(other) if other.format in _ANIMATED_FORMATS else 1
            if frames > 1:
                raise ImageProblem(f"animated image ({frames} frames) — export a single frame")
            raise ImageProblem(
                f"unsupported image format ({other.format}) — save it as {_FORMAT_NAMES}"
            )
        if ext and ext.lower() not in SUPPORTED_EXTS:
            raise ImageProblem(
                f"unsupported file type ({ext}) — not an image this app can use; "
                f"photos must be {_FORMAT_NAMES}"
            )
        raise ImageProblem(
            f"not an image: its contents are not a {_FORMAT_NAMES} picture "
            "(damaged, or another kind of file renamed)"
        )
    _check_pixels(*im.size)
    if im.format in _ANIMATED_FORMATS:
        frames = _frame_count(im)
        if frames > 1:
            raise ImageProblem(f"animated image ({frames} frames) — export a single frame")
        im.seek(0)
    return im


def load_pixels(im: ImageFile.ImageFile) -> None:
    """Decode every pixel; a truncated or corrupt file raises :class:`ImageProblem`."""
    try:
        im.load()
    except (KeyboardInterrupt, SystemExit, MemoryError, Cancelled):
        raise
    except Exception as exc:
        raise ImageProblem(
            f"image is truncated or corrupt — it could not be fully decoded ({exc})"
        ) from exc


def exif_orientation(im: Image.Image) -> int:
    """EXIF orientation 1..8 (1 when absent or nonsense).

    A PNG may keep its EXIF after the pixel data, and Pillow decodes the whole image to reach
    it; a decode error there was swallowed and the later ``load()`` did nothing, so corrupt
    pixels were accepted. An unloaded PNG is therefore decoded first with
    :func:`load_pixels`, which raises :class:`ImageProblem` for corrupt pixels."""
    if im.format == "PNG" and isinstance(im, ImageFile.ImageFile) and im.tile:
        load_pixels(im)
    try:
        value = int(im.getexif().get(_ORIENTATION, 1))
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception:
        return 1
    return value if 1 <= value <= 8 else 1


_ALPHA_MODES = {"RGBA", "LA", "PA", "La", "RGBa"}


def _to_8bit_gray(im: Image.Image) -> Image.Image:
    arr = np.asarray(im).astype(np.float64)
    if im.mode.startswith("I;16"):
        arr = arr / 257.0
    elif im.mode == "I":
        top = float(arr.max()) if arr.size else 0.0
        if top > 65535:
            arr = arr * (255.0 / top)
        elif top > 255:
            arr = arr / 257.0
    elif im.mode == "F":
        top = float(arr.max()) if arr.size else 0.0
        if top <= 1.0:
            arr = arr * 255.0
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))


def _icc_colour_space(icc: bytes | None) -> bytes | None:
    if not icc or len(icc) < 20:
        return None
    return bytes(icc[16:20])


def to_rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB copy of a loaded image: alpha composited on white, 16-bit/float scaled to
    8 bits, CMYK converted through its ICC profile when it has one. ``info`` is cleared."""
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        out = im.copy()
    elif mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        out = Image.alpha_composite(white, rgba).convert("RGB")
    elif mode.startswith("I") or mode == "F":
        out = _to_8bit_gray(im).convert("RGB")
    elif mode == "CMYK":
        out = _cmyk_to_rgb(im)
    elif mode == "1":
        out = im.convert("L").convert("RGB")
    else:
        try:
            out = im.convert("RGB")
        except (ValueError, OSError) as exc:
            raise ImageProblem(f"unsupported colour mode {mode} — save it as RGB") from exc
    out.info = {}
    return out


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    icc = im.info.get("icc_profile")
    if icc and _icc_colour_space(icc) == b"CMYK":
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.createProfile("sRGB")
            converted = ImageCms.profileToProfile(im, src, dst, outputMode="RGB")
            if converted is not None:
                return converted
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception:
            pass  # a broken profile: fall back to Pillow's plain conversion
    return im.convert("RGB")


def upright_rgb(im: Image.Image) -> Image.Image:
    """Loaded image → EXIF-transposed 8-bit RGB (``info`` cleared)."""
    if exif_orientation(im) != 1:
        im = ImageOps.exif_transpose(im)
    return to_rgb(im)
