"""diffusion-pipe backend: TOMLs (golden), path-key validation, launch, stop file, resume,
dataset staging, W&B without secrets in files (no Qt, no child process)."""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path

import pytest
import toml

from isengard_desktop.core.training import installs as installs_mod
from isengard_desktop.core.training.installs import ExternalInstall
from isengard_desktop.core.training.profile_store import ProfileStore
from isengard_desktop.core.training.profiles import apply as apply_profile
from isengard_desktop.core.training.spec import JobPaths, SpecError, TrainingJob
from isengard_desktop.plugins.diffusion_pipe import backend as dp
from isengard_desktop.plugins.diffusion_pipe.backend import (DATASET_FOLDER, DATASET_TOML,
                                                             DiffusionPipeBackend, MAIN_TOML,
                                                             toml_dumps)
from isengard_desktop.plugins.diffusion_pipe.parser import find_checkpoint
from isengard_desktop.core.training.dataset_list import entries_from_folder, write_dataset_list
from isengard_desktop.plugins.diffusion_pipe.dataset import stage_dataset
from isengard_desktop.core.dataset.captions import with_trigger
from isengard_desktop.plugins.diffusion_pipe.dataset import (caption_prefix,
                                                             drop_trigger_tags,
                                                             staged_caption)
from isengard_desktop.plugins.diffusion_pipe.models import MODEL_TYPES, path_fields
from isengard_desktop.plugins.registry import default_registry
from tests.helpers import standin_diffusion_pipe
from tests.helpers.standin_diffusion_pipe import make_fake_install, small_safetensors

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
ELEVEN = ("chroma", "sdxl", "flux", "ltx-video", "hunyuan-video", "cosmos", "lumina_2", "wan",
          "hidream", "sd3", "cosmos_predict2")
WANDB_SECRET = "0123456789abcdef0123456789abcdef01234567"
HF_SECRET = "hf_" + "SuperSecretTokenValue0987654321"


@pytest.fixture
def world(tmp_path: Path) -> dict:
    """A fake install, a 3-photo dataset and model files for every path key we use."""
    root = tmp_path / "w"
    install = make_fake_install(root / "install")
    ds = root / "dataset"
    ds.mkdir(parents=True)
    for i in range(3):
        (ds / f"photo-{i}.jpg").write_bytes(b"\xff\xd8jpeg" + bytes([i]))
        (ds / f"photo-{i}.txt").write_text(f"a photo of a woman {i}\n", encoding="utf-8")
    (ds / "notes.md").write_text("not an image")
    models = root / "models"
    for folder in ("FLUX.1-dev", "Wan2.1-T2V-1.3B", "hv-ckpts", "llava", "clip-l"):
        (models / folder).mkdir(parents=True)
    for name in ("chroma-unlocked-v47.safetensors", "sd_xl_base_1.0.safetensors",
                 "hv_transformer.safetensors", "hv_vae.safetensors",
                 "wan_transformer.safetensors"):
        small_safetensors(models / name, 0)
    paths = JobPaths(root / "jobs" / "job1")
    write_dataset_list(paths.root, entries_from_folder(ds))   # what the app writes at start
    return {"root": root, "install": install, "dataset": ds, "models": models,
            "paths": paths}


def make_job(world: dict, family: str = "chroma", **kw) -> TrainingJob:
    models = world["models"]
    base = dict(job_id="job1", character_id=1, character_name="Alice", trigger_word="alc",
                family=family, base_model=str(models / "chroma-unlocked-v47.safetensors"),
                dataset_dir=str(world["dataset"]), output_name="alice_lora",
                backend="diffusion-pipe", steps=1000, rank=32, learning_rate=2.5e-4,
                warmup_steps=100, checkpoint_every=250,
                extra={"fields": {"diffusers_path": str(models / "FLUX.1-dev")}})
    base.update(kw)
    return TrainingJob(**base)


JOBS = {
    "chroma": lambda w: make_job(w),
    # the Chroma E6AI profiles' dataset options: caption prefix and shuffled tags
    "chroma-e6ai": lambda w: make_job(w, extra={"cache_shuffle_delimiter": ", ", "fields": {
        "diffusers_path": str(w["models"] / "FLUX.1-dev"), "caption_prefix": "[trigger], ",
        "cache_shuffle_num": 10, "num_ar_buckets": 9}}),
    "flux": lambda w: make_job(w, "flux-dev", base_model=str(w["models"] / "FLUX.1-dev"),
                               quantize_base="float8", extra={}),
    "sdxl": lambda w: make_job(w, "sdxl",
                               base_model=str(w["models"] / "sd_xl_base_1.0.safetensors"),
                               optimizer="adamw8bit", extra={"epochs": 10}, repeats=2),
    "wan": lambda w: make_job(w, "flux-dev", base_model=str(w["models"] / "Wan2.1-T2V-1.3B"),
                              extra={"model_type": "wan", "fields": {
                                  "transformer_path": str(w["models"]
                                                          / "wan_transformer.safetensors"),
                                  "frame_buckets": "1, 17, 33", "blocks_to_swap": 10}}),
    "hunyuan-video": lambda w: make_job(w, "flux-dev", base_model="", extra={
        "model_type": "hunyuan-video", "wandb": True, "fields": {
            "transformer_path": str(w["models"] / "hv_transformer.safetensors"),
            "vae_path": str(w["models"] / "hv_vae.safetensors"),
            "llm_path": str(w["models"] / "llava"), "clip_path": str(w["models"] / "clip-l"),
            "epochs": 4, "save_every_n_epochs": 2, "checkpoint_every_n_minutes": 60,
            "optimizer_type": "AdamW8bitKahan", "activation_checkpointing": "unsloth"}}),
}


def normalized(text: str, world: dict) -> str:
    return text.replace(str(world["root"]), "<ROOT>")


@pytest.mark.parametrize("name", sorted(JOBS))
def test_golden_tomls(world, name):
    backend = DiffusionPipeBackend(world["install"])
    launch = backend.build_launch(JOBS[name](world), world["paths"], resume=False)
    for which, file_name in (("main", MAIN_TOML), ("dataset", DATASET_TOML)):
        text = launch.files[world["paths"].configs / file_name]
        assert tomllib.loads(text) == toml.loads(text)      # strict and diffusion-pipe's parser
        golden = GOLDEN / f"diffusion_pipe_{name}_{which}.toml"
        if os.environ.get("UPDATE_GOLDEN"):
            golden.write_text(normalized(text, world), encoding="utf-8")
        assert normalized(text, world) == golden.read_text(encoding="utf-8"), golden.name
        if which == "main":      # a golden file diffusion-pipe reads fully (its rules, in the stand-in)
            doc = tomllib.loads(text)
            standin_diffusion_pipe.check_main_keys(doc)
            standin_diffusion_pipe.scheduler_total(doc, 1)
            assert doc["model"]["type"] in standin_diffusion_pipe.MODEL_TYPES


def test_every_model_type_is_selectable_with_its_path_fields():
    keys = [m.key for m in MODEL_TYPES]
    assert set(ELEVEN) <= set(keys) and len(keys) == len(set(keys)) >= 20
    caps = DiffusionPipeBackend().capabilities()
    assert [m["key"] for m in caps["model_types"]] == keys
    assert caps["samples"] is False and caps["resume"] is True and caps["stop"] == "file"
    assert caps["platforms"] == ["linux", "wsl"]
    fields = caps["fields"]
    for mt in MODEL_TYPES:
        shown = {f["key"] for f in fields if mt.key in f.get("model_types", [mt.key])}
        for pk in mt.paths:
            assert pk.key in shown, (mt.key, pk.key)
    for field in fields:
        assert {"key", "label", "kind", "tooltip", "required"} <= set(field)
        assert field["kind"] in ("file", "folder", "text", "int", "float", "choice", "bool")
        assert field["kind"] != "choice" or field["choices"]
    by_type = {(f["key"], t) for f in path_fields() for t in f["model_types"]}
    assert {("diffusers_path", "chroma"), ("transformer_path", "chroma"),
            ("checkpoint_path", "sdxl"), ("ckpt_path", "wan"), ("clip_path", "hunyuan-video"),
            ("llama3_path", "hidream"), ("t5_path", "cosmos_predict2")} <= by_type


@pytest.mark.parametrize("model_type, fields, key, why", [
    ("chroma", {"transformer_path": "{M}/chroma.safetensors"}, "diffusers_path", "not set"),
    ("sdxl", {}, "checkpoint_path", "not set"),
    ("flux", {}, "diffusers_path", "not set"),
    ("wan", {}, "ckpt_path", "not set"),
    ("hidream", {"diffusers_path": "{M}/FLUX.1-dev"}, "llama3_path", "not set"),
    ("lumina_2", {"transformer_path": "{M}/chroma.safetensors"}, "llm_path", "not set"),
    ("cosmos_predict2", {}, "transformer_path", "not set"),
    ("hunyuan-video", {"vae_path": "{M}/hv_vae.safetensors"}, "transformer_path",
     "needs ckpt_path or all of transformer_path, vae_path, llm_path, clip_path"),
    ("sd3", {"diffusers_path": "{M}/missing-sd3"}, "diffusers_path", "does not exist"),
    ("wan", {"ckpt_path": "{M}/hv_vae.safetensors"}, "ckpt_path", "is a file"),
    ("chroma", {"diffusers_path": "{M}/FLUX.1-dev", "transformer_path": "{M}/llava"},
     "transformer_path", "is a folder"),
    ("ltx-video", {"diffusers_path": "{M}/FLUX.1-dev", "single_file_path": "{M}/nope.safetensors"},
     "single_file_path", "does not exist"),
])
def test_path_keys_are_checked_before_launch(world, model_type, fields, key, why):
    fields = {k: v.replace("{M}", str(world["models"])) for k, v in fields.items()}
    family = {"sdxl": "sdxl", "chroma": "chroma"}.get(model_type, "flux-dev")
    job = make_job(world, family, base_model="", extra={"model_type": model_type,
                                                         "fields": fields})
    with pytest.raises(SpecError, match=rf"^fields\.{key}: .*{why}"):
        DiffusionPipeBackend(world["install"]).build_launch(job, world["paths"], False)
    assert not (world["paths"].root / DATASET_FOLDER).exists()   # nothing staged


def test_base_model_fills_the_main_path_and_other_spec_errors(world):
    backend = DiffusionPipeBackend(world["install"])
    sdxl = make_job(world, "sdxl", base_model=str(world["models"] / "sd_xl_base_1.0.safetensors"),
                    extra={})
    main = tomllib.loads(backend.build_launch(sdxl, world["paths"], False)
                         .files[world["paths"].configs / MAIN_TOML])
    assert main["model"]["checkpoint_path"].endswith("sd_xl_base_1.0.safetensors")
    cases = [
        (make_job(world, "sd15"), r"^family: diffusion-pipe cannot train 'sd15'"),
        (make_job(world, "sdxl", extra={"model_type": "chroma"}), r"^model_type: .*'chroma'"),
        (make_job(world, extra={"model_type": "sd1"}), r"^model_type: .*no model type 'sd1'"),
        (make_job(world, "sdxl", quantize_base="float8",
                  base_model=str(world["models"] / "sd_xl_base_1.0.safetensors")),
         r"^quantize_base: .*SDXL in float8"),
        (make_job(world, quantize_base="int8"), r"^quantize_base: "),
        (make_job(world, extra={"fields": {"diffusers_path": str(world["models"] / "FLUX.1-dev"),
                                           "epochs": "many"}}), r"^fields\.epochs: 'many'"),
        (make_job(world, extra={"fields": {"diffusers_path": str(world["models"] / "FLUX.1-dev"),
                                           "min_ar": 2, "max_ar": 1}}), r"^fields\.max_ar: "),
    ]
    for job, pattern in cases:
        with pytest.raises(SpecError, match=pattern):
            backend.build_launch(job, world["paths"], False)
    # the job's photo list (dataset.json) is what is trained on: missing or empty, refused
    write_dataset_list(world["paths"].root, [])
    with pytest.raises(SpecError, match=r"^dataset.json: .* lists no photos"):
        backend.build_launch(make_job(world), world["paths"], False)
    world["paths"].dataset_list.unlink()
    with pytest.raises(SpecError, match=r"^dataset.json: .* is missing"):
        backend.build_launch(make_job(world), world["paths"], False)
    write_dataset_list(world["paths"].root, entries_from_folder(world["dataset"]))
    with pytest.raises(SpecError, match=r"^backend: diffusion-pipe is not set up"):
        DiffusionPipeBackend().build_launch(make_job(world), world["paths"], False)


def test_launch_argv_env_cwd_stop_and_parser_total(world):
    backend = DiffusionPipeBackend(world["install"])
    paths = world["paths"]
    launch = backend.build_launch(make_job(world), paths, resume=False)
    python = Path(world["install"].python)
    assert launch.argv == [str(python.parent / "deepspeed"), "--num_gpus=1", "train.py",
                           "--deepspeed", "--config", str(paths.configs / MAIN_TOML)]
    assert launch.cwd == world["install"].folder
    assert launch.env == {"NCCL_P2P_DISABLE": "1", "NCCL_IB_DISABLE": "1"}
    assert launch.stop == "file" and launch.stop_file.parent == paths.root
    parser = backend.make_parser()
    assert parser.total == 1000 and parser.ctx.max_steps == 1000
    assert backend.make_parser().total == 0          # one parser per launch
    # epochs: 4 epochs x (3 photos x 2 repeats / (batch 1 x accum 2)) = 12 steps
    job = make_job(world, repeats=2, grad_accum=2, extra={"epochs": 4, "fields": {
        "diffusers_path": str(world["models"] / "FLUX.1-dev")}})
    backend.build_launch(job, paths, resume=False)
    parser = backend.make_parser()
    assert (parser.total, parser.ctx.steps_per_epoch, parser.ctx.epochs) == (12, 3, 4)
    # no deepspeed script next to the interpreter: the launcher module
    (python.parent / "deepspeed").unlink()
    launch = backend.build_launch(make_job(world), paths, resume=False)
    assert launch.argv[:4] == [str(python), "-m", "deepspeed.launcher.runner", "--num_gpus=1"]


def test_dataset_is_staged_with_trigger_captions(world):
    backend = DiffusionPipeBackend(world["install"])
    paths = world["paths"]
    # two photos on disk that are not in the job's list (no database row): never staged
    for i in (3, 4):
        (world["dataset"] / f"photo-{i}.jpg").write_bytes(b"\xff\xd8jpeg" + bytes([i]))
    launch = backend.build_launch(make_job(world), paths, resume=False)
    staged = paths.root / DATASET_FOLDER
    assert sorted(p.name for p in staged.iterdir()) == [f"photo-{i}.jpg" for i in range(3)]
    assert os.path.samefile(staged / "photo-0.jpg", world["dataset"] / "photo-0.jpg")
    assert launch.files[staged / "photo-1.txt"] == "alc, a photo of a woman 1\n"
    dataset = tomllib.loads(launch.files[paths.configs / DATASET_TOML])
    assert dataset["directory"] == [{"path": str(staged), "num_repeats": 1}]
    # a photo removed from the dataset leaves the staged copy; the tool's cache stays
    (world["dataset"] / "photo-2.jpg").unlink()
    (staged / "cache" / "chroma").mkdir(parents=True)
    (staged / "photo-2.txt").write_text("old")
    (staged / "photo-0.txt").write_text("alc, a photo of a woman 0\n")   # as written before
    (world["dataset"] / "photo-1.txt").write_text("alc in the snow")
    listed = [e for e in entries_from_folder(world["dataset"])
              if Path(e.path).name in ("photo-0.jpg", "photo-1.jpg")]
    captions = stage_dataset(listed, staged, "alc", video=False)
    assert sorted(p.name for p in staged.iterdir()) == ["cache", "photo-0.jpg", "photo-0.txt",
                                                        "photo-1.jpg"]
    assert captions == {staged / "photo-1.txt": "alc in the snow\n"}   # only what changed
    assert with_trigger("portrait of alc smiling", "alc") == "portrait of alc smiling"
    assert with_trigger("alcove at night", "alc") == "alc, alcove at night"
    assert with_trigger("", "alc") == "alc"


def test_caption_prefix_and_tag_shuffling_of_the_chroma_profiles(world):
    """The Chroma E6AI profiles' caption prefix ("[trigger], ") and shuffled tags reach
    diffusion-pipe's own dataset options; the staged captions do not repeat the trigger."""
    store = ProfileStore(Path("/nonexistent"), Path(__file__).resolve().parents[2] / "profiles")
    backend = DiffusionPipeBackend(world["install"])
    own = [f["key"] for f in backend.capabilities()["fields"]]
    assert {"caption_prefix", "shuffle_tags", "cache_shuffle_num"} <= set(own)
    (world["dataset"] / "photo-1.txt").write_text("alc, red hair, smiling\n")
    (world["dataset"] / "photo-2.txt").write_text("portrait of alc smiling\n")
    models, paths = world["models"], world["paths"]
    write_dataset_list(paths.root, entries_from_folder(world["dataset"]))   # the new captions
    for name in ("Chroma E6AI 512", "Chroma E6AI 1024"):
        profile = next(p for p in store.profiles() if p.name == name)
        kwargs = apply_profile(profile, dict(
            job_id="job1", character_id=1, character_name="Alice", trigger_word="alc",
            family="chroma", base_model="", dataset_dir=str(world["dataset"]),
            output_name="alice_lora"), {
            "transformer_path": str(models / "chroma-unlocked-v47.safetensors"),
            "diffusers_path": str(models / "FLUX.1-dev")}, backend_fields=own)
        job = TrainingJob(**kwargs)
        assert job.extra["fields"]["caption_prefix"] == "[trigger], "
        launch = backend.build_launch(job, paths, resume=False)
        dataset = tomllib.loads(launch.files[paths.configs / DATASET_TOML])
        assert dataset["caption_prefix"] == "alc, "           # [trigger] -> the trigger word
        assert dataset["cache_shuffle_num"] == 10 and dataset["cache_shuffle_delimiter"] == ", "
        assert dataset["num_ar_buckets"] == 9
        staged = paths.root / DATASET_FOLDER
        # the tool adds the prefix after shuffling: no trigger of our own in the captions
        assert launch.files[staged / "photo-0.txt"] == "a photo of a woman 0\n"
        assert launch.files[staged / "photo-1.txt"] == "red hair, smiling\n"
        assert launch.files[staged / "photo-2.txt"] == "portrait of alc smiling\n"
    # the form hands the prefix over with [trigger] already replaced: the same result
    job = make_job(world, extra={"fields": {"diffusers_path": str(models / "FLUX.1-dev"),
                                            "caption_prefix": "alc, ", "shuffle_tags": True}})
    launch = backend.build_launch(job, paths, resume=False)
    dataset = tomllib.loads(launch.files[paths.configs / DATASET_TOML])
    assert dataset["caption_prefix"] == "alc, " and dataset["shuffle_tags"] is True
    assert "cache_shuffle_num" not in dataset
    assert launch.files[paths.root / DATASET_FOLDER / "photo-1.txt"] == "red hair, smiling\n"
    # a prefix without the trigger word: the captions keep theirs
    job = make_job(world, extra={"fields": {"diffusers_path": str(models / "FLUX.1-dev"),
                                            "caption_prefix": "photo"}})
    launch = backend.build_launch(job, paths, resume=False)
    dataset = tomllib.loads(launch.files[paths.configs / DATASET_TOML])
    assert dataset["caption_prefix"] == "photo, " and "shuffle_tags" not in dataset
    assert launch.files[paths.root / DATASET_FOLDER / "photo-0.txt"] == \
        "alc, a photo of a woman 0\n"
    assert launch.files[paths.root / DATASET_FOLDER / "photo-1.txt"] == \
        "alc, red hair, smiling\n"
    # the helpers' rules
    assert caption_prefix("[trigger], ", "alc") == "alc, "
    assert caption_prefix("photo of [trigger]", "alc") == "photo of alc, "
    assert caption_prefix("[trigger],", "alc") == "alc, " and caption_prefix("  ", "x") == ""
    assert staged_caption("alc, alc, tag", "alc", "alc, ") == "tag"
    assert staged_caption("alcove, tag", "alc", "alc, ") == "alcove, tag"
    assert staged_caption("tag", "alc", "") == "alc, tag"
    assert drop_trigger_tags("a;alc;b", "alc", ";") == "a;b"


def test_wandb_key_only_in_env_and_no_secret_anywhere(world, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", WANDB_SECRET)
    monkeypatch.setenv("HF_TOKEN", HF_SECRET)
    backend = DiffusionPipeBackend(world["install"])
    job = make_job(world, extra={"wandb": True, "wandb_project": "faces", "fields": {
        "diffusers_path": str(world["models"] / "FLUX.1-dev")}})
    launch = backend.build_launch(job, world["paths"], resume=False)
    main = tomllib.loads(launch.files[world["paths"].configs / MAIN_TOML])
    assert main["monitoring"] == {"enable_wandb": True, "wandb_api_key": "",
                                  "wandb_tracker_name": "faces",
                                  "wandb_run_name": "alice_lora-job1"}
    blob = json.dumps([launch.argv, launch.env, launch.cwd, str(launch.stop_file),
                       {str(k): v for k, v in launch.files.items()}, job.to_json()])
    assert WANDB_SECRET not in blob and HF_SECRET not in blob
    assert "WANDB_API_KEY" not in launch.env and "HF_TOKEN" not in launch.env


def test_resume_uses_the_newest_run_with_a_complete_checkpoint(world):
    backend = DiffusionPipeBackend(world["install"])
    paths = world["paths"]
    out = paths.root / "diffusion-pipe"
    older, newer = out / "20250101_10-00-00", out / "20250102_10-00-00"
    (older / "global_step40").mkdir(parents=True)
    (older / "global_step40" / "mp_rank_00_model_states.pt").write_bytes(b"x" * 10)
    (older / "latest").write_text("global_step40")
    (older / "save_quit").write_text("stop\n")            # left by a killed run
    newer.mkdir()                                          # crashed before any checkpoint
    assert find_checkpoint(out)[1].step == 40
    launch = backend.build_launch(make_job(world), paths, resume=True)
    assert launch.argv[-2:] == ["--resume_from_checkpoint", older.name]
    assert launch.stop_file == older / "save_quit" and not launch.stop_file.exists()
    parser = backend.make_parser()
    assert parser.ctx.start_step == 40 and parser.ctx.run_dir == older
    # an empty checkpoint file fails the deep check; `latest` naming nothing is skipped
    (older / "global_step40" / "mp_rank_00_model_states.pt").write_bytes(b"")
    assert find_checkpoint(out, deep=True) is None and find_checkpoint(out) is not None
    (older / "latest").write_text("global_step99")
    assert find_checkpoint(out) is None
    assert "--resume_from_checkpoint" not in backend.build_launch(make_job(world), paths,
                                                                  resume=True).argv


def test_stop_file_goes_to_the_run_folder_once_it_exists(world):
    backend = DiffusionPipeBackend(world["install"])
    paths = world["paths"]
    pending = backend.build_launch(make_job(world), paths, resume=False).stop_file
    assert backend.resolve_stop_file(paths, pending) == pending        # no run folder yet
    run = paths.root / "diffusion-pipe" / "20250103_09-00-00"
    run.mkdir(parents=True)
    (paths.root / "diffusion-pipe" / "20250101_09-00-00").mkdir()
    assert backend.resolve_stop_file(paths, pending) == run / "save_quit"
    resumed = paths.root / "diffusion-pipe" / "20250101_09-00-00" / "save_quit"
    assert backend.resolve_stop_file(paths, resumed) == resumed          # resume: its run


def test_available_says_exactly_what_is_missing(world, monkeypatch):
    assert "Settings → Trainers" in DiffusionPipeBackend().available()[1]
    assert DiffusionPipeBackend(world["install"]).available() == (True, "")
    no_script = ExternalInstall(world["install"].folder, world["install"].python)
    (Path(no_script.folder) / "train.py").unlink()
    ok, why = DiffusionPipeBackend(no_script).available()
    assert not ok and "has no train.py" in why and no_script.folder in why
    monkeypatch.setattr(installs_mod, "current_platform", lambda: "windows")
    ok, why = DiffusionPipeBackend(world["install"]).available()
    assert not ok and "needs Linux or WSL" in why
    assert "needs Linux or WSL" in DiffusionPipeBackend().capabilities()["unsupported_reason"]


def test_registry_creates_it_lazily_and_toml_writer_escapes():
    registry = default_registry()
    assert "diffusion-pipe" in registry
    backend = registry.get("diffusion-pipe")
    assert isinstance(backend, DiffusionPipeBackend) and not backend.install.configured
    text = toml_dumps({"a": 'C:\\models\\"x"', "b": [1, 2], "c": 1e-8, "d": True,
                       "t": {"k": [{"path": "p", "type": "lumina2"}]},
                       "arr": [{"path": "q"}]}, "header line")
    assert text.startswith("# header line\n")
    assert tomllib.loads(text) == {"a": 'C:\\models\\"x"', "b": [1, 2], "c": 1e-8, "d": True,
                                   "t": {"k": [{"path": "p", "type": "lumina2"}]},
                                   "arr": [{"path": "q"}]}
    with pytest.raises(ValueError):
        toml_dumps({"x": float("nan")})
    assert dp.count_media(Path("/nonexistent"), video=False) == 0


@pytest.mark.parametrize("mt", MODEL_TYPES, ids=lambda m: m.key)
def test_every_model_type_refuses_a_launch_without_its_paths(world, mt):
    family = mt.families[0] if mt.families else "flux-dev"
    job = make_job(world, family, base_model="", extra={"model_type": mt.key})
    with pytest.raises(SpecError, match=rf"^fields\.(\w+): diffusion-pipe model type "
                                        rf"'{re.escape(mt.key)}' needs") as info:
        DiffusionPipeBackend(world["install"]).build_launch(job, world["paths"], False)
    key = info.value.args[0].split(":")[0].removeprefix("fields.")
    assert any(key in alt for alt in mt.required)


def test_the_standin_lora_file_is_valid_safetensors(tmp_path):
    from safetensors.numpy import load_file

    small_safetensors(tmp_path / "adapter_model.safetensors", 7)
    tensors = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert list(tensors) == ["lora_down.weight"] and tensors["lora_down.weight"].tolist() == [
        0.5, 7.0]


def test_block_swap_for_out_of_memory_recovery(world):
    """Flux/Chroma: the blocks swapped now (fields.blocks_to_swap, default 0) and the ceiling
    the recovery goes to; the next tier's blocks reach the main TOML."""
    from dataclasses import replace

    from isengard_desktop.core.training.oom import next_tier

    backend = DiffusionPipeBackend(world["install"])
    base = JOBS["chroma"](world)
    chroma = replace(base, family="chroma", quantize_base="none", resolution=512,
                     extra={**base.extra, "fields": {**(base.extra.get("fields") or {}),
                                                     "blocks_to_swap": 4}})
    assert backend.block_swap(chroma) == (4, 20)
    assert backend.block_swap(replace(chroma, family="sdxl")) is None
    tier = next_tier(chroma, backend.capabilities()["quantize_base"], backend.block_swap(chroma))
    assert tier is not None and tier.job.quantize_base == "float8"
    assert tier.job.extra["fields"]["blocks_to_swap"] == 12
    launch = backend.build_launch(tier.job, world["paths"], resume=True)
    main = tomllib.loads(launch.files[world["paths"].configs / MAIN_TOML])
    assert main["blocks_to_swap"] == 12 and main["model"]["transformer_dtype"] == "float8"
