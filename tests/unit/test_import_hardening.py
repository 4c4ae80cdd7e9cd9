"""Issue 11: photos and sidecars that must not slip through or hang an import."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from isengard_desktop.core.dataset.importer import import_files


def _noise_png(size: int = 200) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def corrupt_png_pixels(data: bytes) -> bytes:
    """Garble the middle of the IDAT stream and fix its CRC: the header and chunks are
    fine, only decoding the pixels fails."""
    out = bytearray(data)
    i = out.index(b"IDAT")
    length = struct.unpack(">I", out[i - 4:i])[0]
    middle = i + 4 + length // 2
    for k in range(200):
        out[middle + k] ^= 0x5A
    crc = zlib.crc32(bytes(out[i:i + 4 + length])) & 0xFFFFFFFF
    out[i + 4 + length:i + 8 + length] = struct.pack(">I", crc)
    return bytes(out)


# --------------------------------------------------------------------------- item 5


def test_png_with_corrupt_pixel_data_is_rejected(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "bad.png").write_bytes(corrupt_png_pixels(_noise_png()))
    (src / "good.png").write_bytes(_noise_png())
    for thumbs in (None, tmp_path / "thumbs"):
        dest = tmp_path / f"dest-{thumbs is None}"
        result = import_files([src / "bad.png", src / "good.png"], dest, set(),
                              thumbnail_dir=thumbs)
        assert [Path(r.source).name for r in result.rejected] == ["bad.png"]
        assert "corrupt" in result.rejected[0].reason
        assert [Path(i.source).name for i in result.imported] == ["good.png"]


def test_dataset_check_reports_corrupt_png(tmp_path: Path) -> None:
    import pytest

    from isengard_desktop.core.dataset.checks import analyse_image
    from isengard_desktop.core.dataset.decode import ImageProblem

    bad = tmp_path / "bad.png"
    bad.write_bytes(corrupt_png_pixels(_noise_png()))
    with pytest.raises(ImageProblem):
        analyse_image(bad)


# --------------------------------------------------------------------------- item 4


def _finishes(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Run ``fn`` on a daemon thread; return (finished, result). A hang guard, not a timing
    assertion: a blocking read never returns at all."""
    import threading

    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(30)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return not thread.is_alive(), box.get("result")


def _unblock_fifo(fifo: Path) -> None:
    """Open the FIFO's write end once so a reader stuck on it (the bug) can end."""
    import os

    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    os.close(fd)


def test_fifo_caption_file_does_not_hang_the_import(tmp_path: Path) -> None:
    import os

    src = tmp_path / "src"
    src.mkdir()
    (src / "photo.png").write_bytes(_noise_png())
    fifo = src / "photo.txt"
    os.mkfifo(fifo)
    try:
        finished, result = _finishes(import_files, [src], tmp_path / "dest", set())
    finally:
        _unblock_fifo(fifo)
    assert finished
    assert [i.caption for i in result.imported] == [None]


def test_read_sidecar_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    import os

    import pytest

    from isengard_desktop.core.dataset.captions import read_sidecar

    fifo = tmp_path / "photo.txt"
    os.mkfifo(fifo)
    try:
        with pytest.raises(ValueError, match="not a regular file"):
            _finishes(read_sidecar, tmp_path / "photo.png")
    finally:
        _unblock_fifo(fifo)
    (tmp_path / "dir.txt").mkdir()
    with pytest.raises(ValueError, match="not a regular file"):
        read_sidecar(tmp_path / "dir.png")


# --------------------------------------------------------------------------- item 7


def test_over_long_sidecar_caption_is_left_out_with_a_message(tmp_path: Path) -> None:
    from isengard_desktop.core.dataset.captions import MAX_CAPTION_CHARS, read_sidecar

    src = tmp_path / "src"
    src.mkdir()
    (src / "long.png").write_bytes(_noise_png())
    (src / "long.txt").write_text("word " * (MAX_CAPTION_CHARS // 4), encoding="utf-8")
    (src / "fine.png").write_bytes(_noise_png(210))
    (src / "fine.txt").write_text("a red coat", encoding="utf-8")
    result = import_files([src], tmp_path / "dest", set())
    captions = {Path(i.source).name: i.caption for i in result.imported}
    assert captions == {"fine.png": "a red coat", "long.png": None}
    assert "long.png" in result.summary() and "too long" in result.summary()
    # whatever the limit lets through, the trainers' reader accepts
    (tmp_path / "max.txt").write_text("é" * MAX_CAPTION_CHARS + "\n", encoding="utf-8-sig")
    assert read_sidecar(tmp_path / "max.txt") == "é" * MAX_CAPTION_CHARS


# --------------------------------------------------------------------------- item 6


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header is patched to claim ``width``×``height``."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 30, 200)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 7] = height.to_bytes(2, "big")
    data[sof + 7:sof + 9] = width.to_bytes(2, "big")
    return bytes(data)


def test_huge_file_for_its_header_is_rejected_without_reading_it(tmp_path: Path,
                                                                 monkeypatch) -> None:
    from isengard_desktop.core.dataset import importer

    big = tmp_path / "big.jpg"
    with open(big, "wb") as fh:
        fh.write(_jpeg_claiming(640, 480))
        fh.truncate(900 * 2**20)          # sparse: 900 MB on paper, nothing on disk
    read: list[int] = []
    real = importer._read_source

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        read.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(importer, "_read_source", spy)
    result = import_files([big], tmp_path / "dest", set())
    assert [Path(r.source).name for r in result.rejected] == ["big.jpg"]
    assert "much larger" in result.rejected[0].reason
    assert read == []


def test_cancel_is_observed_inside_a_large_file(tmp_path: Path) -> None:
    import os

    big = tmp_path / "big.jpg"
    rng = np.random.default_rng(1)
    with open(big, "wb") as fh:
        fh.write(_jpeg_claiming(8000, 8000))
        for _ in range(6):
            fh.write(rng.integers(0, 255, 8 * 2**20, dtype=np.uint8).tobytes())
    asked: list[int] = []

    def cancelled() -> bool:
        asked.append(1)
        return len(asked) > 1             # let the file start, then press Cancel

    dest = tmp_path / "dest"
    for workers in (1, 2):
        asked.clear()
        result = import_files([big], dest, set(), cancelled=cancelled, workers=workers)
        assert result.cancelled            # seen while the file was being worked on
        assert not result.imported and not result.rejected and not result.skipped
        assert not dest.exists() or os.listdir(dest) == []


def test_cancel_inside_a_large_file_does_not_depend_on_the_wait_slice(tmp_path: Path,
                                                                       monkeypatch) -> None:
    """The reader thread asks Cancel between a large file's chunks itself: a file that is read
    faster than the waiter's slice (a fast disk, a busy machine) still sees Cancel (this failed
    now and then in CI before: the waiter alone asked, every 50 ms)."""
    from isengard_desktop.core.dataset import importer

    monkeypatch.setattr(importer, "READ_WAIT_SLICE", 10.0)   # the waiter never looks in time
    test_cancel_is_observed_inside_a_large_file(tmp_path)
