"""The kohya sd-scripts backend: generated TOML/prompts/argv (golden files), launch,
availability, presets, and the line parser on sd-scripts' real output shapes
(plugins/kohya/backend.py)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tomllib
from pathlib import Path

import pytest

from isengard_desktop.core.training.checkpoints import latest_complete
from isengard_desktop.core.training.installs import ExternalInstall
from isengard_desktop.core.training.protocol import (
    CheckpointEvent,
    DoneEvent,
    ErrorEvent,
    LogEvent,
    PhaseEvent,
    SampleEvent,
    StepEvent,
    StoppedEvent,
)
from isengard_desktop.core.training.spec import JobPaths, SpecError, TrainingJob
from isengard_desktop.plugins.external.files import dump_toml, record_checkpoint
from isengard_desktop.plugins.kohya.backend import (ARGS_NAME, DATASET_NAME, PROMPTS_NAME,
                                                    KohyaBackend, build_args,
                                                    sample_prompt_lines)
from isengard_desktop.plugins.kohya.parser import KohyaParser
from tests.helpers.external_jobs import (
    job_paths,
    check_golden,
    external_job,
    make_dataset,
    normalise,
)
from tests.helpers import standin_kohya
from tests.helpers.standin_kohya import make_install


@pytest.fixture
def tree(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for name in ("flux1-dev.safetensors", "clip_l.safetensors", "t5xxl_fp8.safetensors",
                 "ae.safetensors", "sdxl.safetensors", "sd15.safetensors", "chroma.safetensors"):
        (models / name).write_bytes(b"x")
    t5 = tmp_path / "comfy" / "text_encoders" / "t5_tokenizer"  # ComfyUI's T5 tokenizer
    t5.mkdir(parents=True)
    (t5 / "tokenizer.json").write_text(json.dumps({"model": {"type": "Unigram"}}))
    make_dataset(tmp_path)
    install = make_install(tmp_path / "sd-scripts")
    return tmp_path, KohyaBackend(ExternalInstall(str(install), sys.executable))


def flux_fields(tmp: Path, **extra) -> dict:
    models = tmp / "models"
    return {"fields": {"clip_l": str(models / "clip_l.safetensors"),
                       "t5xxl": str(models / "t5xxl_fp8.safetensors"),
                       "ae": str(models / "ae.safetensors"), **extra}}


BASES = {"flux-dev": "flux1-dev.safetensors", "flux-schnell": "flux1-dev.safetensors",
         "chroma": "chroma.safetensors", "sdxl": "sdxl.safetensors", "sd15": "sd15.safetensors"}


def make_job(tmp: Path, family: str = "flux-dev", **kw) -> TrainingJob:
    return external_job(tmp, family, BASES, **{
        "job_id": "job0002", "backend": "kohya", "steps": 1600, "sample_every": 200,
        "checkpoint_every": 200, **kw})


@pytest.mark.parametrize("family, kw, golden", [
    ("flux-dev", {"resolution": 1024, "optimizer": "adamw8bit", "quantize_base": "float8",
                  "extra": "lowvram"}, "kohya_flux_dev_lowvram"),
    ("sdxl", {"resolution": 1024, "mixed_precision": "fp16", "lr_scheduler": "cosine",
              "warmup_steps": 50}, "kohya_sdxl"),
    ("sd15", {"resolution": 512, "sample_every": 0, "checkpoint_every": 0, "repeats": 4},
     "kohya_sd15"),
])
def test_generated_files_match_golden(tree, family, kw, golden):
    tmp, backend = tree
    if kw.get("extra") == "lowvram":
        kw = dict(kw, extra=flux_fields(tmp, vram="8"))
    job = make_job(tmp, family, **kw)
    paths = job_paths(tmp, job.job_id)
    launch = backend.build_launch(job, paths, resume=False)
    check_golden(f"{golden}_args.toml", normalise(launch.files[paths.configs / ARGS_NAME], tmp))
    check_golden(f"{golden}_dataset.toml",
                 normalise(launch.files[paths.configs / DATASET_NAME], tmp))
    argv = [normalise(a, tmp) for a in launch.argv]
    check_golden(f"{golden}.argv.json", json.dumps(argv, indent=1) + "\n")
    if job.sample_every:
        check_golden(f"{golden}_prompts.txt", launch.files[paths.configs / PROMPTS_NAME])
    else:
        assert paths.configs / PROMPTS_NAME not in launch.files
    args = tomllib.loads(launch.files[paths.configs / ARGS_NAME])
    dataset = tomllib.loads(launch.files[paths.configs / DATASET_NAME])
    assert dataset["datasets"][0]["subsets"][0]["image_dir"] == str(paths.root / "dataset")
    assert dataset["datasets"][0]["subsets"][0]["class_tokens"] == "alc"
    assert args["training"]["output_dir"] == str(paths.root / "output")
    assert "--console_log_simple" in launch.argv and launch.env == {"OMP_NUM_THREADS": "1"}
    # the golden pair is one sd-scripts accepts (its assertions, in the stand-in)
    flat = {k: v for section in args.values() for k, v in section.items()}
    namespace = argparse.Namespace(**({k: None for k in standin_kohya.ARGS} | flat))
    standin_kohya.check_dataset(dataset)
    standin_kohya.assert_extra_args("flux" if family.startswith("flux") else family,
                                    namespace, dataset)


def test_flux_low_vram_presets_and_overrides(tree):
    tmp, _backend = tree
    paths = job_paths(tmp, "j")
    training = build_args(make_job(tmp, extra=flux_fields(tmp, vram="12")), paths)["training"]
    assert (training["blocks_to_swap"], training["fp8_base"]) == (16, True)
    assert training["timestep_sampling"] == "flux_shift" and training["guidance_scale"] == 1.0
    training = build_args(make_job(tmp, extra=flux_fields(tmp, vram="12", blocks_to_swap=4,
                                                          fp8_base=False)), paths)["training"]
    assert (training["blocks_to_swap"], training["fp8_base"]) == (4, False)
    training = build_args(make_job(tmp, extra=flux_fields(tmp)), paths)["training"]
    assert training["blocks_to_swap"] is None and training["fp8_base"] is False
    with pytest.raises(SpecError, match="^fields.blocks_to_swap"):
        build_args(make_job(tmp, extra=flux_fields(tmp, blocks_to_swap=99)), paths)
    chroma = build_args(make_job(tmp, "chroma", extra=flux_fields(tmp)), paths)
    assert chroma["model"]["model_type"] == "chroma" and "clip_l" not in chroma["model"]
    assert chroma["training"]["apply_t5_attn_mask"] is True
    assert chroma["network"]["network_module"] == "networks.lora_flux"


def test_missing_model_fields_name_the_field(tree):
    tmp, backend = tree
    paths = job_paths(tmp, "j")
    with pytest.raises(SpecError, match="^fields.clip_l: the CLIP-L text encoder is not set"):
        backend.build_launch(make_job(tmp), paths, False)
    fields = flux_fields(tmp)
    fields["fields"]["ae"] = str(tmp / "models" / "missing-ae.safetensors")
    with pytest.raises(SpecError, match="^fields.ae: .*missing-ae.safetensors does not exist"):
        backend.build_launch(make_job(tmp, extra=fields), paths, False)
    with pytest.raises(SpecError, match="^base_model"):
        backend.build_launch(make_job(tmp, "sd15", base_model=str(tmp / "x.ckpt")), paths, False)
    with pytest.raises(SpecError, match="^model_type"):
        backend.build_launch(make_job(tmp, "sd15", extra={"model_type": "sdxl"}), paths, False)
    backend.build_launch(make_job(tmp, "sd15", extra={"model_type": "sd15"}), paths, False)


def test_resume_passes_the_newest_complete_state(tree):
    tmp, backend = tree
    job = make_job(tmp, "sdxl")
    paths = job_paths(tmp, job.job_id)
    out = paths.root / "output"
    for step in (200, 400):
        state = out / f"alice_lora-step{step:08d}-state"
        state.mkdir(parents=True)
        lora = out / f"alice_lora-step{step:08d}.safetensors"
        lora.write_bytes(b"x")
        record_checkpoint(paths.root, step, "kohya", str(lora), str(state))
    launch = backend.build_launch(job, paths, resume=True)
    assert launch.argv[-3:] == ["--resume", str(out / "alice_lora-step00000400-state"),
                                "--skip_until_initial_step"]
    context = json.loads(launch.files[paths.configs / "isengard_context.json"])
    assert context["resume"]["step"] == 400 and "set_aside" not in context
    fresh = backend.build_launch(job, paths, resume=False)
    assert "--resume" not in fresh.argv


def test_secrets_stay_out_of_files_and_argv(tree, monkeypatch):
    tmp, backend = tree
    monkeypatch.setenv("WANDB_API_KEY", "wandb-Secret-0123456789abcdef")
    monkeypatch.setenv("HF_TOKEN", "hf_SecretTokenValue0123456789")
    job = make_job(tmp, "sd15", extra={"wandb": True})
    paths = job_paths(tmp, job.job_id)
    launch = backend.build_launch(job, paths, resume=False)
    args = tomllib.loads(launch.files[paths.configs / ARGS_NAME])
    assert args["logging"] == {"log_with": "wandb", "log_tracker_name": "isengard",
                               "wandb_run_name": "alice_lora"}
    blob = "\n".join([*launch.argv, *launch.files.values(), json.dumps(launch.env)])
    assert "wandb-Secret" not in blob and "hf_Secret" not in blob
    assert "wandb_api_key" not in blob and "huggingface_token" not in blob


def test_available_capabilities_and_missing_scripts(tmp_path):
    ok, why = KohyaBackend().available()
    assert not ok and "No folder is set" in why
    old = make_install(tmp_path / "old", scripts=("train_network.py", "sdxl_train_network.py"))
    backend = KohyaBackend(ExternalInstall(str(old), sys.executable))
    assert backend.available() == (True, "")
    caps = backend.capabilities()
    assert caps["families"] == ["sdxl", "sd15"] and caps["stop_saves"] is False
    assert caps["presets"]["8 GB"] == {"vram": "8", "blocks_to_swap": 28, "fp8_base": True}
    models = tmp_path / "m.safetensors"
    models.write_bytes(b"x")
    data = tmp_path / "d"
    data.mkdir()
    job = TrainingJob("j", 1, "A", "alc", "flux-dev", str(models), str(data), "out",
                      backend="kohya")
    with pytest.raises(SpecError, match="flux_train_network.py is missing"):
        backend.build_launch(job, job_paths(tmp_path, "j"), False)
    full = KohyaBackend(ExternalInstall(str(make_install(tmp_path / "new")), sys.executable))
    assert full.capabilities()["families"] == ["flux-dev", "flux-schnell", "chroma", "sdxl",
                                               "sd15"]
    keys = {f["key"]: f for f in full.capabilities()["fields"]}
    assert keys["clip_l"]["model_types"] == ["flux-dev", "flux-schnell"]
    assert keys["vram"]["kind"] == "choice" and keys["vram"]["choices"] == ["24", "16", "12",
                                                                             "10", "8"]


# -- the parser on sd-scripts' real output shapes ----------------------------------------------
def context_line(tmp: Path, **extra) -> str:
    context = {"v": 1, "tool": "kohya", "job_dir": str(tmp / "job"),
               "output_dir": str(tmp / "job" / "output"), "name": "my_lora", "steps": 3680,
               "lr": 1e-4, "prompts": ["alc portrait", "alc at the beach"], **extra}
    return "[isengard] context " + json.dumps(context) + "\n"


def test_parser_total_line_and_steps_bar(tmp_path):
    parser = KohyaParser()
    parser.feed("stdout", context_line(tmp_path) + "running training / 学習開始\n"
                "  num train images * repeats / 学習画像の数×繰り返し回数: 460\n"
                "  total optimization steps / 学習ステップ数: 3680\n")
    events = parser.feed("stderr", "\rsteps:   0%|          | 0/3680 [00:00<?, ?it/s]")
    events += parser.feed("stderr", "\rsteps:  12%|█▏        | 441/3680 [15:02<1:50:30,  "
                                    "2.05s/it, avr_")
    events += parser.feed("stderr", "loss=0.312]\r\x1b[Asteps:  12%|█▏        | 442/3680 "
                                    "[15:04<1:50:28,  2.05s/it, avr_loss=0.311]\n")
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert steps == [StepEvent(441, 3680, 0.312, 1e-4, pytest.approx(2.05), 6630.0),
                     StepEvent(442, 3680, 0.311, 1e-4, pytest.approx(2.05), 6628.0)]
    assert PhaseEvent("training", 0, 3680, "") in events


def test_parser_resume_offsets_the_bar(tmp_path):
    parser = KohyaParser()
    events = parser.feed("stdout", context_line(tmp_path, steps=1000) +
                         "resume training from local state: /o/my_lora-step00000400-state\n"
                         "load train state from /o/my_lora-step00000400-state/train_state.json:"
                         " {'current_epoch': 3, 'current_step': 400}\n"
                         "skipping 400 steps / 400ステップをスキップします\n"
                         "  total optimization steps / 学習ステップ数: 1000\n")
    assert LogEvent("info", "sd-scripts resumes at step 400") in events
    events = parser.feed("stderr", "steps:   1%|          | 5/600 [00:10<20:00,  2.00s/it, "
                                   "avr_loss=0.1]\n")
    assert next(e for e in events if isinstance(e, StepEvent)).step == 405
    # without the "skipping" line (an older sd-scripts) the offset comes from the totals
    parser = KohyaParser()
    parser.feed("stdout", "  total optimization steps / 学習ステップ数: 1000\n")
    events = parser.feed("stderr", "steps:   1%|          | 5/600 [00:10<20:00,  2.00s/it, "
                                   "avr_loss=0.1]\n")
    assert next(e for e in events if isinstance(e, StepEvent)) == StepEvent(
        405, 1000, 0.1, 0.0, 2.0, 1200.0)


def bar(n: int, total: int = 3680, loss: str = "0.2") -> str:
    return f"\rsteps:  10%|█         | {n}/{total} [01:00<09:00,  1.00it/s, avr_loss={loss}]\n"


def test_parser_saves_become_checkpoints_once_complete(tmp_path):
    parser = KohyaParser()
    out = tmp_path / "job" / "output"
    state = out / "my_lora-step00000500-state"
    state.mkdir(parents=True)
    lora = out / "my_lora-step00000500.safetensors"
    lora.write_bytes(b"x")
    parser.feed("stdout", context_line(tmp_path) +
                "  total optimization steps / 学習ステップ数: 3680\n")
    parser.feed("stderr", bar(499))
    events = parser.feed("stdout", f"\nsaving checkpoint: {lora}\n\nsaving state at step 500\n")
    assert PhaseEvent("saving", 0, 0, lora.name) in events
    assert not any(isinstance(e, CheckpointEvent) for e in events)
    # a frame drawn before the save (stderr read late) does not complete it
    assert not any(isinstance(e, CheckpointEvent) for e in parser.feed("stderr", bar(500)))
    events = parser.feed("stderr", bar(501))
    assert CheckpointEvent(500, str(lora), False) in events     # the state is not complete yet
    assert latest_complete(tmp_path / "job") is None
    state600 = out / "my_lora-step00000600-state"
    state600.mkdir()
    (state600 / "random_states_0.pkl").write_bytes(b"rng")
    lora600 = out / "my_lora-step00000600.safetensors"
    lora600.write_bytes(b"x")
    parser.feed("stdout", f"\nsaving checkpoint: {lora600}\n\nsaving state at step 600\n")
    events = parser.feed("stdout", "\nepoch 5/8\n")
    assert CheckpointEvent(600, str(lora600), True) in events
    assert latest_complete(tmp_path / "job").step == 600
    parser.feed("stdout", f"removing old checkpoint: {lora600}\n")
    assert latest_complete(tmp_path / "job").step == 600          # only the state matters
    parser.feed("stdout", f"removing old state: {state600}\n")
    assert latest_complete(tmp_path / "job") is None


def test_parser_samples_and_done(tmp_path):
    parser = KohyaParser()
    sample_dir = tmp_path / "job" / "output" / "sample"
    sample_dir.mkdir(parents=True)
    parser.feed("stdout", context_line(tmp_path) +
                "  total optimization steps / 学習ステップ数: 3680\n")
    events = parser.feed("stdout", "\ngenerating sample images at step / サンプル画像生成 "
                                   "ステップ: 200\nprompt: alc portrait\n")
    assert events[-1].phase == "sampling"
    image = sample_dir / "my_lora_000200_01_20250101120000_43.png"
    image.write_bytes(b"png")
    old = time.time() - 5
    os.utime(image, (old, old))
    events = parser.feed("stderr", bar(200))
    assert SampleEvent(200, str(image), "alc at the beach") in events
    final = tmp_path / "job" / "output" / "my_lora.safetensors"
    last = sample_dir / "my_lora_003680_00_20250101130000_42.png"
    last.write_bytes(b"png")
    events = parser.feed("stdout", f"\nsaving checkpoint: {final}\nmodel saved.\n")
    assert SampleEvent(3680, str(last), "alc portrait") in events
    assert events[-1] == DoneEvent(str(final), 3680)


def test_parser_errors_and_rich_stderr_lines(tmp_path):
    parser = KohyaParser()
    parser.feed("stdout", context_line(tmp_path))
    events = parser.feed("stderr", "\x1b[2;36m2025-01-01 10:00:00\x1b[0m \x1b[34mINFO    \x1b[0m"
                                   " Building Flux model dev from BFL checkpoint   "
                                   "\x1b[2mflux_utils.py:60\x1b[0m\n")
    assert events[0].phase == "loading_model"
    events = parser.feed("stderr", "Traceback (most recent call last):\n  File \"x\", line 1\n"
                                   "torch.OutOfMemoryError: CUDA out of memory. Tried to "
                                   "allocate 72.00 MiB. GPU 0 has a total capacity of 11.99 GiB")
    events += parser.feed("stderr", "\n")
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert len(errors) == 1 and errors[0].kind == "oom"
    assert "Lower the resolution" in errors[0].message


def test_parser_stop_reports_the_newest_complete_state(tmp_path):
    parser = KohyaParser()
    out = tmp_path / "job" / "output"
    state = out / "my_lora-step00000400-state"
    state.mkdir(parents=True)
    (state / "random_states_0.pkl").write_bytes(b"rng")
    lora = out / "my_lora-step00000400.safetensors"
    lora.write_bytes(b"x")
    parser.feed("stdout", context_line(tmp_path) +
                "  total optimization steps / 学習ステップ数: 3680\n")
    parser.feed("stderr", bar(400))
    parser.feed("stdout", f"\nsaving checkpoint: {lora}\nsaving state at step 400\n")
    events = parser.feed("stdout", '[isengard] stop {"saving":false}\n'
                                   '[isengard] stopped {"saved":false,"step":-1}\n')
    assert CheckpointEvent(400, str(lora), True) in events      # complete: recorded at stop
    # the newest save is the job's LoRA, as "<name>-step<N>" in the job folder (item 16)
    exported = tmp_path / "job" / "my_lora-step400.safetensors"
    assert events[-1] == StoppedEvent(400, str(lora), str(exported))
    assert exported.read_bytes() == b"x" and exported.stat().st_ino == lora.stat().st_ino


def test_parser_resumed_run_keys_saves_by_the_real_step(tmp_path):
    """After --skip_until_initial_step sd-scripts restarts its step counter at what is left
    after the skipped epochs (train_network.py:1258-1273, 1340-1344): the save named step 200
    is real step 700 and overwrote the first run's step-200 files (issue 10, item 4)."""
    out = tmp_path / "job" / "output"
    lora = out / "my_lora-step00000200.safetensors"
    state = out / "my_lora-step00000200-state"
    state.mkdir(parents=True)
    (state / "random_states_0.pkl").write_bytes(b"rng")
    lora.write_bytes(b"x")
    record_checkpoint(tmp_path / "job", 200, "kohya", str(lora), str(state))   # the first run's
    parser = KohyaParser()
    parser.feed("stdout", context_line(tmp_path, steps=1000) +
                "  num batches per epoch / 1epochのバッチ数: 250\n"
                "skipping 600 steps / 600ステップをスキップします\n"
                "skipping epoch 1 because initial_step (multiplied) is 600\n"
                "skipping epoch 2 because initial_step (multiplied) is 350\n"
                "  total optimization steps / 学習ステップ数: 1000\n")
    parser.feed("stderr", bar(100, 400))
    parser.feed("stdout", f"\nsaving checkpoint: {lora}\n\nsaving state at step 200\n")
    events = parser.feed("stderr", bar(101, 400))
    assert CheckpointEvent(700, str(lora), True) in events
    assert latest_complete(tmp_path / "job").step == 700
    assert not (tmp_path / "job" / "checkpoints" / "checkpoint-200").exists()


def test_windows_loads_data_without_worker_processes(tree):
    """Issue 13 item 7: spawned DataLoader workers each load the CUDA DLLs on Windows."""
    tmp, _backend = tree
    paths = JobPaths(tmp / "jobs" / "j")
    job = make_job(tmp, extra=flux_fields(tmp))
    windows = build_args(job, paths, platform="windows")["dataset"]
    assert windows["max_data_loader_n_workers"] == 0
    assert windows["persistent_data_loader_workers"] is None      # left out of the TOML
    assert "persistent_data_loader_workers" not in dump_toml({"dataset": windows})
    for platform in ("linux", "wsl"):
        other = build_args(job, paths, platform=platform)["dataset"]
        assert (other["max_data_loader_n_workers"],
                other["persistent_data_loader_workers"]) == (2, True)


def test_block_swap_for_out_of_memory_recovery_reads_the_preset_and_the_override(tree):
    """What the OOM recovery (core/training/oom.py) starts from: the blocks the job's
    settings swap now (the VRAM preset's, or the explicit field) and sd-scripts' most; the
    next tier's blocks then reach the arguments."""
    from isengard_desktop.core.training.oom import next_tier

    tmp, backend = tree
    assert backend.block_swap(make_job(tmp, extra=flux_fields(tmp, vram="12"))) == (16, 35)
    assert backend.block_swap(make_job(tmp, extra=flux_fields(tmp, vram="12",
                                                              blocks_to_swap=4))) == (4, 35)
    assert backend.block_swap(make_job(tmp, extra=flux_fields(tmp))) == (0, 35)
    assert backend.block_swap(make_job(tmp, "sdxl")) is None
    job = make_job(tmp, resolution=512, extra=flux_fields(tmp, vram="12"))
    tier = next_tier(job, backend.capabilities()["quantize_base"], backend.block_swap(job))
    assert tier is not None
    training = build_args(tier.job, job_paths(tmp, "j"))["training"]
    assert (training["blocks_to_swap"], training["fp8_base"]) == (24, True)


def test_an_int8_base_is_trained_in_fp8_and_the_arguments_file_says_so(tree):
    tmp, backend = tree
    job = make_job(tmp, quantize_base="int8", extra=flux_fields(tmp))
    paths = job_paths(tmp, job.job_id)
    text = backend.build_launch(job, paths, resume=False).files[paths.configs / ARGS_NAME]
    assert tomllib.loads(text)["training"]["fp8_base"] is True
    assert "no int8 base; the base model is trained in fp8 (--fp8_base)" in text
    fp8 = make_job(tmp, quantize_base="float8", extra=flux_fields(tmp))
    assert "no int8 base" not in backend.build_launch(fp8, paths, False).files[
        paths.configs / ARGS_NAME]
    # Flux sample prompts (sd-scripts flux_train_utils.py@5dff02a6:157-158): --g is the
    # embedded guidance, --l the real CFG, which stays at its 1.0 (no negative) for dev
    lines = sample_prompt_lines(job)
    assert lines and all("--g 3.5" in line and "--l" not in line for line in lines)
    chroma = sample_prompt_lines(make_job(tmp, "chroma", extra=flux_fields(tmp)))
    assert all("--l 4.0" in line and "--n " in line for line in chroma)
