"""The debug bundle of a job folder: sample images of the app and of external trainers
(ai-toolkit's ``output/<name>/samples/``, sd-scripts' ``output/sample/``), capped to the
newest ones; never a LoRA or checkpoint (no Qt, no child process)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from isengard_desktop.core.training.job_files import MAX_BUNDLE_SAMPLES, write_debug_bundle
from isengard_desktop.core.training.spec import JobPaths

SECRET = "planted-Secret-Value-bundle-42"


def _image(path: Path, age_s: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG fake " + path.name.encode())
    when = 1_700_000_000 - age_s
    os.utime(path, (when, when))


def test_bundle_holds_the_newest_sample_images_of_the_app_and_the_trainer(tmp_path):
    paths = JobPaths(tmp_path / "jobs" / "job1")
    paths.configs.mkdir(parents=True)
    (paths.configs / "ai_toolkit.yaml").write_text(f"token: {SECRET}\n")
    (paths.root / "stdout.log").write_text("[isengard] context {}\nstep 1\n")
    many = MAX_BUNDLE_SAMPLES + 6
    # ai-toolkit: output/<name>/samples/<ms>__<step>_<i>.jpg, oldest first
    tool = paths.root / "output" / "my_lora" / "samples"
    for i in range(many):
        _image(tool / f"17000{i:05d}__{i * 50:09d}_0.jpg", age_s=many - i)
    (tool / "notes.txt").write_text("not an image")
    lora = paths.root / "output" / "my_lora" / "my_lora_000000250.safetensors"
    lora.write_bytes(b"\x00" * 64)
    _image(paths.root / "output" / "my_lora" / "other" / "stray.png", age_s=0)
    # sd-scripts: output/sample/
    _image(paths.root / "output" / "sample" / "my_lora_000100_00.png", age_s=0)
    # the app's own samples/
    for i in range(many):
        _image(paths.samples / f"step{i:05d}.png", age_s=many - i)
    (paths.samples / "prompts.json").write_text("[]")

    dest = write_debug_bundle(paths, tmp_path / "bundle.zip", {"state": "failed"}, [SECRET],
                              probe_torch=False)
    with zipfile.ZipFile(dest) as zf:
        names = set(zf.namelist())
        blob = b"".join(zf.read(n) for n in names)
    tool_names = sorted(n for n in names if n.startswith("output/my_lora/samples/"))
    # capped like the app's samples: the newest ones (of every sample folder under
    # output/), the oldest left out
    assert len(tool_names) == MAX_BUNDLE_SAMPLES - 1
    assert "output/sample/my_lora_000100_00.png" in names
    newest = f"output/my_lora/samples/17000{many - 1:05d}__{(many - 1) * 50:09d}_0.jpg"
    assert tool_names[-1] == newest
    assert "output/my_lora/samples/1700000000__000000000_0.jpg" not in names
    app_names = sorted(n for n in names if n.startswith("samples/") and n.endswith(".png"))
    assert len(app_names) == MAX_BUNDLE_SAMPLES
    assert app_names[-1] == f"samples/step{many - 1:05d}.png"
    assert "samples/step00000.png" not in names
    assert "samples/prompts.json" in names
    # never the LoRA, files outside the sample folders, or a secret
    assert not any(n.endswith(".safetensors") for n in names)
    assert "output/my_lora/other/stray.png" not in names
    assert "output/my_lora/samples/notes.txt" not in names
    assert SECRET.encode() not in blob
    assert {"configs/ai_toolkit.yaml", "stdout.log", "record.json", "checkpoints.json",
            "environment.json"} <= names


def test_bundle_without_output_folder(tmp_path):
    paths = JobPaths(tmp_path / "jobs" / "job2")
    paths.root.mkdir(parents=True)
    dest = write_debug_bundle(paths, tmp_path / "b.zip", {}, [], probe_torch=False)
    with zipfile.ZipFile(dest) as zf:
        assert not any(n.startswith(("output/", "samples/")) for n in zf.namelist())
