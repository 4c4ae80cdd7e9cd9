"""The ai-toolkit and kohya backends through the real TrainingService / QProcess runner, with
the stand-ins of tests/helpers (standin_ai_toolkit.py, standin_kohya.py) installed as fake
trainer folders: start, progress, samples, checkpoints, stop & save, resume, crash / OOM,
completion → LoRA registered, and no secret in any file or log."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from isengard_desktop.core.training.installs import ExternalInstall
from isengard_desktop.core.training.protocol import PhaseEvent, StepEvent
from isengard_desktop.core.training.spec import TrainingJob, new_job_id
from isengard_desktop.plugins.ai_toolkit.backend import (
    AiToolkitBackend,
    loss_history,
    loss_log_path,
)
from isengard_desktop.plugins.kohya.backend import KohyaBackend
from isengard_desktop.plugins.registry import default_registry
from isengard_desktop.services.training.service import TrainingService
from tests.helpers.characters import add_character
from tests.helpers.service_harness import fast_training, start_library
from tests.helpers.standin_ai_toolkit import make_install as make_ai_toolkit
from tests.helpers.standin_kohya import make_install as make_kohya

HF_SECRET = "hf_PlantedSecretToken12345678"
WANDB_SECRET = "planted-Wandb-Secret-7d1e2f"
WAIT = 60_000


class Harness:
    def __init__(self, qtbot, tmp_path: Path) -> None:
        self.qtbot = qtbot
        self.tmp = tmp_path
        self.paths, self.library = start_library(qtbot, WAIT)
        add_character(qtbot, self.library, "Alice", trigger="alc", timeout=WAIT)
        self.character = self.library.characters()[0]
        # the character's photos: 3 imported (rows in the database), 2 copied into its
        # folder by hand (no rows): a job trains on the 3 only (issue 11, item 3)
        source = tmp_path / "photos"
        source.mkdir()
        from PIL import Image
        for i in range(5):
            Image.new("RGB", (64, 64), (40 * i, 90, 200)).save(source / f"img{i}.png")
            (source / f"img{i}.txt").write_text("a woman, smiling", encoding="utf-8")
        self.library.import_photos(self.character.id, [source / f"img{i}.png" for i in range(3)])
        qtbot.waitUntil(lambda: self.library.image_count(self.character.id) == 3, timeout=WAIT)
        self.dataset = self.library.character_folder(self.character)
        for i in (3, 4):
            (self.dataset / f"img{i}.png").write_bytes((source / f"img{i}.png").read_bytes())
        self.models = tmp_path / "models"
        (self.models / "FLUX.1-dev").mkdir(parents=True)
        for name in ("flux1-dev.safetensors", "clip_l.safetensors", "t5xxl.safetensors",
                     "ae.safetensors"):
            (self.models / name).write_bytes(b"weights")
        (self.models / "FLUX.1-dev" / "transformer").mkdir()   # a diffusers folder
        t5 = tmp_path / "comfy" / "text_encoders" / "t5_tokenizer"  # a ComfyUI install's
        t5.mkdir(parents=True)
        (t5 / "tokenizer.json").write_text('{"model": {"type": "Unigram"}}', encoding="utf-8")
        registry = default_registry()
        aitk = ExternalInstall(str(make_ai_toolkit(tmp_path / "ai-toolkit")), sys.executable)
        kohya = ExternalInstall(str(make_kohya(tmp_path / "sd-scripts")), sys.executable)
        registry.register("ai-toolkit", lambda: AiToolkitBackend(aitk), "ai-toolkit",
                          replace=True)
        registry.register("kohya", lambda: KohyaBackend(kohya), "kohya", replace=True)
        self.service = TrainingService(
            self.paths, self.library,
            lambda: {"HF_TOKEN": HF_SECRET, "WANDB_API_KEY": WANDB_SECRET}, registry)
        service = self.service
        fast_training(service, 20.0, 2.0)
        self.finished: list = []
        self.steps: list[tuple[str, StepEvent]] = []
        self.phases: list[tuple[str, PhaseEvent]] = []
        self.samples: list = []
        self.checkpoints: list = []
        self.errors: list = []
        self.logs: list = []
        service.job_finished.connect(self.finished.append)
        service.progressed.connect(lambda j, e: self.steps.append((j, e)))
        service.phase_changed.connect(lambda j, e: self.phases.append((j, e)))
        service.sample_added.connect(lambda j, e: self.samples.append((j, e)))
        service.checkpoint_saved.connect(lambda j, e: self.checkpoints.append((j, e)))
        service.error_reported.connect(lambda j, e: self.errors.append((j, e)))
        service.log_appended.connect(lambda j, s, lines: self.logs.append((j, s, lines)))
        service.start()
        qtbot.waitUntil(lambda: service.is_ready, timeout=WAIT)

    def job(self, backend: str, family: str, **kw) -> TrainingJob:
        base = "FLUX.1-dev" if backend == "ai-toolkit" else "flux1-dev.safetensors"
        values = dict(job_id=new_job_id(), character_id=self.character.id,
                      character_name=self.character.name, trigger_word="alc", family=family,
                      base_model=str(self.models / base), dataset_dir=str(self.dataset),
                      output_name="alice_lora", backend=backend, steps=40, sample_every=10,
                      checkpoint_every=10, sample_prompts=["portrait of alc", "at the beach"])
        if backend == "kohya":
            values["extra"] = {"fields": {"clip_l": str(self.models / "clip_l.safetensors"),
                                          "t5xxl": str(self.models / "t5xxl.safetensors"),
                                          "ae": str(self.models / "ae.safetensors"),
                                          "vram": "12"}}
        values.update(kw)
        return TrainingJob(**values)

    def wait_final(self, job_id: str):
        self.qtbot.waitUntil(lambda: any(r.job_id == job_id for r in self.finished),
                             timeout=WAIT)
        return self.service.job(job_id)

    def wait_step(self, job_id: str, step: int) -> None:
        self.qtbot.waitUntil(lambda: self.service.job(job_id).step >= step, timeout=WAIT)

    def log_text(self, job_id: str, stream: str | None = None) -> str:
        return "\n".join(line for j, s, lines in self.logs if j == job_id
                         and (stream is None or s == stream) for line in lines)

    def close(self) -> None:
        self.service.shutdown()
        self.library.shutdown()


@pytest.fixture
def h(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_DELAY", "0.02")
    monkeypatch.delenv("STANDIN_FAIL", raising=False)
    monkeypatch.delenv("STANDIN_LOAD_DELAY", raising=False)
    harness = Harness(qtbot, tmp_path)
    yield harness
    harness.close()


def assert_no_secrets(record) -> None:
    root = record.job_dir
    for path in root.rglob("*"):
        if path.is_file() and path.suffix in (".log", ".jsonl", ".json", ".yaml", ".toml",
                                              ".txt", ".py"):
            text = path.read_text(encoding="utf-8", errors="replace")
            assert HF_SECRET not in text and WANDB_SECRET not in text, path


@pytest.mark.parametrize("backend, family", [("ai-toolkit", "flux-dev"),
                                             ("kohya", "flux-dev")])
def test_runs_to_completion_and_registers_the_lora(h, backend, family):
    job = h.job(backend, family, extra={**h.job(backend, family).extra, "wandb": True})
    h.service.submit(job)
    done = h.wait_final(job.job_id)
    assert done.state == "completed", done.error_message
    assert done.step == 40 and done.total_steps == 40 and done.last_loss is not None
    assert done.lora_path.endswith("alice_lora.safetensors") and Path(done.lora_path).is_file()
    h.qtbot.waitUntil(lambda: bool(h.library.loras(h.character.id)), timeout=WAIT)
    lora = h.library.loras(h.character.id)[0]
    assert lora.family == family and lora.steps == 40
    assert Path(lora.path).read_bytes() == Path(done.lora_path).read_bytes()
    steps = [e for j, e in h.steps if j == job.job_id]
    assert steps and steps[-1].total == 40 and steps[-1].step >= 39
    assert all(e.sec_per_step > 0 for e in steps)
    phases = [e.phase for j, e in h.phases if j == job.job_id]
    for phase in ("loading_model", "caching", "training", "saving"):
        assert phase in phases, phases
    samples = [e for j, e in h.samples if j == job.job_id]
    assert len(samples) >= 6 and all(Path(s.path).is_file() for s in samples)
    assert {s.step for s in samples} >= {10, 20, 30}
    assert all("alc" in s.prompt for s in samples)
    checkpoints = [e for j, e in h.checkpoints if j == job.job_id]
    assert [c.step for c in checkpoints][:3] == [10, 20, 30]
    assert all(c.resumable for c in checkpoints)
    stderr = h.log_text(job.job_id, "stderr")
    assert "\x1b" not in stderr and "\x1b" not in h.log_text(job.job_id, "stdout")
    events = [json.loads(line) for line in done.paths.events.read_text().splitlines()]
    assert [e["event"] for e in events].count("done") == 1
    # the job's photo list (the 3 rows), staged by the app; the 2 files without rows are not
    staged = done.paths.root / "dataset"
    recorded = {i.path.name for i in h.library.images(h.character.id)}
    assert len(recorded) == 3
    assert {p.name for p in staged.iterdir() if p.suffix == ".png"} == recorded
    for name in recorded:
        assert (staged / name).with_suffix(".txt").read_text().strip() == \
            "alc, a woman, smiling"
    if backend == "ai-toolkit":
        history = loss_history(loss_log_path(job, done.paths))
        assert [s for s, _ in history] == list(range(40))
    assert_no_secrets(done)


@pytest.mark.parametrize("backend", ["ai-toolkit", "kohya"])
def test_stop_then_resume_finishes_the_planned_steps(h, backend):
    job = h.job(backend, "flux-dev", steps=120, sample_every=0,
                checkpoint_every=0 if backend == "ai-toolkit" else 20)
    h.service.submit(job)
    h.wait_step(job.job_id, 30)
    h.service.stop(job.job_id)
    stopped = h.wait_final(job.job_id)
    assert stopped.state == "stopped", stopped.error_message
    assert stopped.resumable
    if backend == "ai-toolkit":   # the launcher saves the step in progress
        assert stopped.checkpoint_step >= 30
        assert any(c.step == stopped.checkpoint_step for j, c in h.checkpoints)
    else:                         # sd-scripts cannot: its newest periodic state
        assert stopped.checkpoint_step >= 20 and stopped.checkpoint_step % 20 == 0
        assert "cannot save on request" in h.log_text(job.job_id, "stdout") or \
            stopped.checkpoint_step >= stopped.step
    at = stopped.checkpoint_step
    # the newest save is the character's LoRA, "stopped at step N" (issue 11, item 16)
    name = f"alice_lora-step{at}.safetensors"
    assert stopped.lora_path == str(stopped.paths.root / name)
    h.qtbot.waitUntil(lambda: any(Path(lo.path).name == name
                                  for lo in h.library.loras(h.character.id)), timeout=WAIT)
    (lora,) = h.library.loras(h.character.id)
    assert lora.steps == at and Path(lora.path).parent == h.service.paths.loras

    h.finished.clear()
    h.steps.clear()
    h.service.resume(job.job_id)
    done = h.wait_final(job.job_id)
    assert done.state == "completed", done.error_message
    assert done.step == 120
    resumed = [e.step for j, e in h.steps if j == job.job_id]
    assert resumed and min(resumed) >= at - 1 and resumed[-1] >= 119
    log = h.log_text(job.job_id)
    if backend == "ai-toolkit":
        assert "#### IMPORTANT RESUMING FROM" in log and f"_{at:09d}.safetensors" in log
    else:
        assert "resume training from local state:" in log
        assert f"skipping {at} steps" in log
    assert_no_secrets(done)


@pytest.mark.parametrize("backend, fail, kind, words", [
    ("ai-toolkit", "oom@12", "oom", "CUDA out of memory"),
    ("ai-toolkit", "crash@12", "crash", "exited with code 1"),
    ("ai-toolkit", "missing", "model_missing", "does not appear to have a file named"),
    ("kohya", "oom@12", "oom", "CUDA out of memory"),
    ("kohya", "crash@12", "crash", "stand-in crash"),
    ("kohya", "missing", "model_missing", "No such file or directory"),
])
def test_failures_become_error_events(h, monkeypatch, backend, fail, kind, words):
    monkeypatch.setenv("STANDIN_FAIL", fail)
    job = h.job(backend, "flux-dev")
    h.service.submit(job)
    done = h.wait_final(job.job_id)
    assert done.state == "failed" and done.error_kind == kind, done.error_message
    assert words in done.error_message
    assert [e.kind for j, e in h.errors if j == job.job_id] == [kind]
    assert not h.library.loras(h.character.id)


def test_a_missing_field_fails_the_launch_with_its_name(h):
    job = h.job("kohya", "flux-dev", extra={"fields": {}})
    h.service.submit(job)
    done = h.wait_final(job.job_id)
    assert done.state == "failed" and done.error_kind == "config"
    assert "fields.clip_l" in done.error_message


def test_stop_while_loading_ends_at_once(h, monkeypatch):
    monkeypatch.setenv("STANDIN_LOAD_DELAY", "5")
    job = h.job("ai-toolkit", "sd15", base_model=str(h.models / "flux1-dev.safetensors"),
                steps=400, sample_every=0, checkpoint_every=0)
    h.service.submit(job)
    h.qtbot.waitUntil(lambda: any(j == job.job_id and e.phase == "loading_model"
                                  for j, e in h.phases), timeout=WAIT)
    began = time.monotonic()
    h.service.stop(job.job_id)
    done = h.wait_final(job.job_id)
    assert time.monotonic() - began < 4.0   # did not wait for the grace period or a step
    assert done.state == "stopped" and not done.resumable
    assert "cannot be resumed" in h.log_text(job.job_id)


def test_kohya_out_of_memory_recovers_by_swapping_more_blocks(h, monkeypatch):
    """The sd-scripts stand-in prints a CUDA OOM traceback at step 25 while fewer than 32
    blocks are swapped: the job (12 GB preset: 16 blocks) resumes from its step-20 state with
    fp8 and 24 blocks, runs out again, resumes with 32, and completes its 40 steps."""
    monkeypatch.setenv("STANDIN_FAIL", "oom@25")
    monkeypatch.setenv("STANDIN_OOM_UNLESS_SWAP", "32")
    job = h.job("kohya", "flux-dev", steps=40, sample_every=0, checkpoint_every=20)
    h.service.submit(job)
    done = h.wait_final(job.job_id)
    assert done.state == "completed", done.error_message
    assert done.step == 40 and done.total_steps == 40
    assert done.oom_notes == (
        "recovered from out-of-memory at step 25: base model in 8-bit (float8), blocks "
        "swapped to CPU memory 16 → 24",
        "recovered from out-of-memory at step 25: blocks swapped to CPU memory 24 → 32")
    assert h.errors == []
    log = h.log_text(job.job_id)
    assert log.count("torch.OutOfMemoryError: CUDA out of memory") == 2
    assert log.count("resume training from local state:") == 2
    assert "skipping 20 steps" in log
    import tomllib

    with open(done.paths.configs / "kohya_args.toml", "rb") as fh:
        args = {k: v for section in tomllib.load(fh).values() if isinstance(section, dict)
                for k, v in section.items()}
    assert args["blocks_to_swap"] == 32 and args["fp8_base"] is True
    assert done.spec.extra["fields"]["blocks_to_swap"] == 32
    assert_no_secrets(done)


def test_kohya_third_out_of_memory_fails_with_what_was_tried(h, monkeypatch):
    monkeypatch.setenv("STANDIN_FAIL", "oom@25")
    job = h.job("kohya", "flux-dev", steps=40, sample_every=0, checkpoint_every=20)
    h.service.submit(job)
    done = h.wait_final(job.job_id)
    assert done.state == "failed" and done.error_kind == "oom"
    assert len(done.oom_notes) == 2
    assert done.error_message.startswith("The GPU ran out of memory at step 25, a third time")
    assert "blocks swapped to CPU memory 24 → 32" in done.error_message
    assert "CUDA out of memory" in done.error_message     # what the trainer said
    assert [(e.kind, e.message) for j, e in h.errors if j == job.job_id] == [
        ("oom", done.error_message)]
