"""A corpus of good and bad photo files, generated on disk for importer tests.

:func:`build_corpus` writes real files and returns what importing the folder should do with
each one (keys are paths relative to the folder, "/"-separated, as ``str`` — a name that is not
valid UTF-8 appears with surrogate escapes, as Python shows it):

- ``"ok"``: imported; ``"duplicate"``: skipped as a byte copy of another corpus file;
- ``"rejected"``: rejected, the reason containing :data:`REASON_KEYWORDS` [name];
- ``"ignored"``: never looked at when the folder is walked (hidden files, caption sidecars).

Files the folder walk passes over on purpose (extensions it does not look for: .gif, .psd,
.txt; names starting with a dot: "...jpg") are only looked at when passed explicitly:
:func:`import_arguments` gives the folder plus those files.
Every image has distinct content (seeded random shapes), small (600×800 at most) to stay fast.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageDraw

OK = "ok"
REJECTED = "rejected"
DUPLICATE = "duplicate"
IGNORED = "ignored"

UNICODE_NAME = "фото_été_📷.jpg"
BAD_UTF8_NAME = os.fsdecode(b"bad\xff.jpg")  # "bad\udcff.jpg" on POSIX
ROTATED_NAME = "rotated.jpg"

# Files that must be stored byte for byte (already upright 8-bit RGB JPEG/PNG/WebP).
KEPT_AS_IS = {
    "normal.jpg",
    "photo.png",
    "photo.webp",
    "misnamed_png.jpg",
    UNICODE_NAME,
    "..%2F..%2Fetc.jpg",
    "...jpg",
    "back\\..\\slash.jpg",
    "nested/inner.jpg",
    "nested/deeper/deep.png",
}

# The stored format of every "ok" file that is converted (all to PNG).
CONVERTED = {
    "photo.bmp",
    "photo.tiff",
    "photo.heic",
    "cmyk.jpg",
    "sixteen_bit.png",
    ROTATED_NAME,
    "rgba.png",
    "palette.png",
    "gray.jpg",
    "alpha.webp",
}

REASON_KEYWORDS = {
    "normal_copy.jpg": "duplicate of normal.jpg",
    "empty.jpg": "empty (0 bytes)",
    "truncated.jpg": "truncated",
    "text.jpg": "not an image",
    "animated.gif": "animated image (3 frames)",
    "animated.png": "animated image (3 frames)",
    "animated.webp": "animated image (3 frames)",
    "layers.psd": "unsupported image format (PSD)",
    "notes.txt": "unsupported file type (.txt)",
    "bomb.png": "decompression bomb",
    "big_bomb.png": "decompression bomb",
    BAD_UTF8_NAME: "not valid UTF-8",
    "tiny.png": "too small to train on",
}

# Captions read from "<stem>.txt" sidecars beside the source.
CAPTIONS = {"normal.jpg": "a photo of a person, smiling", UNICODE_NAME: "портрет, été"}

# Quadrant colours of the upright version of ROTATED_NAME (top-left, top-right,
# bottom-left, bottom-right); the stored file must show them in these places.
ROTATED_QUADRANTS = ((220, 30, 30), (30, 200, 30), (30, 30, 220), (230, 230, 40))
ROTATED_UPRIGHT_SIZE = (600, 800)  # width, height as a viewer shows it

NOTES: list[str] = []  # things the corpus could not create on this machine


def picture(seed: int, size: tuple[int, int] = (600, 800)) -> Image.Image:
    """A distinct, detailed RGB picture (random shapes on a gradient) for each seed."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    base = rng.integers(0, 200, 3)
    grad = np.stack(
        [base[0] + x * 50 / w, base[1] + y * 50 / h, base[2] + (x + y) * 25 / (w + h)], -1
    )
    im = Image.fromarray(np.clip(grad, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(30):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.integers(0, 2):
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
    return im


def _encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    if fmt == "HEIF":
        heic_encode(im, buf, **kw)
    else:
        im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def heic_encode(im: Image.Image, out: IO[bytes], **kw: object) -> None:
    """Write ``im`` as HEIC with pillow-heif's encoder (a test-only package). The app reads
    HEIC with pi-heif (decode-only, LGPL: pillow-heif's wheels carry the GPL x265 encoder);
    pillow-heif is not registered with Pillow here, so what the tests decode goes through
    the app's own opener."""
    import pillow_heif

    pillow_heif.from_pillow(im).save(out, **kw)


def _write(folder: Path, rel: str, data: bytes) -> None:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def bomb_png(width: int, height: int) -> bytes:
    """A valid 1-bit grayscale PNG of width×height, all black: a few KB on disk, but
    width×height pixels once decoded. Built row by row, never in memory as an image."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    parts = []
    block = row * 256
    left = height
    while left:
        n = min(256, left)
        parts.append(comp.compress(block if n == 256 else row * n))
        left -= n
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


def minimal_psd(width: int, height: int) -> bytes:
    """A small, valid flat RGB Photoshop file (raw planar data)."""
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, height, width, 8, 3)
    sections = struct.pack(">III", 0, 0, 0)  # colour mode data, resources, layers: empty
    planes = bytes([200]) * (width * height) + bytes([40]) * (width * height) * 2
    return header + sections + struct.pack(">H", 0) + planes


def _rotated_jpeg() -> bytes:
    w, h = ROTATED_UPRIGHT_SIZE
    upright = Image.new("RGB", (w, h))
    for i, colour in enumerate(ROTATED_QUADRANTS):
        left, top = (i % 2) * w // 2, (i // 2) * h // 2
        upright.paste(colour, (left, top, left + w // 2, top + h // 2))
    # Orientation 6: the viewer turns the stored pixels 90° clockwise, so store them turned
    # 90° counter-clockwise.
    raw = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encode(raw, "JPEG", quality=92, exif=exif.tobytes())


def _animation(fmt: str) -> bytes:
    frames = [Image.new("RGB", (128, 128), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    kw: dict[str, object] = {"save_all": True, "append_images": frames[1:], "duration": 100}
    if fmt == "WEBP":
        kw["lossless"] = True
    return _encode(frames[0], fmt, **kw)


def build_corpus(folder: Path) -> dict[str, str]:
    """Write the corpus into ``folder`` (created if needed); return ``{relpath: expectation}``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    NOTES.clear()
    out: dict[str, str] = {}

    def put(rel: str, data: bytes, expect: str) -> None:
        _write(folder, rel, data)
        out[rel] = expect

    seed = iter(range(1, 1000))
    normal = _encode(picture(next(seed)), "JPEG", quality=90)
    put("normal.jpg", normal, OK)
    put("normal_copy.jpg", normal, DUPLICATE)
    put("normal.txt", (CAPTIONS["normal.jpg"] + "\n").encode(), IGNORED)
    put("photo.png", _encode(picture(next(seed)), "PNG"), OK)
    put("photo.webp", _encode(picture(next(seed)), "WEBP", quality=85), OK)
    put("misnamed_png.jpg", _encode(picture(next(seed)), "PNG"), OK)
    put("photo.bmp", _encode(picture(next(seed)), "BMP"), OK)
    put("photo.tiff", _encode(picture(next(seed)), "TIFF", compression="tiff_lzw"), OK)
    try:
        put("photo.heic", _encode(picture(next(seed)), "HEIF", quality=80), OK)
    except Exception as exc:  # the encoder is optional in pillow-heif builds
        NOTES.append(f"HEIC not written (no encoder?): {exc}")
    put("cmyk.jpg", _encode(Image.new("CMYK", (600, 800), (0, 255, 255, 0)), "JPEG"), OK)
    sixteen = np.full((800, 600), 0x8000, dtype=np.uint16)
    sixteen[:400] = 0xFFFF  # top half white, bottom half mid-grey
    put("sixteen_bit.png", _encode(Image.fromarray(sixteen), "PNG"), OK)
    put(ROTATED_NAME, _rotated_jpeg(), OK)
    rgba = picture(next(seed)).convert("RGBA")
    rgba.paste((0, 0, 0, 0), (0, 0, 300, 400))  # fully transparent top-left quarter
    put("rgba.png", _encode(rgba, "PNG"), OK)
    put("palette.png", _encode(picture(next(seed)).convert("P", colors=64), "PNG"), OK)
    put("gray.jpg", _encode(picture(next(seed)).convert("L"), "JPEG"), OK)
    alpha_webp = picture(next(seed)).convert("RGBA")
    alpha_webp.putalpha(128)
    put("alpha.webp", _encode(alpha_webp, "WEBP", lossless=True), OK)

    put("empty.jpg", b"", REJECTED)
    whole = _encode(picture(next(seed)), "JPEG", quality=90)
    put("truncated.jpg", whole[: len(whole) // 2], REJECTED)
    put("text.jpg", b"This is not a picture, just some notes.\n" * 20, REJECTED)
    put("animated.gif", _animation("GIF"), REJECTED)
    put("animated.png", _animation("PNG"), REJECTED)
    put("animated.webp", _animation("WEBP"), REJECTED)
    put("layers.psd", minimal_psd(128, 128), REJECTED)
    put("notes.txt", b"shopping list\n", REJECTED)
    put("bomb.png", bomb_png(20_000, 20_000), REJECTED)  # 400 Mpx: over Pillow's own error limit
    put("big_bomb.png", bomb_png(13_000, 12_000), REJECTED)  # 156 Mpx: just over MAX_PIXELS
    put("tiny.png", _encode(picture(next(seed), (32, 32)), "PNG"), REJECTED)

    put(UNICODE_NAME, _encode(picture(next(seed)), "JPEG"), OK)
    put(Path(UNICODE_NAME).stem + ".txt", CAPTIONS[UNICODE_NAME].encode(), IGNORED)
    put("..%2F..%2Fetc.jpg", _encode(picture(next(seed)), "JPEG"), OK)
    put("...jpg", _encode(picture(next(seed)), "JPEG"), OK)
    if os.name == "posix":
        put("back\\..\\slash.jpg", _encode(picture(next(seed)), "JPEG"), OK)
        try:
            fd = os.open(
                os.path.join(os.fsencode(folder), b"bad\xff.jpg"),
                os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                0o644,
            )
        except OSError as exc:  # e.g. macOS refuses names that are not UTF-8
            NOTES.append(f"non-UTF-8 name not created: {exc}")
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(_encode(picture(next(seed)), "JPEG"))
            out[BAD_UTF8_NAME] = REJECTED
    put("nested/inner.jpg", _encode(picture(next(seed)), "JPEG"), OK)
    put("nested/deeper/deep.png", _encode(picture(next(seed)), "PNG"), OK)
    put(".hidden.jpg", _encode(picture(next(seed)), "JPEG"), IGNORED)
    put(".cache/cached.jpg", _encode(picture(next(seed)), "JPEG"), IGNORED)
    try:  # a symlink loop: walking must not hang
        os.symlink("..", folder / "nested" / "loop", target_is_directory=True)
    except (OSError, NotImplementedError) as exc:
        NOTES.append(f"symlink loop not created: {exc}")
    return out


def walk_skips(rel: str) -> bool:
    """True when walking the folder passes over ``rel`` on purpose: a hidden name (starting
    with ".", like "...jpg") or an extension the importer does not look for (.gif, .psd)."""
    from isengard_desktop.core.dataset.decode import SUPPORTED_EXTS

    parts = rel.split("/")
    return any(p.startswith(".") for p in parts) or (
        os.path.splitext(parts[-1])[1].lower() not in SUPPORTED_EXTS
    )


def import_arguments(folder: Path, expected: dict[str, str]) -> list[Path]:
    """What to pass to ``import_files``: the folder, plus the files the folder walk skips on
    purpose (see :func:`walk_skips`) but the corpus means to test, passed explicitly as a user
    dropping them would."""
    explicit = [
        Path(folder) / rel
        for rel, expect in expected.items()
        if expect != IGNORED and walk_skips(rel)
    ]
    return [Path(folder), *explicit]
