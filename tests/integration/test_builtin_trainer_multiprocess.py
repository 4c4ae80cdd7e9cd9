"""The built-in trainer on two processes (gloo on the CPU) under the real ``accelerate launch``.

The command is the one the backend builds (``BuiltinTrainer.build_launch``); what is checked is
what the user relies on with several GPUs: only protocol JSON on stdout and each event once
(rank 0 alone reports), every step counted once, the LoRA written once, the effective batch
shown; "stop" on stdin reaches every worker (the launcher's stdin is theirs) and the run saves
and reports ``stopped``; SIGTERM to the launcher's process group (what the app sends) is
forwarded to the workers, which save before they exit; a stopped run resumed with two
processes ends with the same LoRA as the uninterrupted one (every rank's noise state is in
the checkpoint).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from isengard_desktop.core.training.protocol import (CheckpointEvent, DoneEvent, ErrorEvent,
                                                     LogEvent, SampleEvent, StepEvent,
                                                     StoppedEvent, parse_event)
from isengard_desktop.core.training.spec import JobPaths
from isengard_desktop.core.training.spec import TrainingJob
from isengard_desktop.plugins.builtin_trainer import (ACCELERATE_LAUNCH, RUNTIME_MODULE,
                                                      BuiltinTrainer)
from isengard_desktop.training_runtime import tiny_models as tiny
from tests.helpers import lora_checks as lc
from tests.integration.test_builtin_trainer_unet import Run, write_job

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

STEPS = 12


def run_launcher(job_dir: Path, resume: bool = False, on_event=None,
                 timeout: float = 240, env_extra: dict | None = None) -> Run:
    """The backend's launch of the job (``accelerate launch`` with two workers), in its own
    session as the app starts it."""
    job = TrainingJob.from_json((job_dir / "job.json").read_text(encoding="utf-8"))
    launch = BuiltinTrainer().build_launch(job, JobPaths(job_dir), resume)
    argv = launch.argv
    assert argv[1:3] == ["-m", ACCELERATE_LAUNCH]
    assert argv[argv.index("--num_processes") + 1] == "2"
    assert argv[argv.index("train") - 2:argv.index("train")] == ["-m", RUNTIME_MODULE]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",
               **launch.env, **(env_extra or {}))
    err_path = job_dir / f"stderr-{len(list(job_dir.glob('stderr-*')))}.log"
    run = Run()
    with open(err_path, "w") as err, subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
            cwd=launch.cwd, env=env, start_new_session=True) as proc:
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
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    run.stderr = err_path.read_text(errors="replace")
    return run


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-ddp")
    return {"root": root, "sd15": tiny.build_sd15(root / "sd15", prediction_type="epsilon"),
            "data": tiny.make_dataset(root / "data", count=4)}


def _job(assets, name: str, **fields) -> Path:
    job_dir = assets["root"] / name
    values = dict(base_model=str(assets["sd15"]), dataset_dir=str(assets["data"]), steps=STEPS,
                  checkpoint_every=4, sample_every=6, extra={"num_processes": 2})
    write_job(job_dir, **{**values, **fields})
    return job_dir


@pytest.fixture(scope="module")
def full_run(assets):
    job_dir = _job(assets, "full")
    return job_dir, run_launcher(job_dir)


def _loras(job_dir: Path) -> list[Path]:
    return sorted(p for p in job_dir.glob("*.safetensors"))


def test_two_processes_train_to_completion_reporting_once(full_run):
    job_dir, run = full_run
    assert run.returncode == 0, run.stderr[-3000:]
    assert not run.of(ErrorEvent)
    assert [e.step for e in run.of(StepEvent)] == list(range(1, STEPS + 1))
    assert all(e.total == STEPS for e in run.of(StepEvent))
    assert [e.step for e in run.of(CheckpointEvent)] == [4, 8, 12]
    assert [e.step for e in run.of(SampleEvent)] == [6, 12]
    done = run.of(DoneEvent)
    assert len(done) == 1 and done[0].steps == STEPS
    # one LoRA, written by rank 0; the log line shows the effective batch (2 per process × 2)
    assert _loras(job_dir) == [JobPaths(job_dir).lora("alice_lora")]
    assert Path(done[0].lora) == JobPaths(job_dir).lora("alice_lora")
    notes = [e.message for e in run.of(LogEvent)]
    assert sum("Training on 2 processes (gloo)" in m for m in notes) == 1
    assert any("effective batch 4" in m for m in notes), notes
    lc.assert_kohya_keys(lc.load_lora(done[0].lora), rank=4, alpha=8.0)
    assert all(torch.isfinite(torch.tensor(e.loss)) for e in run.of(StepEvent))


def test_checkpoint_holds_every_ranks_random_state(full_run):
    job_dir, _ = full_run
    ckpt = JobPaths(job_dir).checkpoints / f"checkpoint-{STEPS}"
    manifest = json.loads((ckpt / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["processes"] == 2
    rng = torch.load(ckpt / "rng.pt", weights_only=True)
    assert len(rng["ranks"]) == 2
    assert not torch.equal(rng["ranks"][0]["noise"], rng["ranks"][1]["noise"])
    assert torch.equal(rng["noise"], rng["ranks"][0]["noise"])


def test_stop_on_stdin_saves_and_resume_matches_uninterrupted_run(assets, full_run):
    job_dir = _job(assets, "stop-resume")

    def stop_after_first_checkpoint(proc, event):
        if isinstance(event, CheckpointEvent) and event.step == 4:
            proc.stdin.write("stop\n")
            proc.stdin.flush()

    first = run_launcher(job_dir, on_event=stop_after_first_checkpoint)
    assert first.returncode == 0, first.stderr[-3000:]
    stopped = first.of(StoppedEvent)
    assert len(stopped) == 1 and 4 <= stopped[0].step < STEPS
    assert not first.of(DoneEvent)
    assert stopped[0].lora and Path(stopped[0].lora).is_file()
    steps = [e.step for e in first.of(StepEvent)]
    assert steps == list(range(1, stopped[0].step + 1))

    second = run_launcher(job_dir, resume=True)
    assert second.returncode == 0, second.stderr[-3000:]
    assert [e.step for e in second.of(StepEvent)] == list(range(stopped[0].step + 1, STEPS + 1))
    assert any(f"Resuming from checkpoint-{stopped[0].step}" in e.message
               for e in second.of(LogEvent))
    assert len(second.of(DoneEvent)) == 1
    resumed = lc.load_lora(JobPaths(job_dir).lora("alice_lora"))
    whole = lc.load_lora(JobPaths(full_run[0]).lora("alice_lora"))
    assert resumed.keys() == whole.keys()
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key], rtol=1e-5, atol=1e-6)


def test_sigterm_to_the_launcher_reaches_the_workers_which_save(assets):
    job_dir = _job(assets, "sigterm", sample_every=0, checkpoint_every=0)

    def term_on_second_step(proc, event):
        if isinstance(event, StepEvent) and event.step == 2:
            os.killpg(proc.pid, signal.SIGTERM)     # as the runner's stop ladder does

    run = run_launcher(job_dir, on_event=term_on_second_step)
    stopped = run.of(StoppedEvent)
    assert len(stopped) == 1, run.stderr[-3000:]
    assert 2 <= stopped[0].step < STEPS
    assert Path(stopped[0].checkpoint).name == f"checkpoint-{stopped[0].step}"
    assert (Path(stopped[0].checkpoint) / "manifest.json").is_file()
    assert _loras(job_dir) == [Path(stopped[0].lora)]
    # the launcher itself ends with its SignalException; the workers were not killed
    assert "SIGKILL" not in run.stderr


def test_out_of_memory_on_a_worker_is_the_error_reported(assets):
    """Out of memory at step 3 on rank 1 only (the test hook): the app gets rank 1's ``oom``
    error for step 3 (what its recovery acts on), not rank 0's "connection closed by peer"
    crash that follows, and the step-2 checkpoint is there."""
    from isengard_desktop.training_runtime.test_hooks import OOM_ENV, OOM_RANK_ENV

    job_dir = _job(assets, "oom", sample_every=0, checkpoint_every=2,
                   extra={"num_processes": 2, "test_hooks": True})
    run = run_launcher(job_dir, env_extra={OOM_ENV: "3", OOM_RANK_ENV: "1"})
    assert run.returncode != 0
    errors = run.of(ErrorEvent)
    assert errors, run.stderr[-3000:]
    assert all(e.kind == "oom" for e in errors), errors
    assert errors[-1].step == 3
    assert "another training process failed first" in run.stderr
    assert [e.step for e in run.of(CheckpointEvent)] == [2]
    assert not run.of(DoneEvent) and not _loras(job_dir)


DUMP_EACH_RANK = '''
import sys, torch
from isengard_desktop.training_runtime import loop
export = loop.Trainer._export
def dump_then_export(self):
    from peft.utils import get_peft_model_state_dict
    state = get_peft_model_state_dict(self.family.denoiser())
    torch.save({k: v.detach().clone() for k, v in state.items()}, sys.argv[1] + f"/rank{self.dp.rank}.pt")
    return export(self)
loop.Trainer._export = dump_then_export
from isengard_desktop.training_runtime.__main__ import main
sys.exit(main(["train", "--job", sys.argv[1] + "/job.json", "--job-dir", sys.argv[1]]))
'''


def test_gradients_are_averaged_so_every_process_ends_with_the_same_lora(assets, tmp_path):
    """Each process trains on other images with other noise; only DDP's averaging of the
    gradients keeps their LoRAs equal. The trainer's entry point, wrapped to save each rank's
    weights before the export, under the same ``accelerate launch`` options."""
    from isengard_desktop.core.training.parallel import accelerate_launch_args, free_port

    job_dir = _job(assets, "same-weights", sample_every=0, checkpoint_every=0, steps=4)
    script = tmp_path / "dump_each_rank.py"
    script.write_text(DUMP_EACH_RANK, encoding="utf-8")
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    done = subprocess.run([sys.executable, "-m", ACCELERATE_LAUNCH,
                           *accelerate_launch_args(2, [], free_port()), str(script),
                           str(job_dir)], capture_output=True, text=True, env=env,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    zero = torch.load(job_dir / "rank0.pt", weights_only=True)
    one = torch.load(job_dir / "rank1.pt", weights_only=True)
    assert zero.keys() == one.keys() and zero
    for key in zero:
        assert torch.equal(zero[key], one[key]), key
    # and they trained: the LoRA's up weights start at zero
    assert any(k.endswith("lora_B.weight") and zero[k].abs().sum() > 0 for k in zero)
