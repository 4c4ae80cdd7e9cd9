"""diffusion-pipe through the real TrainingService and QProcess runner, with the stand-in
(tests/helpers/standin_diffusion_pipe.py) launched exactly as the real tool would be: start,
progress with our computed total, LoRA snapshots and DeepSpeed checkpoints, stop & save via
save_quit, resume, crash, OOM, completion with the LoRA registered, no secret anywhere."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from isengard_desktop.core.settings import Settings
from isengard_desktop.core.training.protocol import CheckpointEvent, StepEvent
from isengard_desktop.core.training.spec import SpecError, TrainingJob, new_job_id
from isengard_desktop.plugins.diffusion_pipe.backend import DATASET_FOLDER, OUTPUT_FOLDER
from isengard_desktop.plugins.registry import default_registry
from isengard_desktop.services.training.service import TrainingService
from tests.helpers.characters import add_character
from tests.helpers.photos import make_photos
from tests.helpers.service_harness import fast_training, start_library
from tests.helpers.standin_diffusion_pipe import make_fake_install, small_safetensors

WAIT = 30_000
WANDB_SECRET = "wandbSecret-0123456789abcdef0123456789"
HF_SECRET = "hf_" + "StandinSecretToken55aa66bb77"


class Harness:
    def __init__(self, qtbot, tmp_path: Path, monkeypatch) -> None:
        self.qtbot = qtbot
        self.paths, self.library = start_library(qtbot, WAIT)
        add_character(qtbot, self.library, "Alice", trigger="alc", timeout=WAIT)
        self.character = self.library.characters()[0]
        self.install = make_fake_install(tmp_path / "install")
        self.record = tmp_path / "launches.jsonl"
        monkeypatch.setenv("STANDIN_DP_RECORD", str(self.record))
        # the character's photos: 4 imported (rows), 1 copied in by hand (no row, never
        # trained on: issue 11, item 3)
        source = tmp_path / "photos"
        make_photos(source, 5, prefix="photo", size=(64, 64))
        for i in range(5):
            (source / f"photo_{i:03d}.txt").write_text(f"a woman in a park {i}")
        self.library.import_photos(self.character.id, sorted(source.glob("*.jpg"))[:4])
        qtbot.waitUntil(lambda: self.library.image_count(self.character.id) == 4, timeout=WAIT)
        self.dataset = self.library.character_folder(self.character)
        (self.dataset / "photo_004.jpg").write_bytes((source / "photo_004.jpg").read_bytes())
        self.models = tmp_path / "models"
        (self.models / "FLUX.1-dev").mkdir(parents=True)
        small_safetensors(self.models / "chroma-unlocked-v47.safetensors", 0)
        self.secrets: dict[str, str] = {"WANDB_API_KEY": WANDB_SECRET, "HF_TOKEN": HF_SECRET}
        self.service = TrainingService(self.paths, self.library, lambda: dict(self.secrets),
                                       default_registry())
        fast_training(self.service, 15.0)
        self.finished: list = []
        self.progress: list[StepEvent] = []
        self.checkpoints: list[CheckpointEvent] = []
        self.errors: list = []
        self.service.job_finished.connect(self.finished.append)
        self.service.progressed.connect(lambda j, e: self.progress.append(e))
        self.service.checkpoint_saved.connect(lambda j, e: self.checkpoints.append(e))
        self.service.error_reported.connect(lambda j, e: self.errors.append(e))
        self.service.apply_settings(Settings(trainer_installs={"diffusion-pipe": {
            "folder": self.install.folder, "python": self.install.python}}))
        self.service.start()
        qtbot.waitUntil(lambda: self.service.is_ready, timeout=WAIT)

    def job(self, steps: int = 8, **extra) -> TrainingJob:
        fields = {"diffusers_path": str(self.models / "FLUX.1-dev")}
        fields.update(extra.pop("fields", {}))
        return TrainingJob(job_id=new_job_id(), character_id=self.character.id,
                           character_name="Alice", trigger_word="alc", family="chroma",
                           base_model=str(self.models / "chroma-unlocked-v47.safetensors"),
                           dataset_dir=str(self.dataset), output_name="alice_lora",
                           backend="diffusion-pipe", steps=steps,
                           extra={"fields": fields, **extra})

    def wait_final(self, job_id: str, timeout: int = WAIT):
        self.qtbot.waitUntil(lambda: any(r.job_id == job_id for r in self.finished),
                             timeout=timeout)
        return self.service.job(job_id)

    def launches(self) -> list[dict]:
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def close(self) -> None:
        self.service.shutdown()
        self.library.shutdown()


@pytest.fixture
def h(qtbot, tmp_path, monkeypatch):
    harness = Harness(qtbot, tmp_path, monkeypatch)
    yield harness
    harness.close()


def job_files_text(root: Path) -> bytes:
    blob = b""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            blob += path.read_bytes()
    return blob


def test_runs_to_completion_with_our_total_checkpoints_and_the_lora_registered(h,
                                                                                monkeypatch):
    monkeypatch.setenv("STANDIN_DP_DELAY", "0.02")
    monkeypatch.setenv("STANDIN_DP_CHECKPOINT_EVERY", "3")
    job = h.job(steps=8, wandb=True)
    job.checkpoint_every = 4
    h.service.submit(job)
    done = h.wait_final(job.job_id)
    assert done.state == "completed", done.error_message
    assert done.step == 8 and done.total_steps == 8
    # progress carried our total from the first step on (diffusion-pipe prints none)
    assert h.progress and all(e.total == 8 for e in h.progress) and h.progress[-1].step == 8
    snapshots = [(e.step, Path(e.path).parent.name) for e in h.checkpoints if not e.resumable]
    assert snapshots == [(4, "step4"), (8, "step8")]
    assert [e.step for e in h.checkpoints if e.resumable] == [3, 6, 8]
    # the final LoRA: published in the job folder, then in the app's LoRA folder
    assert done.lora_path == str(done.paths.root / "alice_lora.safetensors")
    run = sorted((done.paths.root / OUTPUT_FOLDER).iterdir())[0]
    assert os.path.samefile(done.lora_path, run / "step8" / "adapter_model.safetensors")
    h.qtbot.waitUntil(lambda: bool(h.library.loras(h.character.id)), timeout=WAIT)
    lora = h.library.loras(h.character.id)[0]
    assert lora.steps == 8 and lora.family == "chroma"
    # launched like the real tool; its files; W&B got the key from the environment only
    [launch] = h.launches()
    assert launch["cwd"] == h.install.folder and launch["nccl"] == ["1", "1"]
    assert launch["argv"][0] == "train.py" and "--deepspeed" in launch["argv"]
    assert (run / "diffusion_pipe.toml").is_file() and (run / "latest").read_text() == \
        "global_step8"
    staged = done.paths.root / DATASET_FOLDER
    recorded = {i.path.name: i for i in h.library.images(h.character.id)}
    assert {p.name for p in staged.iterdir() if p.suffix == ".jpg"} == set(recorded)
    first = next(n for n in recorded if n.startswith("photo_000"))
    assert (staged / first).with_suffix(".txt").read_text() == "alc, a woman in a park 0\n"
    stdout, stderr = done.paths.stdout.read_text(), done.paths.stderr.read_text()
    assert "TRAINING COMPLETE!" in stdout
    assert "W&B API key is configured (from WANDB_API_KEY)" in stderr
    events = [json.loads(line) for line in done.paths.events.read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "step"] == list(range(1, 9))
    assert events[-1]["event"] == "done"
    # no secret in any file of the job (configs, logs, events), nor in argv
    blob = job_files_text(done.paths.root) + json.dumps(h.launches()).encode()
    assert WANDB_SECRET.encode() not in blob and HF_SECRET.encode() not in blob


def test_stop_and_save_via_save_quit_then_resume(h, monkeypatch):
    monkeypatch.setenv("STANDIN_DP_DELAY", "0.03")
    job = h.job(steps=60)
    job.checkpoint_every = 4       # LoRA saves every 4 steps (save_every_n_steps)
    h.service.submit(job)
    h.qtbot.waitUntil(lambda: h.service.job(job.job_id).step >= 5, timeout=WAIT)
    h.service.stop(job.job_id)
    stopped = h.wait_final(job.job_id)
    assert stopped.state == "stopped", stopped.error_message
    assert stopped.resumable and 5 <= stopped.checkpoint_step < 60
    at = stopped.checkpoint_step
    # the newest LoRA save is the character's LoRA, "stopped at step N" (issue 11, item 16)
    saved = at // 4 * 4
    name = f"alice_lora-step{saved}.safetensors"
    assert stopped.lora_path == str(stopped.paths.root / name)
    h.qtbot.waitUntil(lambda: any(Path(lo.path).name == name
                                  for lo in h.library.loras(h.character.id)), timeout=WAIT)
    assert h.library.loras(h.character.id)[0].steps == saved
    run = sorted((stopped.paths.root / OUTPUT_FOLDER).iterdir())[-1]
    assert (run / "latest").read_text() == f"global_step{at}"
    assert not (run / "save_quit").exists()                    # the tool took it
    assert "Manually quitting" in stopped.paths.stdout.read_text()

    h.finished.clear()
    monkeypatch.setenv("STANDIN_DP_DELAY", "0.0")
    h.service.resume(job.job_id)
    done = h.wait_final(job.job_id)
    assert done.state == "completed", done.error_message
    assert done.step == 60
    first, second = h.launches()
    assert "--resume_from_checkpoint" not in first["argv"]
    assert second["argv"][-2:] == ["--resume_from_checkpoint", run.name]
    assert f"Resuming at epoch: {at // 4 + 1}, step: {at + 1}" in done.paths.stdout.read_text()
    steps = [json.loads(line)["step"] for line in done.paths.events.read_text().splitlines()
             if '"event":"step"' in line]
    assert steps[:at] == list(range(1, at + 1)) and steps[-(60 - at):] == list(range(at + 1, 61))
    assert len(list((done.paths.root / OUTPUT_FOLDER).iterdir())) == 1   # same run folder


def test_crash_and_oom_fail_with_their_reason(h, monkeypatch):
    monkeypatch.setenv("STANDIN_DP_CRASH_AT", "3")
    job = h.job(steps=8)
    h.service.submit(job)
    crashed = h.wait_final(job.job_id)
    assert crashed.state == "failed" and crashed.error_kind == "crash"
    assert "exited with code 1" in crashed.error_message
    assert "RuntimeError: simulated crash at step 3" in crashed.error_message
    assert not crashed.resumable
    monkeypatch.delenv("STANDIN_DP_CRASH_AT")
    monkeypatch.setenv("STANDIN_DP_OOM_AT", "2")
    job = h.job(steps=8)
    h.service.submit(job)
    oom = h.wait_final(job.job_id)
    assert oom.state == "failed" and oom.error_kind == "oom"
    # out of memory in every run: recovered twice (float8, then more blocks swapped), then
    # failed with what was tried and what the tool said
    assert oom.oom_notes == (
        "recovered from out-of-memory at step 2: base model in 8-bit (float8), blocks "
        "swapped to CPU memory 0 → 8",
        "recovered from out-of-memory at step 2: blocks swapped to CPU memory 8 → 16")
    assert oom.error_message.startswith("The GPU ran out of memory at step 2, a third time")
    assert "The trainer said: The GPU ran out of memory at step 1." in oom.error_message
    assert "torch.OutOfMemoryError: CUDA out of memory" in oom.error_message
    assert [e.kind for e in h.errors] == ["crash", "oom"]


def test_config_problems_fail_before_or_at_launch(h, tmp_path):
    # a missing path key is refused before anything runs, naming the key
    job = h.job(fields={"diffusers_path": str(tmp_path / "no-flux")})
    h.service.submit(job)
    refused = h.wait_final(job.job_id)
    assert refused.state == "failed" and refused.error_kind == "config"
    assert "fields.diffusers_path:" in refused.error_message
    assert "does not exist" in refused.error_message
    assert not h.record.exists()                                 # never launched
    # W&B on without a key: the tool refuses, as the real one would
    h.secrets.clear()
    job = h.job(wandb=True)
    h.service.submit(job)
    failed = h.wait_final(job.job_id)
    assert failed.state == "failed" and "api_key not configured" in failed.error_message
    # settings without diffusion-pipe: refused at submit, saying what to do
    h.service.apply_settings(Settings())
    job = h.job()
    with pytest.raises(SpecError, match="backend: diffusion-pipe cannot run here: .*"
                                        "Settings → Trainers"):
        h.service.submit(job)
    assert h.service.job(job.job_id) is None


def test_settings_change_rebinds_the_backend(h):
    first = h.service.registry.get("diffusion-pipe")
    h.service.apply_settings(Settings(trainer_installs={"diffusion-pipe": {
        "folder": h.install.folder, "python": h.install.python}}))
    assert h.service.registry.get("diffusion-pipe") is first          # unchanged: kept
    h.service.apply_settings(Settings(trainer_installs={"diffusion-pipe": {
        "folder": "/elsewhere", "python": h.install.python}}))
    again = h.service.registry.get("diffusion-pipe")
    assert again is not first and again.install.folder == "/elsewhere"
    assert "does not exist" in again.available()[1]
