"""Crops reach every trainer without touching the photo (issue 15 item 3): the job's
``dataset.json`` carries each photo's crop, the built-in trainer's loader cuts the photo to it
before bucketing, and staging for ai-toolkit / kohya / diffusion-pipe writes cropped copies."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from isengard_desktop.core.dataset.crops import CropRect
from isengard_desktop.core.training.buckets import family_buckets, nearest_bucket
from isengard_desktop.core.training.dataset_list import (DatasetEntry, dataset_list_path,
                                                         read_dataset_list, stage_dataset,
                                                         write_dataset_list)
from isengard_desktop.core.training.spec import JobPaths, SpecError, TrainingJob
from isengard_desktop.plugins.diffusion_pipe.dataset import stage_dataset as stage_for_dp
from isengard_desktop.plugins.external.files import stage_job_dataset


def photo(path: Path, size: tuple[int, int], orientation: int = 1) -> Path:
    """A photo whose every pixel tells its (x, y): red = x mod 256, green = y mod 256,
    blue = (x // 256) * 16 + y // 256."""
    w, h = size
    xs, ys = np.meshgrid(np.arange(w), np.arange(h))
    arr = np.stack([xs % 256, ys % 256, (xs // 256) * 16 + ys // 256], -1).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        img.save(path, exif=exif.tobytes(), quality=100, subsampling=0)
    else:
        img.save(path)
    return path


def test_the_list_carries_crops_and_names_a_bad_one(tmp_path):
    a, b = str(tmp_path / "a.png"), str(tmp_path / "b.png")
    crop = CropRect(10, 20, 300, 400)
    write_dataset_list(tmp_path, [DatasetEntry(a, "one", crop), DatasetEntry(b, "two")])
    data = json.loads(dataset_list_path(tmp_path).read_text(encoding="utf-8"))
    assert data["version"] == 2
    assert data["images"][0]["crop"] == {"x": 10, "y": 20, "width": 300, "height": 400}
    assert "crop" not in data["images"][1]
    assert read_dataset_list(tmp_path) == [DatasetEntry(a, "one", crop), DatasetEntry(b, "two")]
    # a list written before crops existed (version 1) still reads
    dataset_list_path(tmp_path).write_text(json.dumps(
        {"version": 1, "images": [{"path": a, "caption": "one"}]}), encoding="utf-8")
    assert read_dataset_list(tmp_path) == [DatasetEntry(a, "one")]
    dataset_list_path(tmp_path).write_text(json.dumps({"version": 2, "images": [
        {"path": a, "caption": ""}, {"path": b, "caption": "", "crop": {"x": 0, "y": 0}}]}),
        encoding="utf-8")
    with pytest.raises(SpecError, match=r"dataset.json: images\[1\]\.crop must be"):
        read_dataset_list(tmp_path)


def test_staging_writes_a_cropped_copy_once_and_leaves_the_photo(tmp_path):
    src = photo(tmp_path / "alice-1a2b3c4d.png", (900, 700))
    before = src.read_bytes()
    target = tmp_path / "staged"
    crop = CropRect(100, 50, 400, 600)
    captions = stage_dataset([DatasetEntry(str(src), "a woman", crop)], target,
                             lambda c: f"alc, {c}")
    staged = target / "alice-1a2b3c4d_crop100-50-400x600.png"
    assert sorted(p.name for p in target.iterdir()) == [staged.name]
    assert captions == {staged.with_suffix(".txt"): "alc, a woman\n"}
    with Image.open(staged) as img:
        assert img.size == (400, 600)
        arr = np.asarray(img)
    # its top-left pixel is the photo's (100, 50), its bottom-right the photo's (499, 649)
    assert tuple(arr[0, 0]) == (100, 50, 0)
    assert tuple(arr[-1, -1]) == (499 % 256, 649 % 256, 16 + 2)
    assert src.read_bytes() == before                       # the original never changes
    assert not os.path.samefile(src, staged)
    staged.with_suffix(".txt").write_text("alc, a woman\n", encoding="utf-8")
    stamp = staged.stat().st_mtime_ns
    # staged again unchanged: nothing rewritten (a tool's cache keyed on the file stays)
    assert stage_dataset([DatasetEntry(str(src), "a woman", crop)], target,
                         lambda c: f"alc, {c}") == {}
    assert staged.stat().st_mtime_ns == stamp
    # a changed crop is a new file (its caption to write, too); the old copy and its caption
    # go; no crop: the photo itself is linked
    moved = CropRect(0, 0, 400, 600)
    assert [p.name for p in stage_dataset([DatasetEntry(str(src), "a woman", moved)], target,
                                          lambda c: c)] == ["alice-1a2b3c4d_crop0-0-400x600.txt"]
    assert [p.name for p in target.iterdir()] == ["alice-1a2b3c4d_crop0-0-400x600.png"]
    stage_dataset([DatasetEntry(str(src), "a woman")], target, lambda c: c)
    assert os.path.samefile(src, target / src.name)


def test_a_crop_is_taken_on_the_upright_photo_and_jpeg_stays_jpeg(tmp_path):
    # stored 700 wide x 900 tall, EXIF "rotate 90° clockwise" (6): it shows 900 x 700
    src = photo(tmp_path / "turned.jpg", (700, 900), orientation=6)
    target = tmp_path / "staged"
    stage_dataset([DatasetEntry(str(src), "", CropRect(0, 0, 900, 300))], target, lambda c: c)
    (staged,) = [p for p in target.iterdir() if p.suffix == ".jpg"]
    with Image.open(staged) as img:
        assert img.format == "JPEG" and img.size == (900, 300)


def test_a_crop_outside_the_photo_is_refused_naming_it(tmp_path):
    src = photo(tmp_path / "small.png", (300, 200))
    with pytest.raises(SpecError, match=r"small.png: the crop 200×200 at \(200, 0\) lies "
                                        r"outside the photo \(300×200\)"):
        stage_dataset([DatasetEntry(str(src), "", CropRect(200, 0, 200, 200))],
                      tmp_path / "staged", lambda c: c)


def test_ai_toolkit_kohya_and_diffusion_pipe_stage_the_crop_size(tmp_path):
    a = photo(tmp_path / "a.png", (800, 600))
    b = photo(tmp_path / "b.jpg", (640, 640))
    paths = JobPaths(tmp_path / "job")
    crop = CropRect(200, 0, 480, 600)
    listed = [DatasetEntry(str(a), "smiling", crop), DatasetEntry(str(b), "")]
    write_dataset_list(paths.root, listed)
    job = TrainingJob(job_id="j", character_id=1, character_name="Alice", trigger_word="alc",
                      family="sdxl", base_model="/m", dataset_dir=str(tmp_path),
                      output_name="alice")
    captions = stage_job_dataset(job, paths)            # ai-toolkit and kohya
    staged = {p.name: p for p in (paths.root / "dataset").iterdir()}
    assert set(staged) == {"a_crop200-0-480x600.png", "b.jpg"}
    with Image.open(staged["a_crop200-0-480x600.png"]) as img:
        assert img.size == (480, 600)
    assert {p.name: t for p, t in captions.items()} == {
        "a_crop200-0-480x600.txt": "alc, smiling\n", "b.txt": "alc\n"}
    dp = tmp_path / "dp"
    stage_for_dp(read_dataset_list(paths.root), dp, "alc", video=False)
    with Image.open(dp / "a_crop200-0-480x600.png") as img:
        assert img.size == (480, 600)


def test_the_built_in_loader_crops_before_bucketing(tmp_path):
    from isengard_desktop.training_runtime.data import Item, load_dataset, load_image

    src = photo(tmp_path / "p.png", (1200, 800))
    crop = CropRect(300, 100, 448, 576)                 # 7:9, an SD 1.5 bucket's aspect
    write_dataset_list(tmp_path, [DatasetEntry(str(src), "x", crop)])
    (item,) = load_dataset(tmp_path, "alc")
    assert item.crop == crop
    buckets = family_buckets("sd15")
    pixels = load_image(item, buckets)
    assert item.bucket == (448, 576) == nearest_bucket(448, 576, buckets)
    assert item.original_size == (576, 448) and item.crop_top_left == (0, 0)
    assert tuple(pixels.shape) == (3, 576, 448)
    # its first pixel is the photo's (300, 100): red 300 % 256 = 44, green 100
    first = ((pixels[:, 0, 0] + 1) * 127.5).round().tolist()
    assert first == [44, 100, 16]
    # without the crop the whole photo goes to a landscape bucket
    whole = Item(src, "x")
    load_image(whole, buckets)
    assert whole.bucket[0] > whole.bucket[1] and whole.original_size == (800, 1200)
    bad = Item(src, "x", crop=CropRect(1000, 0, 448, 576))
    with pytest.raises(ValueError, match=r"lies outside the photo \(1200×800\)"):
        load_image(bad, buckets)
