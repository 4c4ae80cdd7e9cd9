"""The diffusion-pipe line parser on the tool's real output shapes: DeepSpeed lines, ANSI,
partial reads, caching bars, epoch boundaries, saves, checkpoints, resume, stop, OOM."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from isengard_desktop.core.training.checkpoints import latest_complete
from isengard_desktop.core.training.protocol import (CheckpointEvent, DoneEvent, ErrorEvent,
                                                     LogEvent, PhaseEvent, StepEvent,
                                                     StoppedEvent)
from isengard_desktop.plugins.diffusion_pipe.parser import DeepSpeedParser, ParserContext
from tests.helpers.standin_diffusion_pipe import small_safetensors

DS = "[2025-06-01 10:00:00,123] [INFO] [logging.py:128:log_dist] [Rank 0] "


def lr_line(step: int, lr: str = "2e-05") -> str:
    return f"{DS}step={step}, skipped=0, lr=[{lr}], mom=[(0.9, 0.99)]\n"


def steps_line(step: int, loss: str = "0.0812", it: str = "3.412") -> str:
    return f"steps: {step} loss: {loss} iter time (s): {it} samples/sec: 0.293\n"


def of(events, cls):
    return [e for e in events if isinstance(e, cls)]


@pytest.fixture
def job(tmp_path: Path) -> dict:
    job_dir = tmp_path / "jobs" / "j1"
    run = job_dir / "diffusion-pipe" / "20250601_10-00-00"
    run.mkdir(parents=True)
    return {"job_dir": job_dir, "run": run, "out": job_dir / "diffusion-pipe"}


def parser_for(job: dict, **kw) -> DeepSpeedParser:
    base = dict(total=100, steps_per_epoch=10, epochs=10, output_dir=job["out"],
                job_dir=job["job_dir"], output_name="alice")
    base.update(kw)
    return DeepSpeedParser(ParserContext(**base))


def test_deepspeed_step_lines_give_progress_with_our_total_and_eta(job):
    p = parser_for(job)
    events = p.feed("stdout", lr_line(1, "1e-04") + steps_line(1, it="2.0"))
    assert [type(e) for e in events] == [PhaseEvent, PhaseEvent, StepEvent]
    assert events[0].phase == "loading_model" and events[1].phase == "training"
    step = events[2]
    assert (step.step, step.total, step.loss, step.lr) == (1, 100, 0.0812, 1e-4)
    assert step.sec_per_step == 2.0 and step.eta_sec == pytest.approx(99 * 2.0)
    step = p.feed("stdout", lr_line(2) + steps_line(2, "0.07", "4.0"))[-1]
    assert step.lr == 2e-5 and step.sec_per_step == pytest.approx(2.6)   # smoothed
    assert step.eta_sec == pytest.approx(98 * 2.6, rel=1e-3)


def test_ansi_and_partial_reads_across_chunks(job):
    p = parser_for(job)
    text = ("\x1b[32m" + lr_line(5)[:-1] + "\x1b[0m\r\n" + steps_line(5) + steps_line(6))
    events = []
    for i in range(0, len(text), 7):                   # 7-character reads
        events += p.feed("stdout", text[i:i + 7])
    steps = of(events, StepEvent)
    assert [s.step for s in steps] == [5, 6] and steps[0].lr == 2e-5
    assert p.feed("stdout", "steps: 7 loss: 0.05 ") == []        # not finished yet
    assert [s.step for s in of(p.feed("stdout", "iter time (s): 1.0\n"), StepEvent)] == [7]


def test_caching_bars_are_a_phase_and_eval_bars_are_ignored(job):
    p = parser_for(job)
    bars = "".join(f"\r\x1b[36mcaching latents\x1b[0m: {i * 25}%|{'█' * i}| {i}/4 "
                   f"[00:0{i}<00:02, 2.0it/s]" for i in range(1, 5))
    events = p.feed("stderr", bars + "\r" + "caching latents: 100%|████| 4/4 [00:04<00:00]\n")
    phases = [(e.phase, e.done, e.total, e.detail) for e in of(events, PhaseEvent)]
    assert phases[0][0] == "loading_model"
    assert phases[1:] == [("caching", i, 4, "caching latents") for i in range(1, 5)]
    p.feed("stdout", steps_line(1))
    assert p.feed("stderr", "\r 50%|█████     | 9/18 [00:01<00:01,  8.1it/s]") == []


def test_epoch_boundary_refines_the_total(job):
    p = parser_for(job)                    # estimate: 10 steps an epoch x 10 epochs
    for step in range(1, 9):
        p.feed("stdout", steps_line(step))
    p.feed("stdout", "Started new epoch: 2\n")     # bucketing dropped images: 8 an epoch
    assert p.total == 80 and p.ctx.steps_per_epoch == 8
    assert p.feed("stdout", steps_line(9))[-1].total == 80
    # max_steps mode keeps its exact total; a step past an estimate raises it
    q = parser_for(job, total=5, epochs=0, max_steps=5)
    q.feed("stdout", steps_line(3) + "Started new epoch: 2\n")
    assert q.total == 5
    assert q.feed("stdout", steps_line(6))[-1].total == 6


def test_lora_saves_and_deepspeed_checkpoints_become_events(job):
    p = parser_for(job)
    run = job["run"]
    p.feed("stdout", steps_line(10))
    events = p.feed("stdout", "Saving model to directory epoch1\n")
    assert [(e.phase, e.detail) for e in of(events, PhaseEvent)] == [
        ("saving", "saving the LoRA (epoch1)")]
    (run / "epoch1").mkdir()
    small_safetensors(run / "epoch1" / "adapter_model.safetensors", 10)
    events = p.feed("stdout", "Started new epoch: 2\n")
    assert of(events, CheckpointEvent) == [CheckpointEvent(
        10, str(run / "epoch1" / "adapter_model.safetensors"), resumable=False)]
    # a DeepSpeed checkpoint: recorded for Resume once `latest` names it
    ckpt = run / "global_step12"
    p.feed("stdout", steps_line(11) + steps_line(12))
    events = p.feed("stdout", f"{DS}[Torch] Checkpoint global_step12 is about to be saved!\n"
                              f"{DS}Saving model checkpoint: {ckpt}/mp_rank_00_model_states.pt\n")
    ckpt.mkdir()
    (ckpt / "mp_rank_00_model_states.pt").write_bytes(b"state")
    events += p.feed("stdout", "[2025-06-01 10:00:01,000] [INFO] [torch_checkpoint_engine.py:33"
                               ":commit] [Torch] Checkpoint global_step12 is ready now!\n")
    assert of(events, CheckpointEvent) == []
    assert p.feed("stderr", "some warning on stderr\n") == []      # `latest` not written yet
    (run / "latest").write_text("global_step12")
    events = p.feed("stdout", steps_line(13))
    assert of(events, CheckpointEvent) == [CheckpointEvent(12, str(ckpt), resumable=True)]
    info = latest_complete(job["job_dir"])
    assert info is not None and info.step == 12


def test_checkpoint_not_named_by_latest_is_not_resumable(job):
    p = parser_for(job)
    p.feed("stdout", steps_line(3) + f"{DS}[Torch] Checkpoint global_step3 is about to be "
                                      "saved!\n")
    events = p.feed("stdout", steps_line(4))     # older DeepSpeed: no "ready now" line
    assert of(events, CheckpointEvent)[0].resumable is False
    assert "not the one" in of(events, LogEvent)[0].message
    assert latest_complete(job["job_dir"]) is None


def test_resume_and_manual_quit(job):
    p = parser_for(job, start_step=40, run_dir=job["run"])
    events = p.feed("stdout", "Resuming training from checkpoint. Resuming at epoch: 5, step: 41\n")
    assert of(events, LogEvent)[0].message.startswith("diffusion-pipe resumed from its "
                                                      "checkpoint at step 40 (epoch 5)")
    assert p.feed("stdout", steps_line(41))[-1].step == 41
    ckpt = job["run"] / "global_step41"
    ckpt.mkdir()
    (ckpt / "state.pt").write_bytes(b"x")
    (job["run"] / "latest").write_text("global_step41")
    events = p.feed("stdout", f"{DS}[Torch] Checkpoint global_step41 is about to be saved!\n"
                              f"{DS}[Torch] Checkpoint global_step41 is ready now!\n"
                              "Manually quitting\n")
    assert of(events, CheckpointEvent) == [CheckpointEvent(41, str(ckpt), True)]
    assert of(events, StoppedEvent) == [StoppedEvent(41, str(ckpt))]


def test_stop_makes_the_newest_lora_save_the_jobs_result(job):
    """Issue 11 item 16: after "Manually quitting" the newest LoRA the tool saved (a model
    save; the DeepSpeed checkpoint holds none) is the job's LoRA, "<name>-step<N>"."""
    p = parser_for(job)
    run = job["run"]
    (run / "step5").mkdir()
    small_safetensors(run / "step5" / "adapter_model.safetensors", 5)
    p.feed("stdout", steps_line(5) + "Saving model to directory step5\n")
    ckpt = run / "global_step7"
    ckpt.mkdir()
    (ckpt / "state.pt").write_bytes(b"x")
    (run / "latest").write_text("global_step7")
    events = p.feed("stdout", steps_line(6) + steps_line(7)
                    + f"{DS}[Torch] Checkpoint global_step7 is about to be saved!\n"
                    + f"{DS}[Torch] Checkpoint global_step7 is ready now!\n"
                    + "Manually quitting\n")
    exported = job["job_dir"] / "alice-step5.safetensors"
    assert of(events, StoppedEvent) == [StoppedEvent(7, str(ckpt), str(exported), 5)]
    assert os.path.samefile(exported, run / "step5" / "adapter_model.safetensors")


def test_training_complete_publishes_the_final_lora(job):
    p = parser_for(job)
    run = job["run"]
    (run / "step5").mkdir()
    small_safetensors(run / "step5" / "adapter_model.safetensors", 5)
    events = p.feed("stdout", steps_line(5) + "Saving model to directory step5\n"
                              "TRAINING COMPLETE!\n")
    done = of(events, DoneEvent)
    assert done == [DoneEvent(str(job["job_dir"] / "alice.safetensors"), 5)]
    assert os.path.samefile(done[0].lora, run / "step5" / "adapter_model.safetensors")
    assert of(events, CheckpointEvent)[0].path.endswith("step5/adapter_model.safetensors")
    # another format (Diffusers' file name) is found too
    q = parser_for(job, output_name="")
    (run / "epoch2").mkdir()
    small_safetensors(run / "epoch2" / "pytorch_lora_weights.safetensors", 9)
    events = q.feed("stdout", "Saving model to directory epoch2\nTRAINING COMPLETE!\n")
    assert of(events, DoneEvent)[0].lora == str(run / "epoch2" /
                                                "pytorch_lora_weights.safetensors")


def test_complete_without_a_lora_is_an_error(tmp_path):
    p = DeepSpeedParser(ParserContext(output_dir=tmp_path / "none"))
    events = p.feed("stdout", "TRAINING COMPLETE!\n")
    assert of(events, ErrorEvent)[0].kind == "crash" and not of(events, DoneEvent)


@pytest.mark.parametrize("lines, kind, words", [
    (["Traceback (most recent call last):", '  File "train.py", line 620, in <module>',
      "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB."],
     "oom", "ran out of memory at step 7"),
    (["RuntimeError: CUDA error: out of memory"], "oom", "blocks_to_swap"),
    (["OSError: [Errno 28] No space left on device"], "disk_full", "disk is full"),
    (["NotImplementedError: Model type krea9 is not implemented"], "config",
     "model type krea9"),
    (["ModuleNotFoundError: No module named 'deepspeed'"], "config", "'deepspeed'"),
    (["FileNotFoundError: [Errno 2] No such file or directory: '/m/chroma.safetensors'"],
     "model_missing", "/m/chroma.safetensors"),
    (["KeyError: 'diffusers_path'"], "config", "'diffusers_path' is missing"),
])
def test_error_lines_give_one_error_event(job, lines, kind, words):
    p = parser_for(job)
    if kind == "oom":
        p.feed("stdout", steps_line(7))
    events = p.feed("stderr", "\n".join(lines) + "\n" + lines[-1] + "\n")
    errors = of(events, ErrorEvent)
    assert len(errors) == 1 and errors[0].kind == kind and words in errors[0].message


def test_nan_loss_warns_once_and_launcher_noise_is_ignored(job):
    p = parser_for(job)
    events = p.feed("stdout", steps_line(1, "nan") + steps_line(2, "nan"))
    assert [e.message[:34] for e in of(events, LogEvent)] == ["The loss became NaN at step 1: the"]
    assert all(math.isnan(s.loss) for s in of(events, StepEvent))
    noise = ("[2025-06-01 10:00:00,000] [INFO] [runner.py:568:main] cmd = /venv/bin/python -u "
             "-m deepspeed.launcher.launch --world_info=abc train.py --deepspeed\n"
             "Global batch size = 1\n[2025-06-01] [ERROR] [launch.py:325:sigkill_handler] "
             "['python'] exits with return code = 1\n")
    assert p.feed("stdout", noise) == []
