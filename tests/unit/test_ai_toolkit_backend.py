"""The ai-toolkit backend: generated config (golden files), launch, availability, the line
parser on ai-toolkit's real output shapes, and loss history (plugins/ai_toolkit/backend.py)."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import sys
import time
from pathlib import Path

import pytest
import yaml

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
from isengard_desktop.core.training.spec import SpecError, TrainingJob
from isengard_desktop.plugins.ai_toolkit.backend import (
    AiToolkitBackend,
    AiToolkitParser,
    build_config,
    loss_history,
    loss_log_path,
)
from isengard_desktop.plugins.interface import LineParser, TrainerBackend
from tests.helpers.external_jobs import (
    job_paths,
    check_golden,
    external_job,
    make_dataset,
    normalise,
)
from tests.helpers import standin_ai_toolkit
from tests.helpers.standin_ai_toolkit import UILogger, make_install


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "models" / "FLUX.1-dev" / "transformer").mkdir(parents=True)
    (tmp_path / "models" / "sdxl.safetensors").write_bytes(b"x")
    (tmp_path / "models" / "sd15.safetensors").write_bytes(b"x")
    (tmp_path / "models" / "schnell-adapter.safetensors").write_bytes(b"x")
    for sub in ("tokenizer_2", "text_encoder_2", "vae"):   # T5 + VAE for Chroma
        (tmp_path / "models" / "FLUX.1-schnell" / sub).mkdir(parents=True)
    (make_dataset(tmp_path) / "a.txt").write_text("alc, a woman")
    install = make_install(tmp_path / "ai-toolkit")
    return tmp_path, AiToolkitBackend(ExternalInstall(str(install), sys.executable))


BASES = {"flux-dev": "FLUX.1-dev", "flux-schnell": "FLUX.1-dev", "chroma": "FLUX.1-dev",
         "sdxl": "sdxl.safetensors", "sd15": "sd15.safetensors"}


def make_job(tmp: Path, family: str = "flux-dev", **kw) -> TrainingJob:
    return external_job(tmp, family, BASES, **{
        "job_id": "job0001", "backend": "ai-toolkit", "steps": 1000, "sample_every": 250,
        "checkpoint_every": 250, **kw})


# -- config and launch ------------------------------------------------------------------------
@pytest.mark.parametrize("family, extra, golden", [
    ("flux-dev", {"quantize_base": "float8", "resolution": 1024, "rank": 32, "alpha": 16.0,
                  "optimizer": "adamw8bit", "extra": {"fields": {"low_vram": True}}},
     "ai_toolkit_flux_dev_quantized.yaml"),
    ("sdxl", {"resolution": 1024, "mixed_precision": "fp16", "lr_scheduler": "cosine"},
     "ai_toolkit_sdxl.yaml"),
    ("sd15", {"resolution": 512, "sample_every": 0, "repeats": 3, "batch_size": 2},
     "ai_toolkit_sd15.yaml"),
])
def test_config_matches_golden(tree, family, extra, golden):
    tmp, backend = tree
    job = make_job(tmp, family, **extra)
    paths = job_paths(tmp, job.job_id)
    launch = backend.build_launch(job, paths, resume=False)
    config_text = launch.files[paths.configs / "ai_toolkit.yaml"]
    check_golden(golden, normalise(config_text, tmp))
    config = yaml.safe_load(config_text)
    process = config["config"]["process"][0]
    assert config["job"] == "extension" and config["config"]["name"] == "alice_lora"
    assert process["type"] == "sd_trainer" and process["device"] == "cuda:0"
    assert process["training_folder"] == str(paths.root / "output")
    assert process["logging"] == {"log_every": 1, "use_ui_logger": True}
    assert all("alc" in p or "[trigger]" in p for p in process["sample"]["prompts"])
    standin_ai_toolkit.check_keys(process)      # a golden file ai-toolkit reads fully
    standin_ai_toolkit.check_train(process["train"])
    standin_ai_toolkit.scheduler_factor(process["train"], 0)


def test_launch_runs_run_py_through_the_launcher(tree):
    tmp, backend = tree
    job = make_job(tmp)
    paths = job_paths(tmp, job.job_id)
    launch = backend.build_launch(job, paths, resume=False)
    argv = [normalise(a, tmp) for a in launch.argv]
    check_golden("ai_toolkit_flux_dev.argv.json", json.dumps(argv, indent=1) + "\n")
    assert launch.argv[0] == sys.executable and launch.cwd == str(tmp / "ai-toolkit")
    assert launch.argv[-2:] == [str(tmp / "ai-toolkit" / "run.py"),
                                str(paths.configs / "ai_toolkit.yaml")]
    assert launch.stop == "file" and launch.stop_file.parent == paths.root
    assert re.fullmatch(r"isengard-[0-9a-f]{8}\.stop", launch.stop_file.name)
    assert launch.stop_file != backend.build_launch(job, paths, False).stop_file
    context = json.loads(launch.files[paths.configs / "isengard_context.json"])
    assert context["tool"] == "ai-toolkit" and context["output_dir"] == str(
        paths.root / "output" / "alice_lora")
    assert context["set_aside"] == {"folder": context["output_dir"], "prefix": "alice_lora",
                                    "keep": []}
    assert "import runpy" in launch.files[paths.configs / "isengard_shim.py"]
    assert isinstance(backend, TrainerBackend) and isinstance(backend.make_parser(), LineParser)


def test_resume_keeps_only_recorded_saves(tree):
    tmp, backend = tree
    job = make_job(tmp)
    paths = job_paths(tmp, job.job_id)
    out = paths.root / "output" / "alice_lora"
    out.mkdir(parents=True)
    save = out / "alice_lora_000000250.safetensors"
    save.write_bytes(b"x" * 16)
    from isengard_desktop.plugins.external.files import record_checkpoint
    record_checkpoint(paths.root, 250, "ai-toolkit", str(save))
    assert latest_complete(paths.root).step == 250
    launch = backend.build_launch(job, paths, resume=True)
    context = json.loads(launch.files[paths.configs / "isengard_context.json"])
    assert context["set_aside"]["keep"] == [str(save)]
    assert context["resume"] == {"step": 250, "lora": str(save)}
    assert launch.argv[-1] == str(paths.configs / "ai_toolkit.yaml")  # same config, relaunched


def test_family_fields_are_checked(tree):
    tmp, backend = tree
    paths = job_paths(tmp, "j")
    with pytest.raises(SpecError, match="^fields.assistant_lora"):
        backend.build_launch(make_job(tmp, "flux-schnell"), paths, False)
    schnell = make_job(tmp, "flux-schnell", sample_steps=20, extra={"fields": {
        "assistant_lora": str(tmp / "models" / "schnell-adapter.safetensors")}})
    config = build_config(schnell, paths)["config"]["process"][0]
    assert config["model"]["assistant_lora_path"].endswith("schnell-adapter.safetensors")
    assert config["sample"]["sample_steps"] == 4 and config["sample"]["guidance_scale"] == 1.0
    with pytest.raises(SpecError, match="^fields.extras_name_or_path"):
        backend.build_launch(make_job(tmp, "chroma"), paths, False)
    chroma = make_job(tmp, "chroma", extra={"fields": {"extras_name_or_path":
                                                       str(tmp / "models" / "FLUX.1-schnell")}})
    model = build_config(chroma, paths)["config"]["process"][0]["model"]
    assert model["arch"] == "chroma" and model["quantize"] is False
    with pytest.raises(SpecError, match="^base_model"):
        backend.build_launch(make_job(tmp, base_model=str(tmp / "nope")), paths, False)
    with pytest.raises(SpecError, match="^dataset_dir"):
        backend.build_launch(make_job(tmp, dataset_dir=str(tmp / "nope")), paths, False)
    with pytest.raises(SpecError, match="^model_type"):
        backend.build_launch(make_job(tmp, extra={"model_type": "sdxl"}), paths, False)
    with pytest.raises(SpecError, match="^device"):
        backend.build_launch(make_job(tmp, device="cpu"), paths, False)
    with pytest.raises(SpecError, match="^backend"):
        AiToolkitBackend().build_launch(make_job(tmp), paths, False)


def test_wandb_and_secrets_stay_out_of_files_and_argv(tree, monkeypatch, memory_keyring):
    tmp, backend = tree
    monkeypatch.setenv("WANDB_API_KEY", "wandb-Secret-0123456789abcdef")
    monkeypatch.setenv("HF_TOKEN", "hf_SecretTokenValue0123456789")
    memory_keyring.set_password("isengard", "wandb", "wandb-Secret-0123456789abcdef")
    job = make_job(tmp, extra={"wandb": True})
    paths = job_paths(tmp, job.job_id)
    launch = backend.build_launch(job, paths, resume=False)
    logging = yaml.safe_load(launch.files[paths.configs / "ai_toolkit.yaml"])[
        "config"]["process"][0]["logging"]
    assert logging["use_wandb"] is True and logging["project_name"] == "isengard"
    blob = "\n".join([*launch.argv, *launch.files.values(), json.dumps(launch.env)])
    for secret in ("wandb-Secret-0123456789abcdef", "hf_SecretTokenValue0123456789"):
        assert secret not in blob


def test_available_and_capabilities(tmp_path):
    ok, why = AiToolkitBackend().available()
    assert not ok and "No folder is set" in why
    ok, why = AiToolkitBackend(ExternalInstall(str(tmp_path), sys.executable)).available()
    assert not ok and "run.py" in why
    install = make_install(tmp_path / "aitk")
    ok, why = AiToolkitBackend(ExternalInstall(str(install),
                                               str(tmp_path / "no-python"))).available()
    assert not ok and "no-python" in why and "does not exist" in why
    backend = AiToolkitBackend(ExternalInstall(str(install), sys.executable))
    assert backend.available() == (True, "")
    caps = backend.capabilities()
    assert caps["families"] == ["flux-dev", "flux-schnell", "chroma", "sdxl", "sd15"]
    assert caps["resume"] and caps["samples"] and caps["stop"] == "file" and caps["stop_saves"]
    keys = {f["key"]: f for f in caps["fields"]}
    assert keys["assistant_lora"]["model_types"] == ["flux-schnell"]
    assert all(f["kind"] in ("file", "folder", "text", "int", "float", "choice", "bool")
               for f in caps["fields"])
    assert {m["key"] for m in caps["model_types"]} == set(caps["families"])


# -- the parser on ai-toolkit's real output shapes ---------------------------------------------
def context_line(tmp: Path, **extra) -> str:
    context = {"v": 1, "tool": "ai-toolkit", "job_dir": str(tmp / "job"),
               "output_dir": str(tmp / "job" / "output" / "my_lora"), "name": "my_lora",
               "steps": 2000, "lr": 1e-4, "trigger": "alc",
               "prompts": ["[trigger] portrait", "alc at the beach"], **extra}
    return "[isengard] context " + json.dumps(context) + "\n"


def test_parser_turns_the_tqdm_bar_into_steps(tmp_path):
    parser = AiToolkitParser()
    parser.feed("stdout", context_line(tmp_path))
    events = parser.feed("stderr", "\rmy_lora:   0%|          | 0/2000 [00:00<?, ?it/s]")
    events += parser.feed("stderr", "\r\x1b[0mmy_lora:  13%|█▎        | 250/2000 [02:03<14:21,"
                                    "  2.03it/s, lr: 1.0e-04 ")
    events += parser.feed("stderr", "loss: 4.123e-01]\rmy_lora:  13%|█▎        | 251/2000 "
                                    "[02:04<14:20,  2.03it/s, lr: 1.0e-04 loss: 4.1e-01]\r")
    events += parser.feed("stderr", "my_lora")  # a \r at the end of a read waits for the next
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert steps[0] == StepEvent(250, 2000, 0.4123, 1e-4, pytest.approx(1 / 2.03), 861.0)
    assert [s.step for s in steps] == [250, 251]
    assert PhaseEvent("training", 0, 2000, "") in events
    # the slow unit and NaN
    events = parser.feed("stderr", "\rmy_lora:  13%|█▎        | 252/2000 [02:05<58:00,  "
                                   "1.99s/it, lr: 9.0e-05 loss: nan]\n")
    step = next(e for e in events if isinstance(e, StepEvent))
    assert step.sec_per_step == pytest.approx(1.99) and step.lr == 9e-5 and step.loss != step.loss
    assert any(isinstance(e, LogEvent) and "NaN" in e.message for e in events)


def test_parser_phases_checkpoints_resume_and_done(tmp_path):
    parser = AiToolkitParser()
    out = tmp_path / "job" / "output" / "my_lora"
    (out / "samples").mkdir(parents=True)
    events = parser.feed("stdout", context_line(tmp_path) + "Running 1 job\n"
                         "Loading Flux model\nLoading transformer\n")
    assert events[-1] == PhaseEvent("loading_model", 0, 0, "Loading Flux model")
    events = parser.feed("stderr", "\rCaching latents to disk: 100%|██████████| 12/12 "
                                   "[00:03<00:00,  3.50it/s]\n")
    assert PhaseEvent("caching", 12, 12, "Caching latents to disk") in events
    save = out / "my_lora_000000250.safetensors"
    save.write_bytes(b"x" * 32)
    events = parser.feed("stdout", "#### IMPORTANT RESUMING FROM /o/my_lora_000000200.safeten"
                         "sors ####\nFound step 200 in metadata, starting from there\n\n"
                         f"Saving at step 250\nSaved checkpoint to {save}\n")
    assert LogEvent("info", "resuming at step 200") in events
    assert PhaseEvent("saving", 0, 0, "Saving at step 250") in events
    assert events[-1] == CheckpointEvent(250, str(save), True)
    assert latest_complete(tmp_path / "job").step == 250
    events = parser.feed("stdout", f"Removing old save: {save}\n")
    assert latest_complete(tmp_path / "job") is None
    # samples appear as files; the final save without a step is the LoRA
    sample = out / "samples" / "1730000000000__000000250_1.jpg"
    sample.write_bytes(b"jpeg")
    final = out / "my_lora.safetensors"
    events = parser.feed("stdout", f"\nSaved checkpoint to {final}\n\n=====\nResult:\n"
                         " - 1 completed job\n")
    assert SampleEvent(250, str(sample), "alc at the beach") in events
    assert events[-1] == DoneEvent(str(final), 2000)


def test_parser_samples_during_training_with_trigger_in_prompt(tmp_path):
    parser = AiToolkitParser()
    samples = tmp_path / "job" / "output" / "my_lora" / "samples"
    samples.mkdir(parents=True)
    (samples / "1__000000000_0.jpg").write_bytes(b"from an earlier run")
    parser.feed("stdout", context_line(tmp_path) + "Running 1 job\n")
    new = samples / "1730000000001__000000500_0.jpg"
    new.write_bytes(b"jpeg")
    old = time.time() - 5
    os.utime(new, (old, old))
    events = parser.feed("stderr", "\n\rGenerating Images:  50%|█████     | 1/2 [00:05<00:05,"
                                   "  5.00s/it]\n")
    assert SampleEvent(500, str(new), "alc portrait") in events
    assert PhaseEvent("sampling", 1, 2, "Generating Images") in events


def test_parser_errors_oom_and_recoverable_oom(tmp_path):
    parser = AiToolkitParser()
    parser.feed("stdout", context_line(tmp_path))
    events = parser.feed("stdout", "# OOM during training step, skipping batch 1/3 #\n")
    assert events == [LogEvent("warning", "ai-toolkit: OOM during training step, skipping "
                                          "batch 1/3")]
    events = parser.feed("stderr", "torch.OutOfMemoryError: CUDA out of memory. Tried\n")
    assert not any(isinstance(e, ErrorEvent) for e in events)   # ai-toolkit skips the batch
    events = parser.feed("stdout", "Error running job: CUDA out of memory. Tried to allocate "
                                   "20.00 MiB\n")
    assert [e.kind for e in events if isinstance(e, ErrorEvent)] == ["oom"]
    parser = AiToolkitParser()
    events = parser.feed("stdout", "Error running job: /m does not appear to have a file named"
                                   " config.json.\n")
    assert [e.kind for e in events if isinstance(e, ErrorEvent)] == ["model_missing"]


def test_parser_stop_events(tmp_path):
    parser = AiToolkitParser()
    out = tmp_path / "job" / "output" / "my_lora"
    out.mkdir(parents=True)
    save = out / "my_lora_000000321.safetensors"
    save.write_bytes(b"x")
    parser.feed("stdout", context_line(tmp_path))
    events = parser.feed("stdout", '[isengard] stop {"saving":true}\n'
                         f"Saved checkpoint to {save}\nSaved optimizer to {out}/optimizer.pt\n"
                         '[isengard] stopped {"saved":true,"step":321}\n')
    assert PhaseEvent("saving", 0, 0, "stopping (saving this step)") in events
    exported = tmp_path / "job" / "my_lora-step321.safetensors"   # the job's LoRA (item 16)
    assert events[-1] == StoppedEvent(321, str(save), str(exported))
    assert exported.read_bytes() == b"x"


# -- loss history ------------------------------------------------------------------------------
def test_loss_history_reads_loss_log_db(tmp_path):
    job = make_job(tmp_path)
    paths = job_paths(tmp_path, job.job_id)
    db = loss_log_path(job, paths)
    assert loss_history(db) == []
    db.parent.mkdir(parents=True)
    logger = UILogger(str(db))
    for step in range(5):
        logger.commit(step, {"learning_rate": 1e-4, "loss/loss": 1.0 / (step + 1)})
    assert loss_history(db) == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3)), (3, 0.25),
                                (4, 0.2)]   # readable while the writer is open (WAL)
    logger.finish()
    assert [s for s, _ in loss_history(db, "learning_rate")] == [0, 1, 2, 3, 4]
    assert AiToolkitBackend().loss_history(job, paths) == loss_history(db)
    (tmp_path / "junk.db").write_bytes(b"not a database")
    assert loss_history(tmp_path / "junk.db") == []
    con = sqlite3.connect(tmp_path / "empty.db")
    con.close()
    assert loss_history(tmp_path / "empty.db") == []
