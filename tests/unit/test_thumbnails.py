"""Thumbnails: cached by sha256, upright, RGB, fitted, atomic, safe across threads."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from isengard_desktop.core.dataset import thumbnails
from isengard_desktop.core.dataset.thumbnails import THUMB_SIZE, ensure_thumbnail, thumbnail_path
from tests.helpers.corpus import heic_encode, picture

SHA = "ab" + "0123456789abcdef" * 3 + "0123456789abcd"


def write(path: Path, im: Image.Image, fmt: str = "JPEG", **kw: object) -> Path:
    buf = io.BytesIO()
    if fmt == "HEIF":
        heic_encode(im, buf, **kw)
    else:
        im.save(buf, format=fmt, **kw)
    path.write_bytes(buf.getvalue())
    return path


def all_files(folder: Path) -> list[str]:
    return sorted(
        str(Path(d, f).relative_to(folder)) for d, _s, files in os.walk(folder) for f in files
    )


def test_thumbnail_path_is_sharded_by_hash(tmp_path):
    assert len(SHA) == 64
    assert thumbnail_path(tmp_path, SHA) == tmp_path / "ab" / f"{SHA}-256.jpg"
    assert thumbnail_path(tmp_path, SHA, 128) == tmp_path / "ab" / f"{SHA}-128.jpg"
    assert THUMB_SIZE == 256


@pytest.mark.parametrize("bad", ["", "../../../etc/passwd", "AB" + SHA[2:], "zz" * 32, "ab/cd0123"])
def test_thumbnail_path_refuses_what_is_not_a_hash(tmp_path, bad):
    with pytest.raises(ValueError):
        thumbnail_path(tmp_path, bad)


def test_thumbnail_path_refuses_bad_sizes(tmp_path):
    for size in (0, -5):
        with pytest.raises(ValueError):
            thumbnail_path(tmp_path, SHA, size)


def test_jpeg_thumbnail_fits_keeps_aspect_and_is_cached(tmp_path, monkeypatch):
    src = write(tmp_path / "p.jpg", picture(1, (600, 800)))
    cache = tmp_path / "cache"
    out = ensure_thumbnail(src, cache, SHA)
    assert out == thumbnail_path(cache, SHA)
    with Image.open(out) as im:
        assert im.format == "JPEG" and im.mode == "RGB"
        assert im.size == (192, 256)
    before = out.stat().st_mtime_ns

    def must_not_run(*_a, **_k):
        raise AssertionError("thumbnail rebuilt although cached")

    monkeypatch.setattr(thumbnails, "make_thumbnail_bytes", must_not_run)
    assert ensure_thumbnail(src, cache, SHA) == out
    assert out.stat().st_mtime_ns == before
    assert all_files(cache) == [f"ab/{SHA}-256.jpg"]


def test_large_jpeg_uses_draft_decoding(tmp_path, monkeypatch):
    src = write(tmp_path / "big.jpg", picture(2, (2400, 1600)))
    calls = []
    real = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        calls.append((mode, size))
        result = real(self, mode, size)
        calls.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    out = ensure_thumbnail(src, tmp_path / "cache", SHA)
    assert calls[0] == ("RGB", (256, 256))
    assert calls[1] == (600, 400)  # libjpeg decoded at 1/4 scale
    with Image.open(out) as im:
        assert im.size == (256, 171)


def test_thumbnail_is_upright(tmp_path):
    upright = Image.new("RGB", (300, 600), (0, 0, 255))
    upright.paste((255, 0, 0), (0, 0, 300, 300))  # red on top
    exif = Image.Exif()
    exif[0x0112] = 6
    src = write(tmp_path / "r.jpg", upright.transpose(Image.Transpose.ROTATE_90),
                exif=exif.tobytes())
    out = ensure_thumbnail(src, tmp_path / "cache", SHA)
    with Image.open(out) as im:
        assert im.size == (128, 256)
        top, bottom = np.asarray(im)[64, 64], np.asarray(im)[192, 64]
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


def test_alpha_becomes_white_and_small_images_are_not_enlarged(tmp_path):
    im = Image.new("RGBA", (100, 80), (0, 0, 0, 0))
    src = write(tmp_path / "a.png", im, fmt="PNG")
    out = ensure_thumbnail(src, tmp_path / "cache", SHA)
    with Image.open(out) as th:
        assert th.size == (100, 80)
        assert min(th.getpixel((50, 40))) >= 250


def test_heic_and_wide_images(tmp_path):
    src = write(tmp_path / "w.heic", picture(3, (1000, 300)), fmt="HEIF", quality=80)
    out = ensure_thumbnail(src, tmp_path / "cache", SHA, size=128)
    with Image.open(out) as th:
        assert th.size == (128, 38)


def test_unreadable_source_raises_clear_error_and_leaves_nothing(tmp_path):
    cache = tmp_path / "cache"
    bad = tmp_path / "broken-1a2b3c4d.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="broken-1a2b3c4d.jpg"):
        ensure_thumbnail(bad, cache, SHA)
    truncated = tmp_path / "half.jpg"
    data = write(tmp_path / "full.jpg", picture(4)).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="half.jpg.*truncated"):
        ensure_thumbnail(truncated, cache, SHA)
    with pytest.raises(FileNotFoundError, match="gone.jpg"):
        ensure_thumbnail(tmp_path / "gone.jpg", cache, SHA)
    assert not cache.exists() or all_files(cache) == []


def test_many_threads_asking_for_the_same_thumbnail(tmp_path):
    src = write(tmp_path / "p.jpg", picture(5))
    cache = tmp_path / "cache"
    results: list[Path] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker() -> None:
        try:
            start.wait()
            results.append(ensure_thumbnail(src, cache, SHA))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert set(results) == {thumbnail_path(cache, SHA)}
    assert all_files(cache) == [f"ab/{SHA}-256.jpg"]  # no temp files left behind
    with Image.open(results[0]) as im:
        im.load()
        assert im.size == (192, 256)


def test_an_empty_cache_file_counts_as_missing_and_is_made_again(tmp_path):
    """Cache entries are written without fsync: after a power cut one may come back empty."""
    src = write(tmp_path / "a.jpg", picture(3, (640, 480)))
    target = thumbnail_path(tmp_path / "cache", SHA)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"")
    assert ensure_thumbnail(src, tmp_path / "cache", SHA) == target
    with Image.open(target) as im:
        assert im.size == (256, 192)
