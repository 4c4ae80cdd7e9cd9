"""Checkpoint discovery and verification (core/training/checkpoints.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from isengard_desktop.core.training.checkpoints import (MANIFEST_NAME, latest_complete,
                                                         list_checkpoints, read_manifest,
                                                         verify_checkpoint, write_manifest)

FAKE = Path(__file__).parents[1] / "helpers" / "fake_trainer.py"


def make_checkpoint(job_dir: Path, step: int, manifest: bool = True) -> Path:
    folder = job_dir / "checkpoints" / f"checkpoint-{step}"
    (folder / "state").mkdir(parents=True)
    (folder / "adapter.safetensors").write_bytes(b"weights" * (step + 1))
    (folder / "state" / "optimizer.pt").write_bytes(b"opt" * step)
    if manifest:
        write_manifest(folder, step)
    return folder


def test_newest_first_and_incomplete_ones_are_marked(tmp_path):
    for step in (50, 200, 100):
        make_checkpoint(tmp_path, step)
    make_checkpoint(tmp_path, 300, manifest=False)          # killed while saving
    (tmp_path / "checkpoints" / "checkpoint-400.tmp").mkdir()  # not a checkpoint name
    (tmp_path / "checkpoints" / "notes.txt").write_text("x")
    found = list_checkpoints(tmp_path)
    assert [c.step for c in found] == [300, 200, 100, 50]
    assert [c.complete for c in found] == [False, True, True, True]
    assert "manifest" in found[0].problem
    assert latest_complete(tmp_path).step == 200
    # the checkpoints/ folder itself is accepted too
    assert list_checkpoints(tmp_path / "checkpoints")[1].step == 200


def test_manifest_format_and_subfolders(tmp_path):
    folder = make_checkpoint(tmp_path, 7)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert manifest["step"] == 7 and manifest["version"] == 1
    assert set(manifest["files"]) == {"adapter.safetensors", "state/optimizer.pt"}
    entry = manifest["files"]["adapter.safetensors"]
    assert entry["bytes"] == len(b"weights" * 8) and len(entry["sha256"]) == 64
    assert read_manifest(folder) == manifest


def test_size_and_hash_mismatches_are_caught(tmp_path):
    folder = make_checkpoint(tmp_path, 10)
    older = make_checkpoint(tmp_path, 5)
    assert verify_checkpoint(folder) == (True, "")
    # same size, different bytes: only the deep check sees it
    data = bytearray((folder / "adapter.safetensors").read_bytes())
    data[0] ^= 0xFF
    (folder / "adapter.safetensors").write_bytes(bytes(data))
    assert verify_checkpoint(folder, deep=False)[0] is True
    ok, why = verify_checkpoint(folder, deep=True)
    assert not ok and "sha256" in why
    assert latest_complete(tmp_path, deep=True).path == older
    assert latest_complete(tmp_path, deep=False).path == folder
    # truncated file: the size check sees it
    (folder / "adapter.safetensors").write_bytes(b"x")
    ok, why = verify_checkpoint(folder, deep=False)
    assert not ok and "bytes" in why
    (folder / "state" / "optimizer.pt").unlink()
    assert "missing" in verify_checkpoint(folder)[1] or "bytes" in verify_checkpoint(folder)[1]


def test_bad_manifests(tmp_path):
    folder = tmp_path / "checkpoints" / "checkpoint-3"
    folder.mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"a")
    cases = {
        "{not json": "not valid JSON",
        json.dumps({"files": {}}): "'step'",
        json.dumps({"step": 3, "files": {"../escape": {"size": 1, "sha256": "0"}}}): "unsafe",
        json.dumps({"step": 3, "files": {"/abs": {"size": 1, "sha256": "0"}}}): "unsafe",
        json.dumps({"step": 3, "files": {"a.bin": {"bytes": 1}}}): "sha256",
        json.dumps({"version": 2, "step": 3, "files": {}}): "newer",
        json.dumps({"step": 4, "files": {"a.bin": {"size": 1, "sha256": "0"}}}): "step 4",
        json.dumps({"step": 3, "files": {}}): "no files",
    }
    for text, expected in cases.items():
        (folder / MANIFEST_NAME).write_text(text)
        ok, why = verify_checkpoint(folder)
        assert not ok and expected in why, (text, why)
    assert latest_complete(tmp_path) is None


def test_missing_folder_gives_nothing(tmp_path):
    assert list_checkpoints(tmp_path / "nope") == []
    assert latest_complete(tmp_path / "nope") is None


def test_fake_trainer_checkpoints_verify(tmp_path):
    """The test trainer writes the documented format (the runner tests rely on it)."""
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"job_id": "abc"}))
    result = subprocess.run([sys.executable, str(FAKE), "--job", str(job), "--job-dir",
                             str(tmp_path), "--steps", "6", "--checkpoint-every", "2"],
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    found = list_checkpoints(tmp_path, deep=True)
    assert [c.step for c in found] == [4, 2] and all(c.complete for c in found)


def test_reads_what_the_builtin_runtime_writes(tmp_path):
    """Same format as training_runtime/checkpoints.py (the built-in trainer's writer)."""
    from isengard_desktop.training_runtime import checkpoints as runtime

    root = tmp_path / "checkpoints"
    runtime.save(root, 40, {"lora.safetensors": lambda p: p.write_bytes(b"w" * 40),
                            "optimizer.pt": lambda p: p.write_bytes(b"o" * 9)},
                 meta={"total": 100})
    runtime.save(root, 80, {"lora.safetensors": lambda p: p.write_bytes(b"w" * 80)})
    found = list_checkpoints(tmp_path, deep=True)
    assert [(c.step, c.complete) for c in found] == [(80, True), (40, True)]
    (root / "checkpoint-80" / "lora.safetensors").write_bytes(b"w" * 79 + b"x")
    assert latest_complete(tmp_path).step == 40
    # and the runtime accepts a manifest written here
    mine = make_checkpoint(tmp_path, 120)
    assert runtime.verify(mine) == (True, "")
    assert runtime.verify(mine, full=False) == (True, "")
