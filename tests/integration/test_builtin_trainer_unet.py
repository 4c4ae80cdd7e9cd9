"""The built-in trainer as a real child process on tiny random SD1.5-like and SDXL-like models.

Runs ``python -m isengard_desktop.training_runtime train`` exactly as the app does and checks
what the user relies on: only protocol JSON on stdout, phases in order, falling loss, a LoRA
file with kohya keys, the real alpha and the metadata, which changes the model exactly as the
trained adapter did (applied the way ComfyUI applies it); stop & save, kill -9 and resume
(finishing at the planned step count with the same LoRA an uninterrupted run makes), a torn
checkpoint skipped, and error events for a missing model and a bad spec.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from isengard_desktop.core.training.protocol import (CheckpointEvent, DoneEvent, ErrorEvent,
                                                     LogEvent, PhaseEvent, SampleEvent,
                                                     StepEvent, StoppedEvent, parse_event)
from isengard_desktop.core.training.dataset_list import entries_from_folder, write_dataset_list
from isengard_desktop.core.training.spec import JobPaths, TrainingJob
from isengard_desktop.training_runtime import tiny_models as tiny
from tests.helpers import lora_checks as lc

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
STEPS = 40


@dataclass
class Run:
    events: list = field(default_factory=list)
    returncode: int | None = None
    stderr: str = ""

    def of(self, cls) -> list:
        return [e for e in self.events if isinstance(e, cls)]

    @property
    def losses(self) -> list[float]:
        return [e.loss for e in self.of(StepEvent)]


def run_child(job_path: Path, job_dir: Path, resume: bool = False, on_event=None,
              timeout: float = 90) -> Run:
    """Run the trainer child; ``on_event(proc, event)`` may stop or kill it."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS="1")
    argv = [sys.executable, "-m", "isengard_desktop.training_runtime", "train",
            "--job", str(job_path), "--job-dir", str(job_dir)] + (["--resume"] if resume else [])
    job_dir.mkdir(parents=True, exist_ok=True)
    err_path = job_dir / f"stderr-{len(list(job_dir.glob('stderr-*')))}.log"
    run = Run()
    with open(err_path, "w") as err, subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO,
            env=env) as proc:
        try:
            for line in proc.stdout:
                event = parse_event(line)
                assert event is not None, f"stdout line is not a protocol event: {line!r}"
                run.events.append(event)
                if on_event is not None:
                    on_event(proc, event)
            run.returncode = proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    run.stderr = err_path.read_text(errors="replace")
    return run


def write_job(folder: Path, **fields) -> Path:
    data = dict(job_id="job1", character_id=1, character_name="Alice", trigger_word="sks",
                family="sd15", output_name="alice_lora", resolution=64, rank=4, alpha=8.0,
                learning_rate=5e-3, steps=STEPS, batch_size=2, caption_dropout=0.1,
                sample_every=20, sample_prompts=["a portrait"], sample_steps=2,
                checkpoint_every=10, keep_checkpoints=2, gradient_checkpointing=False)
    data.update(fields)
    job = TrainingJob.from_dict(data)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "job.json"
    path.write_text(job.to_json(), encoding="utf-8")
    # run without the app: the photo list the app would write, made from the folder
    write_dataset_list(folder, entries_from_folder(job.dataset_dir))
    return path


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-unet")
    sd15 = tiny.build_sd15(root / "sd15", prediction_type="epsilon")
    sdxl = tiny.build_sdxl(root / "sdxl", prediction_type="v_prediction")
    single = tiny.build_sd15_single_file(root / "sd15-single.safetensors", sd15)
    data = tiny.make_dataset(root / "data", count=4)
    return {"root": root, "sd15": sd15, "sdxl": sdxl, "single": single, "data": data}


def _sd15_scenario(assets) -> tuple[Path, Run]:
    """One uninterrupted SD1.5 (ε-prediction) run on the diffusers folder."""
    job_dir = assets["root"] / "job-sd15"
    job = write_job(job_dir, base_model=str(assets["sd15"]), dataset_dir=str(assets["data"]))
    return job_dir, run_child(job, job_dir)


def _sdxl_scenario(assets) -> tuple[Path, Run, Run]:
    """SDXL (v-prediction, gradient checkpointing, accumulation, cosine schedule with warm-up):
    "stop" on stdin after the first checkpoint, then resumed."""
    job_dir = assets["root"] / "job-sdxl"
    job = write_job(job_dir, family="sdxl", base_model=str(assets["sdxl"]),
                    dataset_dir=str(assets["data"]), gradient_checkpointing=True, grad_accum=2,
                    lr_scheduler="cosine", warmup_steps=2, learning_rate=1e-2)

    def stop_after_checkpoint(proc, event):
        if isinstance(event, CheckpointEvent) and event.step == 10:
            proc.stdin.write("stop\n")
            proc.stdin.flush()

    first = run_child(job, job_dir, on_event=stop_after_checkpoint)
    return job_dir, first, run_child(job, job_dir, resume=True)


def _kill_scenario(assets) -> tuple[Path, Run, Run]:
    """The SD1.5 job on the single-file (original-layout) checkpoint, loaded offline through
    a config folder: SIGKILL right after the step-20 checkpoint, then resumed."""
    job_dir = assets["root"] / "job-kill"
    job = write_job(job_dir, base_model=str(assets["single"]), dataset_dir=str(assets["data"]),
                    sample_every=0, extra={"config_dir": str(assets["sd15"])})

    def kill_after_checkpoint(proc, event):
        if isinstance(event, CheckpointEvent) and event.step == 20:
            proc.kill()     # SIGKILL (TerminateProcess on Windows)

    first = run_child(job, job_dir, on_event=kill_after_checkpoint)
    return job_dir, first, run_child(job, job_dir, resume=True)


def _sigterm_scenario(assets) -> tuple[Path, Run]:
    """SIGTERM during training (what the app's runner sends when "stop" is not heard)."""
    job_dir = assets["root"] / "job-sigterm"
    job = write_job(job_dir, base_model=str(assets["sd15"]), dataset_dir=str(assets["data"]),
                    sample_every=0, checkpoint_every=0)

    def term_on_first_step(proc, event):
        if isinstance(event, StepEvent) and event.step == 1:
            proc.send_signal(signal.SIGTERM)

    return job_dir, run_child(job, job_dir, on_event=term_on_first_step)


def _torn_scenario(assets, sd15) -> tuple[Path, Run]:
    """The finished SD1.5 run's checkpoints (30 and 40) with checkpoint-40 truncated, resumed."""
    job_dir = assets["root"] / "job-torn"
    shutil.copytree(sd15.result()[0] / "checkpoints", job_dir / "checkpoints")
    job = write_job(job_dir, base_model=str(assets["sd15"]), dataset_dir=str(assets["data"]),
                    sample_every=0)
    adapter = job_dir / "checkpoints" / "checkpoint-40" / "adapter.safetensors"
    with open(adapter, "r+b") as fh:
        fh.truncate(adapter.stat().st_size // 2)
    return job_dir, run_child(job, job_dir, resume=True)


@pytest.fixture(scope="module")
def scenarios(assets):
    """Every trainer run of this module, two at a time (one torch thread each, so two
    children share the two cores instead of fighting over them)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        sd15 = pool.submit(_sd15_scenario, assets)
        futures = {"sd15": sd15, "sdxl": pool.submit(_sdxl_scenario, assets),
                   "kill": pool.submit(_kill_scenario, assets),
                   "torn": pool.submit(_torn_scenario, assets, sd15),
                   "sigterm": pool.submit(_sigterm_scenario, assets)}
        yield futures


@pytest.fixture(scope="module")
def sd15_run(scenarios):
    return scenarios["sd15"].result()


@pytest.fixture(scope="module")
def sdxl_runs(scenarios):
    return scenarios["sdxl"].result()


def assert_trained(run: Run, total: int) -> None:
    assert run.returncode == 0, run.stderr[-3000:]
    assert not run.of(ErrorEvent)
    done = run.of(DoneEvent)
    assert len(done) == 1 and done[0].steps == total
    assert isinstance(run.events[-1], DoneEvent)
    assert Path(done[0].lora).is_file()


def assert_loss_falls(losses: list[float]) -> None:
    assert len(losses) >= 30
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.85 * first, (first, last)


# --------------------------------------------------------------------------- SD1.5


def test_sd15_trains_to_completion(sd15_run):
    job_dir, run = sd15_run
    assert_trained(run, STEPS)
    phases = [e.phase for e in run.of(PhaseEvent)]
    assert phases[0] == "loading_model"
    firsts = [phases.index(p) for p in ("loading_model", "caching", "training")]
    assert firsts == sorted(firsts)
    caching = [e for e in run.of(PhaseEvent) if e.phase == "caching"]
    assert caching[-1].done == caching[-1].total > 0
    assert [e.step for e in run.of(StepEvent)] == list(range(1, STEPS + 1))
    assert all(e.total == STEPS and e.lr == pytest.approx(5e-3) and e.sec_per_step > 0
               for e in run.of(StepEvent))
    assert run.of(StepEvent)[-1].eta_sec == 0
    assert_loss_falls(run.losses)
    samples = run.of(SampleEvent)
    assert [s.step for s in samples] == [20, 40]
    assert all(s.prompt == "sks, a portrait" for s in samples)
    for s in samples:
        assert Path(s.path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [c.step for c in run.of(CheckpointEvent)] == [10, 20, 30, 40]
    kept = sorted(p.name for p in JobPaths(job_dir).checkpoints.iterdir())
    assert kept == ["checkpoint-30", "checkpoint-40"]  # keep_checkpoints=2


def _lora_file(job_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(JobPaths(job_dir).lora("alice_lora")))


def assert_kohya_file(job_dir: Path, arch: str, version: str, prediction: str) -> None:
    path = JobPaths(job_dir).lora("alice_lora")
    lc.assert_kohya_keys(lc.load_lora(path), rank=4, alpha=8.0)
    meta = lc.read_metadata(path)
    lc.assert_lora_metadata(meta, output_name="alice_lora", rank=4, alpha=8.0, steps=STEPS,
                            architecture=arch, base_model_version=version, trigger="sks",
                            title="Alice")
    assert meta["ss_resolution"] == "(64, 64)"
    assert json.loads(meta["ss_tag_frequency"])["data"]["sks"] == 4
    assert meta["modelspec.prediction_type"] == prediction


def test_sd15_lora_file_has_kohya_keys_alpha_and_metadata(sd15_run):
    job_dir, _ = sd15_run
    assert_kohya_file(job_dir, "stable-diffusion-v1/lora", "sd_v1", "epsilon")
    names = set(_lora_file(job_dir))
    # original (LDM) layout names, as ComfyUI/A1111 know the real SD1.5 UNet
    assert "lora_unet_input_blocks_1_1_transformer_blocks_0_attn2_to_k.lora_down.weight" in names
    assert "lora_unet_middle_block_1_proj_in.alpha" in names
    assert "lora_unet_output_blocks_5_1_transformer_blocks_0_ff_net_2.lora_up.weight" in names


def test_sd15_each_checkpoint_holds_the_lora_of_its_step(sd15_run):
    """Checkpoint comparison: every kept checkpoint carries the LoRA file of its weights (the
    final one is the job's LoRA, tensor for tensor), and the grid built from the events has a
    row per saved step with the samples, the pruned steps' LoRAs shown as removed."""
    from safetensors.torch import load_file

    from isengard_desktop.core.training.checkpoint_grid import CHECKPOINT_LORA_FILE, build_grid

    job_dir, run = sd15_run
    root = JobPaths(job_dir).checkpoints
    final = load_file(str(root / f"checkpoint-{STEPS}" / CHECKPOINT_LORA_FILE))
    job_lora = _lora_file(job_dir)
    assert final.keys() == job_lora.keys()
    assert all(torch.equal(final[k], job_lora[k]) for k in final)
    middle = root / "checkpoint-30" / CHECKPOINT_LORA_FILE
    assert lc.read_metadata(middle)["ss_steps"] == "30"
    assert not all(torch.equal(load_file(str(middle))[k], final[k]) for k in final)

    grid = build_grid(run.events)
    assert grid.prompts == ("sks, a portrait",)
    assert [r.step for r in grid.rows] == [10, 20, 30, 40]
    assert [r.can_use for r in grid.rows] == [False, False, True, True]   # keep_checkpoints=2
    assert [r.cells[0] is not None for r in grid.rows] == [False, True, False, True]
    assert grid.row(30).lora == middle
    assert grid.row(40).lora == Path(run.of(DoneEvent)[0].lora)   # done outranks the folder


def assert_lora_acts_like_adapter(model_dir: Path, job_dir: Path, sdxl: bool) -> None:
    """The file, applied like ComfyUI does, changes the UNet's output exactly as the trained
    peft adapter (restored from the final checkpoint) does."""
    lc.assert_kohya_lora_acts_like_adapter(
        model_dir, JobPaths(job_dir).checkpoints / f"checkpoint-{STEPS}", _lora_file(job_dir),
        sdxl=sdxl)


def test_sd15_lora_applied_like_comfyui_matches_trained_adapter(assets, sd15_run):
    assert_lora_acts_like_adapter(assets["sd15"], sd15_run[0], sdxl=False)


# --------------------------------------------------------------------------- SDXL


def test_sdxl_stop_on_stdin_saves_and_resume_finishes(sdxl_runs):
    job_dir, first, second = sdxl_runs
    assert first.returncode == 0, first.stderr[-3000:]
    assert not first.of(DoneEvent) and not first.of(ErrorEvent)
    stopped = first.of(StoppedEvent)
    assert len(stopped) == 1 and isinstance(first.events[-1], StoppedEvent)
    stop_step = stopped[0].step
    assert 10 <= stop_step < STEPS
    assert first.of(StepEvent)[-1].step == stop_step
    last_ckpt = first.of(CheckpointEvent)[-1]
    assert last_ckpt.step == stop_step and last_ckpt.resumable
    assert stopped[0].checkpoint == last_ckpt.path

    assert f"Resuming from {Path(last_ckpt.path).name}" in \
        " ".join(e.message for e in second.of(LogEvent))

    assert_trained(second, STEPS)
    steps = [e.step for e in second.of(StepEvent)]
    assert steps == list(range(stop_step + 1, STEPS + 1))
    assert_loss_falls(first.losses + second.losses)
    # the schedule (2 warm-up steps, then cosine) goes on across the stop as if never stopped
    for e in first.of(StepEvent) + second.of(StepEvent):
        i = e.step - 1
        factor = i / 2 if i < 2 else 0.5 * (1 + math.cos(math.pi * (i - 2) / (STEPS - 2)))
        assert e.lr == pytest.approx(1e-2 * factor, abs=1e-9), e


def test_sdxl_lora_file_and_effect(assets, sdxl_runs):
    job_dir = sdxl_runs[0]
    assert_kohya_file(job_dir, "stable-diffusion-xl-v1-base/lora", "sdxl_base_v1-0", "v")
    names = set(_lora_file(job_dir))
    # SDXL's original layout: attention starts at input_blocks.4; two transformer blocks
    assert "lora_unet_input_blocks_4_1_transformer_blocks_1_attn1_to_q.lora_down.weight" in names
    assert "lora_unet_output_blocks_0_1_proj_out.lora_up.weight" in names
    assert_lora_acts_like_adapter(assets["sdxl"], job_dir, sdxl=True)


# --------------------------------------------------------------------------- resume


def test_kill_9_then_resume_from_single_file_gives_the_same_lora(scenarios, sd15_run):
    """Killed with SIGKILL after a checkpoint and resumed, the job finishes at the planned
    step and writes the same LoRA as the uninterrupted run (on the diffusers folder: so the
    single-file checkpoint loaded offline to the very same model)."""
    job_dir, first, second = scenarios["kill"].result()
    assert first.returncode == (-signal.SIGKILL if os.name == "posix" else 1)
    assert not first.of(DoneEvent)
    assert_trained(second, STEPS)
    assert [e.step for e in second.of(StepEvent)] == list(range(21, STEPS + 1))
    reference = _lora_file(sd15_run[0])
    resumed = _lora_file(job_dir)
    assert set(resumed) == set(reference)
    for key in reference:
        torch.testing.assert_close(resumed[key], reference[key], atol=1e-6, rtol=1e-5)


@pytest.mark.skipif(sys.platform == "win32",
                    reason="SIGTERM is TerminateProcess on Windows: no handler runs (the app "
                           "stops it through stdin there)")
def test_sigterm_finishes_the_step_saves_and_exits_0(scenarios):
    job_dir, run = scenarios["sigterm"].result()
    assert run.returncode == 0, run.stderr[-3000:]
    stopped = run.of(StoppedEvent)
    assert len(stopped) == 1 and stopped[0].step >= 1
    assert run.of(StepEvent)[-1].step == stopped[0].step < STEPS
    ckpt = run.of(CheckpointEvent)
    assert [c.step for c in ckpt] == [stopped[0].step] and stopped[0].checkpoint == ckpt[0].path
    from isengard_desktop.training_runtime.checkpoints import verify

    assert verify(Path(ckpt[0].path)) == (True, "")
    # the stopped job's checkpoint is exported as a usable LoRA too (issue 11, item 16)
    lora = Path(stopped[0].lora)
    assert lora == JobPaths(job_dir).lora(f"alice_lora-step{stopped[0].step}")
    lc.assert_kohya_keys(lc.load_lora(lora), rank=4, alpha=8.0)


def test_torn_newest_checkpoint_is_skipped(scenarios, sd15_run):
    job_dir, run = scenarios["torn"].result()
    assert_trained(run, STEPS)
    notes = " ".join(e.message for e in run.of(LogEvent))
    assert "checkpoint-40" in notes and "checkpoint-30" in notes
    assert [e.step for e in run.of(StepEvent)] == list(range(31, STEPS + 1))
    reference = _lora_file(sd15_run[0])
    for key, value in _lora_file(job_dir).items():
        torch.testing.assert_close(value, reference[key], atol=1e-6, rtol=1e-5)


# --------------------------------------------------------------------------- errors


def test_nan_loss_stops_with_a_checkpoint_of_the_last_good_step(assets, tmp_path, monkeypatch):
    """In-process: the loss turns NaN at step 3 → the state after step 2 is checkpointed and
    the run ends with a nan_loss error naming the step and the checkpoint."""
    import io
    import threading

    from isengard_desktop.training_runtime.errors import NanLossError, classify
    from isengard_desktop.training_runtime.events import Emitter
    from isengard_desktop.training_runtime.families.unet import SD15Family
    from isengard_desktop.training_runtime.loop import Trainer

    real_loss, calls = SD15Family.loss, []

    def loss_turning_nan(self, latents, cond, generator):
        calls.append(1)
        loss = real_loss(self, latents, cond, generator)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(SD15Family, "loss", loss_turning_nan)
    job_dir = tmp_path / "job"
    job = TrainingJob.load(write_job(job_dir, base_model=str(assets["sd15"]),
                                     dataset_dir=str(assets["data"]), steps=10, sample_every=0,
                                     checkpoint_every=0))
    stream = io.StringIO()
    with pytest.raises(NanLossError) as info:
        Trainer(job, job_dir, Emitter(stream), threading.Event()).run()
    events = [parse_event(line) for line in stream.getvalue().splitlines()]
    assert [e.step for e in events if isinstance(e, StepEvent)] == [1, 2]
    checkpoints = [e for e in events if isinstance(e, CheckpointEvent)]
    assert [c.step for c in checkpoints] == [2]
    error = classify(info.value)
    assert error.kind == "nan_loss"
    assert "step 3" in error.message and checkpoints[0].path in error.message


def test_missing_base_model_is_a_model_missing_error(assets, tmp_path):
    missing = tmp_path / "nowhere" / "model.safetensors"
    job = write_job(tmp_path / "job", base_model=str(missing), dataset_dir=str(assets["data"]))
    run = run_child(job, tmp_path / "job")
    assert run.returncode != 0
    errors = run.of(ErrorEvent)
    assert len(errors) == 1 and errors[0].kind == "model_missing"
    assert str(missing) in errors[0].message
    assert isinstance(run.events[0], PhaseEvent) and run.events[0].phase == "loading_model"


def test_invalid_spec_is_a_config_error_naming_the_field(assets, tmp_path):
    job = write_job(tmp_path / "job", base_model=str(assets["sd15"]),
                    dataset_dir=str(assets["data"]))
    data = json.loads(job.read_text())
    data["rank"] = 0
    job.write_text(json.dumps(data))
    run = run_child(job, tmp_path / "job")
    assert run.returncode == 2
    errors = run.of(ErrorEvent)
    assert len(errors) == 1 and errors[0].kind == "config" and "rank" in errors[0].message


def test_help_is_fast_and_imports_no_ml_library():
    result = subprocess.run([sys.executable, "-c", (
        "import sys, contextlib, io\n"
        "from isengard_desktop.training_runtime.__main__ import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try: main(['--help'])\n"
        "    except SystemExit: pass\n"
        "heavy = [m for m in ('torch', 'diffusers', 'peft', 'transformers') if m in sys.modules]\n"
        "print('train' in out.getvalue(), heavy)\n")],
        capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.stdout.strip() == "True []", result.stderr
