"""Importer: the whole bad-input corpus, normalisation, duplicates, cancel, file safety."""

from __future__ import annotations

import hashlib
import io
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from isengard_desktop.core.dataset import importer
from isengard_desktop.core.dataset.decode import MAX_PIXELS, SUPPORTED_EXTS
from isengard_desktop.core.dataset.importer import (ImportedImage, ImportReport, RejectedImage,
                                                    SkippedImage, collect_files, import_files,
                                                    safe_stem)
from isengard_desktop.core.types import Progress
from tests.helpers import corpus
from tests.helpers.corpus import (
    CAPTIONS,
    CONVERTED,
    DUPLICATE,
    IGNORED,
    KEPT_AS_IS,
    OK,
    REASON_KEYWORDS,
    REJECTED,
    ROTATED_NAME,
    ROTATED_QUADRANTS,
    ROTATED_UPRIGHT_SIZE,
    build_corpus,
    import_arguments,
    picture,
)

STORED_NAME_RE = re.compile(r"^[^/\\:*?\"<>|\x00-\x1f\s.][^/\\:*?\"<>|\x00-\x1f\s]*-[0-9a-f]{8}\.(jpg|png|webp)$")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree_state(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder`` (no symlink following): relpath → (sha256, mtime_ns)."""
    state = {}
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            p = Path(dirpath, name)
            if p.is_symlink():
                continue
            state[p.relative_to(folder).as_posix()] = (sha256_file(p), p.stat().st_mtime_ns)
    return state


def encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def no_temp_files(folder: Path) -> bool:
    return not any(n.startswith(".") or n.endswith(".part") for n in os.listdir(folder))


# --------------------------------------------------------------------------- the corpus


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("corpus") / "photos"
    expected = build_corpus(folder)
    return folder, expected


@pytest.fixture(scope="module")
def first_import(
    corpus_dir: tuple[Path, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[ImportReport, Path, list[Progress], dict[str, tuple[str, int]]]:
    folder, expected = corpus_dir
    before = tree_state(folder)
    dest = tmp_path_factory.mktemp("dataset") / "images"
    progress: list[Progress] = []
    result = import_files(import_arguments(folder, expected), dest, set(), report=progress.append)
    return result, dest, progress, before


def outcomes(result: ImportReport, folder: Path) -> dict[str, object]:
    """relpath → the ImportedImage / SkippedImage / RejectedImage for it (each at most once)."""
    out: dict[str, object] = {}
    for item in [*result.imported, *result.skipped, *result.rejected]:
        rel = Path(item.source).relative_to(folder).as_posix()
        assert rel not in out, f"{rel} reported twice"
        out[rel] = item
    return out


def test_corpus_was_built_completely(corpus_dir):
    folder, expected = corpus_dir
    assert corpus.NOTES == [], corpus.NOTES  # e.g. HEIC encoder or non-UTF-8 names missing
    for rel in expected:
        assert (folder / rel).exists(), rel
    assert {"photo.heic", corpus.BAD_UTF8_NAME} <= set(expected)


def test_every_corpus_file_gets_its_expected_outcome(corpus_dir, first_import):
    folder, expected = corpus_dir
    result, _dest, _progress, _before = first_import
    got = outcomes(result, folder)
    kind = {ImportedImage: OK, SkippedImage: DUPLICATE, RejectedImage: REJECTED}
    for rel, expect in expected.items():
        if expect == IGNORED:
            assert rel not in got, f"{rel} should have been ignored"
        else:
            assert rel in got, f"{rel} was not processed"
            assert kind[type(got[rel])] == expect, f"{rel}: {got[rel]}"
    assert set(got) == {r for r, e in expected.items() if e != IGNORED}
    assert not result.cancelled


def test_reasons_name_the_problem(corpus_dir, first_import):
    folder, expected = corpus_dir
    result, _dest, _progress, _before = first_import
    got = outcomes(result, folder)
    for rel, expect in expected.items():
        if expect in (REJECTED, DUPLICATE):
            assert REASON_KEYWORDS[rel] in got[rel].reason, (rel, got[rel].reason)
    # each rejection has its own wording, not one generic message
    reasons = {got[rel].reason for rel, e in expected.items() if e == REJECTED}
    assert len(reasons) >= 10


def test_stored_files_are_upright_8bit_rgb_with_honest_extensions(first_import):
    result, dest, _progress, _before = first_import
    fmt_for_ext = {".jpg": "JPEG", ".png": "PNG", ".webp": "WEBP"}
    for item in result.imported:
        data = item.stored_path.read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            assert im.format == fmt_for_ext[item.stored_path.suffix], item
            assert im.mode == "RGB", item
            assert im.size == (item.width, item.height), item
            assert im.getexif().get(0x0112, 1) == 1, item
            assert getattr(im, "n_frames", 1) == 1
            assert "transparency" not in im.info
        if im.format == "PNG":
            assert data[24] == 8 and data[25] == 2, f"{item.stored_path.name} not 8-bit RGB"
        assert hashlib.sha256(data).hexdigest() == item.sha256


def test_keep_as_is_files_are_copied_byte_for_byte(corpus_dir, first_import):
    folder, _expected = corpus_dir
    result, _dest, _progress, _before = first_import
    got = outcomes(result, folder)
    for rel in KEPT_AS_IS:
        item = got[rel]
        assert item.sha256 == sha256_file(folder / rel), rel
        assert item.stored_path.read_bytes() == (folder / rel).read_bytes()
    assert got["normal.jpg"].stored_path.suffix == ".jpg"
    assert got["misnamed_png.jpg"].stored_path.suffix == ".png"  # named by content
    for rel in CONVERTED:
        item = got[rel]
        assert item.stored_path.suffix == ".png", rel
        assert item.sha256 != sha256_file(folder / rel), rel


def test_exif_rotated_jpeg_is_stored_upright(corpus_dir, first_import):
    folder, _expected = corpus_dir
    result, _dest, _progress, _before = first_import
    item = outcomes(result, folder)[ROTATED_NAME]
    with Image.open(folder / ROTATED_NAME) as src:
        assert src.size == ROTATED_UPRIGHT_SIZE[::-1]  # the raw pixels are sideways
    w, h = ROTATED_UPRIGHT_SIZE
    assert (item.width, item.height) == (w, h)
    with Image.open(item.stored_path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.int32)
    centres = [(h // 4, w // 4), (h // 4, 3 * w // 4), (3 * h // 4, w // 4), (3 * h // 4, 3 * w // 4)]
    for (y, x), colour in zip(centres, ROTATED_QUADRANTS, strict=True):
        assert np.abs(arr[y, x] - colour).max() < 12, ((y, x), arr[y, x], colour)


def test_pixel_conversions(corpus_dir, first_import):
    folder, _expected = corpus_dir
    result, _dest, _progress, _before = first_import
    got = outcomes(result, folder)

    def pixels(rel: str) -> np.ndarray:
        with Image.open(got[rel].stored_path) as im:
            return np.asarray(im, dtype=np.int32)

    rgba = pixels("rgba.png")
    assert (rgba[:400, :300] == 255).all()  # transparent → white
    with Image.open(folder / "rgba.png") as src:
        expected = np.asarray(src.convert("RGB"), dtype=np.int32)
    assert (rgba[400:, 300:] == expected[400:, 300:]).all()  # opaque part untouched

    sixteen = pixels("sixteen_bit.png")
    assert (sixteen[:400] == 255).all() and (sixteen[400:] == 128).all()  # scaled, not clipped

    cmyk = pixels("cmyk.jpg")[400, 300]
    assert cmyk[0] > 200 and cmyk[1] < 60 and cmyk[2] < 60  # CMYK "red" is red in RGB

    gray = pixels("gray.jpg")
    assert gray.ndim == 3 and (gray[..., 0] == gray[..., 1]).all()

    half = pixels("alpha.webp")  # alpha 128 over white: brighter than the source colours
    with Image.open(folder / "alpha.webp") as src:
        src_rgb = np.asarray(src.convert("RGBA"), dtype=np.int32)[..., :3]
    assert np.abs(half - (src_rgb * 128 + 255 * 127) / 255).max() <= 2

    with Image.open(folder / "photo.heic") as src:
        heic = np.asarray(src.convert("RGB"), dtype=np.int32)
    assert (pixels("photo.heic") == heic).all()


def test_captions_come_from_source_sidecars(corpus_dir, first_import):
    folder, _expected = corpus_dir
    result, _dest, _progress, _before = first_import
    for item in result.imported:
        rel = Path(item.source).relative_to(folder).as_posix()
        assert item.caption == CAPTIONS.get(rel), rel


def test_stored_names_are_safe_and_inside_dest(first_import):
    result, dest, _progress, _before = first_import
    for item in result.imported:
        name = item.stored_path.name
        assert item.stored_path.parent == dest
        assert item.stored_path.resolve().parent == dest.resolve()
        assert STORED_NAME_RE.match(name), name
        assert ".." not in name
        assert name.encode("utf-8")
        assert item.stored_path.stem.endswith("-" + item.sha256[:8])
    names = {i.stored_path.name for i in result.imported}
    assert "фото_été-" in " ".join(names)  # unicode letters kept, emoji dropped


def test_dest_contains_only_the_imported_files(first_import):
    result, dest, _progress, _before = first_import
    assert sorted(os.listdir(dest)) == sorted(i.stored_path.name for i in result.imported)


def test_sources_are_never_modified(corpus_dir, first_import, tmp_path):
    folder, expected = corpus_dir
    _result, _dest, _progress, before = first_import
    assert tree_state(folder) == before
    import_files(import_arguments(folder, expected), tmp_path / "again", set())
    assert tree_state(folder) == before


def test_progress_is_reported_after_each_file(corpus_dir, first_import):
    folder, expected = corpus_dir
    result, _dest, progress, _before = first_import
    total = sum(1 for e in expected.values() if e != IGNORED)
    assert [p.done for p in progress] == list(range(1, total + 1))
    assert {p.total for p in progress} == {total}
    assert {p.label for p in progress} == {"Importing photos"}
    processed = [*result.imported, *result.skipped, *result.rejected]
    assert {p.detail for p in progress} == {importer.display_name(i.source) for i in processed}


def test_summary_lists_counts_and_each_rejection(first_import):
    result, _dest, _progress, _before = first_import
    text = result.summary()
    lines = text.splitlines()
    assert lines[0] == (
        f"{len(result.imported)} imported, 1 duplicate skipped, {len(result.rejected)} rejected:"
    )
    assert "  empty.jpg — file is empty (0 bytes)" in lines
    assert any(line.startswith("  bad\ufffd.jpg — file name is not valid UTF-8") for line in lines)
    assert len(lines) == 1 + len(result.rejected)


def test_second_import_skips_everything_and_writes_nothing(corpus_dir, first_import):
    folder, expected = corpus_dir
    first, dest, _progress, _before = first_import
    dest_before = tree_state(dest)
    known = {i.sha256: i.stored_path.name for i in first.imported}
    second = import_files(import_arguments(folder, expected), dest, known)
    assert second.imported == []
    assert {s.source for s in second.skipped} == {
        i.source for i in [*first.imported, *first.skipped]
    }
    by_source = {i.source: i.stored_path.name for i in first.imported}
    for s in second.skipped:
        if s.source in by_source:
            assert s.reason == f"duplicate of {by_source[s.source]}"
    assert [r.source for r in second.rejected] == [r.source for r in first.rejected]
    assert tree_state(dest) == dest_before
    assert no_temp_files(dest)


def test_known_hashes_as_a_plain_set(tmp_path):
    src = tmp_path / "a.jpg"
    src.write_bytes(encode(picture(1), "JPEG"))
    result = import_files([src], tmp_path / "dest", {sha256_file(src)})
    assert result.imported == [] and len(result.skipped) == 1
    assert result.skipped[0].reason == "duplicate of a photo already in the dataset"
    assert not (tmp_path / "dest").exists() or os.listdir(tmp_path / "dest") == []


@pytest.mark.parametrize("stop_after", [0, 1, 5])
def test_cancel_stops_and_leaves_only_whole_files(corpus_dir, tmp_path, stop_after):
    folder, expected = corpus_dir
    dest = tmp_path / "dest"
    calls = 0

    def cancelled() -> bool:
        nonlocal calls
        calls += 1
        return calls > stop_after

    progress: list[Progress] = []
    result = import_files(
        import_arguments(folder, expected), dest, set(), progress.append, cancelled
    )
    assert result.cancelled
    assert len(result.imported) + len(result.skipped) + len(result.rejected) == stop_after
    assert len(progress) == stop_after
    stored = sorted(os.listdir(dest)) if dest.exists() else []
    assert stored == sorted(i.stored_path.name for i in result.imported)
    for item in result.imported:
        assert sha256_file(item.stored_path) == item.sha256
    assert "cancelled" in result.summary()


# --------------------------------------------------------------------------- single cases


def test_missing_file_is_rejected(tmp_path):
    result = import_files([tmp_path / "gone.jpg"], tmp_path / "dest", set())
    assert [r.reason for r in result.rejected] == ["file not found — it was moved or deleted"]


def test_unreadable_file_is_rejected(tmp_path, monkeypatch):
    src = tmp_path / "locked.jpg"
    src.write_bytes(encode(picture(2), "JPEG"))
    if os.name == "posix" and os.geteuid() != 0:
        src.chmod(0)
    else:  # root (or Windows) reads anything: make the read fail the way a lock would
        def deny(path: Path, *_: object) -> bytes:
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(importer, "_read_source", deny)
    try:
        result = import_files([src], tmp_path / "dest", set())
    finally:
        src.chmod(0o644)
    assert len(result.rejected) == 1
    assert "permission denied" in result.rejected[0].reason


def test_one_failing_file_does_not_stop_the_others(tmp_path, monkeypatch):
    for i, name in enumerate(["a.jpg", "b.jpg", "c.jpg"]):
        (tmp_path / name).write_bytes(encode(picture(10 + i), "JPEG"))
    real = importer.prepare_bytes

    def flaky(data: bytes, *, ext: str = ""):
        if data == (tmp_path / "b.jpg").read_bytes():
            raise RuntimeError("decoder exploded")
        return real(data, ext=ext)

    monkeypatch.setattr(importer, "prepare_bytes", flaky)
    result = import_files([tmp_path], tmp_path / "dest", set())
    assert [Path(i.source).name for i in result.imported] == ["a.jpg", "c.jpg"]
    assert len(result.rejected) == 1
    assert "decoder exploded" in result.rejected[0].reason
    assert Path(result.rejected[0].source).name == "b.jpg"


def test_keyboard_interrupt_is_not_swallowed(tmp_path, monkeypatch):
    (tmp_path / "a.jpg").write_bytes(encode(picture(3), "JPEG"))

    def interrupted(data: bytes, *, ext: str = ""):
        raise KeyboardInterrupt

    monkeypatch.setattr(importer, "prepare_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        import_files([tmp_path / "a.jpg"], tmp_path / "dest", set())


def test_unwritable_dest_rejects_with_reason_and_leaves_nothing(tmp_path):
    tmp_path = tmp_path / "work"
    tmp_path.mkdir()
    src = tmp_path / "a.jpg"
    src.write_bytes(encode(picture(4), "JPEG"))
    blocker = tmp_path / "dest"
    blocker.write_bytes(b"a file where the folder should be")
    result = import_files([src], blocker, set())
    assert result.imported == []
    assert "could not store it in the dataset folder" in result.rejected[0].reason
    assert blocker.read_bytes() == b"a file where the folder should be"
    assert sorted(os.listdir(tmp_path)) == ["a.jpg", "dest"]


def test_name_clash_with_different_bytes_gets_a_longer_name(tmp_path):
    src = tmp_path / "a.jpg"
    src.write_bytes(encode(picture(5), "JPEG"))
    sha = sha256_file(src)
    dest = tmp_path / "dest"
    dest.mkdir()
    squatter = dest / f"a-{sha[:8]}.jpg"
    squatter.write_bytes(b"something else")
    result = import_files([src], dest, set())
    assert result.imported[0].stored_path.name == f"a-{sha[:16]}.jpg"
    assert squatter.read_bytes() == b"something else"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied(tmp_path, orientation):
    upright = Image.new("RGB", (200, 120))
    colours = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0)]
    for i, c in enumerate(colours):
        upright.paste(c, ((i % 2) * 100, (i // 2) * 60, (i % 2) * 100 + 100, (i // 2) * 60 + 60))
    T = Image.Transpose
    # raw pixels that a viewer turns upright for each orientation (inverse of exif_transpose)
    inverse = {1: None, 2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM,
               5: T.TRANSPOSE, 6: T.ROTATE_90, 7: T.TRANSVERSE, 8: T.ROTATE_270}[orientation]
    raw = upright if inverse is None else upright.transpose(inverse)
    exif = Image.Exif()
    exif[0x0112] = orientation
    src = tmp_path / "o.jpg"
    src.write_bytes(encode(raw, "JPEG", quality=95, exif=exif.tobytes()))
    item = import_files([src], tmp_path / "dest", set()).imported[0]
    assert (item.width, item.height) == (200, 120)
    if orientation == 1:
        assert item.stored_path.read_bytes() == src.read_bytes()  # EXIF 1: kept as is
    else:
        assert item.stored_path.suffix == ".png"
    with Image.open(item.stored_path) as im:
        arr = np.asarray(im, dtype=np.int32)
    for i, c in enumerate(colours):
        y, x = (i // 2) * 60 + 30, (i % 2) * 100 + 50
        assert np.abs(arr[y, x] - c).max() < 20, (orientation, i, arr[y, x])


def test_rgb_icc_profile_is_kept_when_converting(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "icc.png"
    src.write_bytes(encode(picture(6).convert("RGBA"), "PNG", icc_profile=icc))
    item = import_files([src], tmp_path / "dest", set()).imported[0]
    with Image.open(item.stored_path) as im:
        assert im.info.get("icc_profile") == icc
        assert im.mode == "RGB"


def test_cmyk_icc_profile_is_not_put_on_rgb_output(tmp_path):
    fake_cmyk_icc = bytes(16) + b"CMYK" + bytes(108)  # colour space field says CMYK
    src = tmp_path / "cmyk.jpg"
    src.write_bytes(encode(Image.new("CMYK", (100, 100), (0, 0, 0, 0)), "JPEG",
                           icc_profile=fake_cmyk_icc))
    item = import_files([src], tmp_path / "dest", set()).imported[0]
    with Image.open(item.stored_path) as im:
        assert "icc_profile" not in im.info
        assert im.getpixel((50, 50)) == (255, 255, 255)  # broken profile → plain conversion


def test_16bit_rgb_png_is_converted_not_copied(tmp_path):
    # Pillow opens 16-bit RGB PNGs as mode "RGB"; the IHDR says 16 bits, so it must be rewritten.
    w = h = 80
    row = b"\x00" + b"\x80\x00\x40\x00\xff\xff" * w

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(
            ">I", zlib.crc32(kind + payload))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(row * h)) + chunk(b"IEND", b""))
    src = tmp_path / "deep.png"
    src.write_bytes(png)
    item = import_files([src], tmp_path / "dest", set()).imported[0]
    data = item.stored_path.read_bytes()
    assert data != png and data[24] == 8 and data[25] == 2
    with Image.open(item.stored_path) as im:
        assert im.getpixel((5, 5)) == (128, 64, 255)


def test_webp_bomb_is_rejected_from_the_header(tmp_path):
    # VP8X header claiming a 16384×16384 canvas; Pillow's WebP plugin would allocate it on open.
    payload = b"\x00\x00\x00\x00" + (16383).to_bytes(3, "little") * 2
    body = b"WEBP" + b"VP8X" + len(payload).to_bytes(4, "little") + payload
    src = tmp_path / "bomb.webp"
    src.write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)
    result = import_files([src], tmp_path / "dest", set())
    assert "decompression bomb" in result.rejected[0].reason
    assert "16384×16384" in result.rejected[0].reason


def test_pillow_bomb_limit_is_raised_not_disabled():
    assert Image.MAX_IMAGE_PIXELS is not None
    assert Image.MAX_IMAGE_PIXELS >= MAX_PIXELS


def test_small_but_acceptable_image_is_imported(tmp_path):
    src = tmp_path / "small.png"
    src.write_bytes(encode(picture(7, (64, 100)), "PNG"))
    assert len(import_files([src], tmp_path / "dest", set()).imported) == 1
    src2 = tmp_path / "smaller.png"
    src2.write_bytes(encode(picture(8, (63, 100)), "PNG"))
    assert "too small" in import_files([src2], tmp_path / "dest", set()).rejected[0].reason


def test_invalid_utf8_folder_name_is_rejected(tmp_path):
    if os.name != "posix":
        pytest.skip("byte file names are a POSIX thing")
    bad_dir = os.path.join(os.fsencode(tmp_path), b"f\xfe")
    try:
        os.mkdir(bad_dir)
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    with open(os.path.join(bad_dir, b"ok.jpg"), "wb") as fh:
        fh.write(encode(picture(9), "JPEG"))
    result = import_files([os.fsdecode(bad_dir)], tmp_path / "dest", set())
    assert len(result.rejected) == 1
    assert "folder name is not valid UTF-8" in result.rejected[0].reason


# --------------------------------------------------------------------------- collect_files


def test_collect_files_walks_sorted_skips_hidden_and_non_images(tmp_path):
    for rel in ["b.JPG", "a.png", "C.webp", "notes.txt", "a.txt", ".hidden.jpg", "x.gif",
                "sub/z.heic", "sub/.secret/y.jpg", "sub/a.tif", "Sub2/k.bmp"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    got = [p.relative_to(tmp_path).as_posix() for p in collect_files([tmp_path])]
    assert got == ["a.png", "b.JPG", "C.webp", "sub/a.tif", "sub/z.heic", "Sub2/k.bmp"]


def test_collect_files_keeps_explicit_files_in_order_and_once(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "p.jpg").write_bytes(b"x")
    gif, txt, gone = tmp_path / "anim.gif", tmp_path / "readme.txt", tmp_path / "gone.jpg"
    gif.write_bytes(b"x")
    txt.write_bytes(b"x")
    got = collect_files([gif, str(txt), tmp_path / "d", tmp_path / "d" / "p.jpg", gone])
    assert got == [gif, txt, tmp_path / "d" / "p.jpg", gone]


def test_collect_files_survives_symlink_loops(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "p.jpg").write_bytes(b"x")
    try:
        os.symlink(tmp_path / "a", tmp_path / "a" / "b" / "up", target_is_directory=True)
        os.symlink(tmp_path / "a" / "b", tmp_path / "a" / "b2", target_is_directory=True)
    except (OSError, NotImplementedError):
        pytest.skip("cannot create symlinks here")
    got = collect_files([tmp_path / "a"])
    assert [p.name for p in got] == ["p.jpg"]


def test_supported_exts_constant():
    assert {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff",
                              ".heic", ".heif"} == SUPPORTED_EXTS


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("holiday photo", "holiday_photo"),
        ("фото_été_📷", "фото_été"),
        ("..", "image"),
        ("...", "image"),
        ("..%2F..%2Fetc", "2F._2Fetc"),
        ("a/../../b", "a_._._b"),
        ("a\\..\\b", "a_._b"),
        ("CON", "CON"),
        ('x<>:"|?*y', "x_y"),
        ("tab\there\x00nul\x1f", "tab_here_nul"),
        ("", "image"),
        ("📷📷", "image"),
        ("e\u0301te", "éte"),  # NFD → NFC
    ],
)
def test_safe_stem(stem, expected):
    assert safe_stem(stem) == expected


def test_safe_stem_limits_length_and_never_escapes():
    long = safe_stem("ж" * 500)
    assert len(long) == importer.MAX_STEM_CHARS
    for nasty in ["../x", "..\\x", "/etc/passwd", "C:\\Windows", " .hidden. ", "\udcff\udcfe"]:
        s = safe_stem(nasty)
        assert s and "/" not in s and "\\" not in s and ":" not in s and ".." not in s
        assert not s.startswith(".") and not s.endswith(".") and s.strip() == s
        s.encode("utf-8")


def test_parallel_decoding_gives_the_same_report_as_sequential(corpus_dir, first_import,
                                                               tmp_path):
    """workers=2 decodes ahead on threads; outcomes, order and stored bytes must not change."""
    folder, expected = corpus_dir
    sequential, seq_dest, _, _ = first_import
    dest = tmp_path / "parallel"
    result = import_files(import_arguments(folder, expected), dest, set(), workers=2)

    def summary(report: ImportReport, base: Path) -> list[tuple[str, str, str]]:
        rows = [("imported", i.source, i.sha256) for i in report.imported]
        rows += [("skipped", s.source, s.reason) for s in report.skipped]
        rows += [("rejected", r.source, r.reason) for r in report.rejected]
        return rows

    assert summary(result, dest) == summary(sequential, seq_dest)
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in seq_dest.iterdir())
    assert no_temp_files(dest)


def test_parallel_import_cancel_keeps_finished_files_only(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(8):
        (src / f"p{i}.jpg").write_bytes(encode(picture(40 + i), "JPEG"))
    calls = []

    def cancelled() -> bool:
        calls.append(1)
        return len(calls) > 3

    dest = tmp_path / "dest"
    result = import_files([src], dest, set(), cancelled=cancelled, workers=2)
    assert result.cancelled and len(result.imported) == 3
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        i.stored_path.name for i in result.imported)


def test_import_writes_thumbnails_from_the_pixels_it_decoded(corpus_dir, tmp_path):
    """thumbnail_dir: one decode per photo; the cached thumbnail matches a fresh one."""
    from isengard_desktop.core.dataset.thumbnails import (THUMB_SIZE, make_thumbnail_bytes,
                                                          thumbnail_path)

    folder, expected = corpus_dir
    cache = tmp_path / "thumbs"
    result = import_files(import_arguments(folder, expected), tmp_path / "dest", set(),
                          workers=2, thumbnail_dir=cache)
    assert result.imported
    for item in result.imported:
        thumb = thumbnail_path(cache, item.sha256)
        assert thumb.is_file(), item.source
        with Image.open(thumb) as made:
            made.load()
            fresh = Image.open(io.BytesIO(make_thumbnail_bytes(item.stored_path)))
            assert made.mode == "RGB" and max(made.size) <= THUMB_SIZE
            assert made.size == fresh.size
            diff = np.abs(np.asarray(made, dtype=np.int16) - np.asarray(fresh, dtype=np.int16))
            assert diff.mean() < 8, item.source
    # nothing else in the cache: skipped and rejected files made no thumbnails
    assert len(list(cache.rglob("*.jpg"))) == len({i.sha256 for i in result.imported})


# --------------------------------------------------------------------------- staged writes


@pytest.mark.parametrize("workers", [1, 3])
def test_photos_are_staged_by_the_workers_and_the_folder_fsynced_once(tmp_path, monkeypatch,
                                                                      workers):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"p{i}.jpg").write_bytes(encode(picture(60 + i), "JPEG"))
    (src / "p6.jpg").write_bytes((src / "p0.jpg").read_bytes())      # a duplicate in the batch
    synced: list[Path] = []
    monkeypatch.setattr(importer, "fsync_dir", lambda folder: synced.append(Path(folder)))
    dest = tmp_path / "dest"
    result = import_files([src], dest, set(), workers=workers)
    assert len(result.imported) == 6 and len(result.skipped) == 1
    assert synced == [dest]
    assert no_temp_files(dest)
    for item in result.imported:
        assert sha256_file(item.stored_path) == item.sha256


def test_a_failed_rename_rejects_the_photo_and_leaves_no_temp_file(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"p{i}.jpg").write_bytes(encode(picture(70 + i), "JPEG"))
    real_replace = os.replace

    def replace(a: object, b: object) -> None:
        if Path(b).name.startswith("p1-"):
            raise OSError(28, "No space left on device")
        real_replace(a, b)

    monkeypatch.setattr(importer.os, "replace", replace)
    dest = tmp_path / "dest"
    result = import_files([src], dest, set(), workers=2)
    assert [Path(i.source).name for i in result.imported] == ["p0.jpg", "p2.jpg"]
    assert [Path(r.source).name for r in result.rejected] == ["p1.jpg"]
    assert "could not store it in the dataset folder" in result.rejected[0].reason
    assert no_temp_files(dest)


def test_photos_already_in_the_dataset_are_never_written(tmp_path, monkeypatch):
    src = tmp_path / "a.jpg"
    src.write_bytes(encode(picture(80), "JPEG"))
    staged: list[Path] = []
    real_stage = importer._stage
    monkeypatch.setattr(importer, "_stage", lambda *a: staged.append(real_stage(*a)) or staged[-1])
    result = import_files([src], tmp_path / "dest", {sha256_file(src): "a.jpg"}, workers=2)
    assert result.imported == [] and staged == []
