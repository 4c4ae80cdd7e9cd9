"""The files the kohya backend writes against sd-scripts' own rules (issue 10, items 1-3):
the stand-in's checks (tests/helpers/standin_kohya.py, each citing sd-scripts' file:line) run
on every family and text-encoder mode; every key we write is one sd-scripts reads."""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path

import pytest

from isengard_desktop.core.training.installs import ExternalInstall
from isengard_desktop.core.training.spec import JobPaths, SpecError, TrainingJob
from isengard_desktop.plugins.kohya.backend import ARGS_NAME, DATASET_NAME, KohyaBackend
from tests.helpers import standin_kohya
from tests.helpers.external_jobs import job_paths, external_job, make_dataset

BASES = {"flux-dev": "flux1-dev.safetensors", "flux-schnell": "flux1-dev.safetensors",
         "chroma": "chroma.safetensors", "sdxl": "sdxl.safetensors", "sd15": "sd15.safetensors"}
KIND = {"sd15": "sd15", "sdxl": "sdxl", "flux-dev": "flux", "flux-schnell": "flux",
        "chroma": "flux"}


def make_t5_tokenizer(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.json").write_text(json.dumps({"model": {"type": "Unigram"}}))
    (folder / "tokenizer_config.json").write_text("{}")
    return folder


@pytest.fixture
def tree(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("ISENGARD_HOME", str(tmp_path / "home"))
    models = tmp_path / "comfy_install" / "models"
    models.mkdir(parents=True)
    for name in set(BASES.values()) | {"clip_l.safetensors", "t5xxl.safetensors",
                                       "ae.safetensors"}:
        (models / name).write_bytes(b"x")
    make_t5_tokenizer(tmp_path / "comfy_install" / "comfy" / "text_encoders" / "t5_tokenizer")
    make_dataset(tmp_path)
    install = standin_kohya.make_install(tmp_path / "sd-scripts")
    return tmp_path, KohyaBackend(ExternalInstall(str(install), sys.executable))


def job_for(tmp: Path, family: str, mode: str | None = None, **kw) -> TrainingJob:
    models = tmp / "comfy_install" / "models"
    fields = {"clip_l": str(models / "clip_l.safetensors"),
              "t5xxl": str(models / "t5xxl.safetensors"), "ae": str(models / "ae.safetensors")}
    if mode:
        fields["text_encoder_mode"] = mode
    values = dict(job_id="job0003", backend="kohya", steps=400, sample_every=100,
                  checkpoint_every=100, caption_dropout=0.05, extra={"fields": fields},
                  base_model=str(models / BASES[family]))
    return external_job(tmp, family, BASES, **(values | kw))


def written(backend: KohyaBackend, job: TrainingJob, tmp: Path) -> tuple[JobPaths, dict]:
    paths = job_paths(tmp, job.job_id)
    launch = backend.build_launch(job, paths, resume=False)
    for path, text in launch.files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return paths, launch.files


def read_back(paths: JobPaths) -> tuple[argparse.Namespace, dict, dict]:
    config = tomllib.loads((paths.configs / ARGS_NAME).read_text(encoding="utf-8"))
    flat: dict = {}
    for value in config.values():
        flat.update(value)
    names = {k: None for k in standin_kohya.ARGS}
    args = argparse.Namespace(**(names | flat))
    dataset = tomllib.loads((paths.configs / DATASET_NAME).read_text(encoding="utf-8"))
    return args, flat, dataset


@pytest.mark.parametrize("family", list(BASES))
@pytest.mark.parametrize("mode", [None, "cache", "dropout"])
def test_sd_scripts_accepts_what_we_write(tree, family, mode, monkeypatch):
    tmp, backend = tree
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    paths, _files = written(backend, job_for(tmp, family, mode), tmp)
    args, flat, dataset = read_back(paths)
    assert set(flat) <= set(standin_kohya.ARGS), set(flat) - set(standin_kohya.ARGS)
    standin_kohya.check_dataset(dataset)
    standin_kohya.assert_extra_args(KIND[family], args, dataset)
    standin_kohya.load_tokenizers(KIND[family], args)
    subset = dataset["datasets"][0]["subsets"][0]
    if family == "sd15" or mode == "dropout":  # SD 1.5 never caches text-encoder outputs
        assert not args.cache_text_encoder_outputs and subset["caption_dropout_rate"] == 0.05
    else:                                      # the default for SDXL/Flux/Chroma: the cache
        assert args.cache_text_encoder_outputs and not subset.get("caption_dropout_rate")


def test_stand_in_refuses_the_cache_with_caption_dropout():
    args = argparse.Namespace(cache_text_encoder_outputs=True, network_train_unet_only=True)
    dataset = {"general": {}, "datasets": [{"subsets": [{"caption_dropout_rate": 0.05}]}]}
    with pytest.raises(AssertionError, match="caption_dropout_rate"):
        standin_kohya.assert_extra_args("sdxl", args, dataset)
    with pytest.raises(ValueError, match="Invalid user config"):
        standin_kohya.check_dataset({"datasets": [{"subsets": [{"caption_droput": 0.1}]}]})


@pytest.mark.parametrize("keep", [1, 2, 3, 5])
def test_save_last_n_steps_keeps_exactly_keep_saves(tree, keep):
    tmp, backend = tree
    paths, _ = written(backend, job_for(tmp, "sdxl", keep_checkpoints=keep, steps=1000), tmp)
    args, _flat, _ = read_back(paths)
    for last_n in (args.save_last_n_steps, args.save_last_n_steps_state):
        saves: list[int] = []
        for step in range(args.save_every_n_steps, args.max_train_steps + 1,
                          args.save_every_n_steps):
            saves.append(step)
            old = standin_kohya.remove_step_no(last_n, args.save_every_n_steps, step)
            if old in saves:
                saves.remove(old)
        assert len(saves) == keep


def test_tokenizer_cache_dir_is_filled_before_launch(tree, monkeypatch):
    tmp, backend = tree
    paths, files = written(backend, job_for(tmp, "flux-dev"), tmp)
    args, _flat, _ = read_back(paths)
    cache = Path(args.tokenizer_cache_dir)
    assert cache.parent == paths.configs
    assert (cache / "openai_clip-vit-large-patch14" / "vocab.json") in files
    assert (cache / "google_t5-v1_1-xxl" / "tokenizer.json") in files
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    standin_kohya.load_tokenizers("flux", args)
    paths, files = written(backend, job_for(tmp, "sdxl"), tmp)
    args, _flat, _ = read_back(paths)
    bigg = Path(args.tokenizer_cache_dir) / "laion_CLIP-ViT-bigG-14-laion2B-39B-b160k"
    assert json.loads(files[bigg / "tokenizer_config.json"])["pad_token"] == "!"
    standin_kohya.load_tokenizers("sdxl", args)


def test_missing_t5_tokenizer_is_refused_at_submit(tree):
    tmp, backend = tree
    import shutil
    shutil.rmtree(tmp / "comfy_install" / "comfy")
    with pytest.raises(SpecError, match=r"T5-XXL tokenizer \(google/t5-v1_1-xxl\)"):
        written(backend, job_for(tmp, "flux-dev"), tmp)
    make_t5_tokenizer(tmp / "mytok")
    written(backend, job_for(tmp, "flux-dev", tokenizer_dir=str(tmp / "mytok")), tmp)
    written(backend, job_for(tmp, "sd15"), tmp)      # CLIP: the shipped vocabulary
