"""The ai-toolkit config against ai-toolkit 27a03a91's own rules (issue 10, items 5-8, 12):
every key is one it reads, the scheduler does what the job asks, accumulation means optimizer
updates, Flux needs a diffusers folder and Chroma's T5/VAE come from an offline HF cache."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from isengard_desktop.core.training.installs import ExternalInstall
from isengard_desktop.core.training.spec import SpecError, TrainingJob
from isengard_desktop.plugins.ai_toolkit.backend import AiToolkitBackend, build_config
from tests.helpers import standin_ai_toolkit as standin
from tests.helpers.external_jobs import job_paths, external_job, make_dataset

BASES = {"flux-dev": "FLUX.1-dev", "flux-schnell": "FLUX.1-dev", "chroma": "chroma.safetensors",
         "sdxl": "sdxl.safetensors", "sd15": "sd15.safetensors"}


@pytest.fixture
def tree(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    models = tmp_path / "models"
    (models / "FLUX.1-dev" / "transformer").mkdir(parents=True)
    (models / "flux1-dev.safetensors").write_bytes(b"x")
    for name in ("sdxl.safetensors", "sd15.safetensors", "chroma.safetensors",
                 "schnell-adapter.safetensors"):
        (models / name).write_bytes(b"x")
    flex = models / "Flex.1-alpha"
    for sub in standin.CHROMA_EXTRAS:
        (flex / sub).mkdir(parents=True)
        (flex / sub / "config.json").write_text("{}")
    make_dataset(tmp_path)
    install = standin.make_install(tmp_path / "ai-toolkit")
    return tmp_path, AiToolkitBackend(ExternalInstall(str(install), sys.executable))


def job_for(tmp: Path, family: str, **kw) -> TrainingJob:
    fields = {"assistant_lora": str(tmp / "models" / "schnell-adapter.safetensors"),
              "extras_name_or_path": str(tmp / "models" / "Flex.1-alpha")}
    values = dict(job_id="job0004", backend="ai-toolkit", steps=1000, sample_every=250,
                  checkpoint_every=250, extra={"fields": fields})
    return external_job(tmp, family, BASES, **(values | kw))


def process_of(config: dict) -> dict:
    return config["config"]["process"][0]


@pytest.mark.parametrize("family", list(BASES))
@pytest.mark.parametrize("scheduler", ["constant", "cosine", "linear"])
def test_every_key_is_read_and_the_tool_accepts_it(tree, family, scheduler):
    tmp, _backend = tree
    job = job_for(tmp, family, lr_scheduler=scheduler, warmup_steps=50, grad_accum=2)
    process = process_of(build_config(job, job_paths(tmp, job.job_id)))
    standin.check_keys(process)
    standin.check_train(process["train"])
    assert standin.scheduler_factor(process["train"], 0) >= 0


def test_linear_decays_to_zero_and_constant_warms_up(tree):
    tmp, _backend = tree
    paths = job_paths(tmp, "j")
    train = process_of(build_config(job_for(tmp, "sdxl", lr_scheduler="linear"), paths))["train"]
    assert standin.scheduler_factor(train, 0) == pytest.approx(1.0)
    assert standin.scheduler_factor(train, 500) == pytest.approx(0.5)
    assert standin.scheduler_factor(train, 1000) == pytest.approx(0.0)
    train = process_of(build_config(job_for(tmp, "sdxl", lr_scheduler="constant",
                                            warmup_steps=100), paths))["train"]
    assert standin.scheduler_factor(train, 50) == pytest.approx(0.5)
    assert standin.scheduler_factor(train, 100) == pytest.approx(1.0)
    train = process_of(build_config(job_for(tmp, "sdxl", lr_scheduler="cosine"), paths))["train"]
    assert standin.scheduler_factor(train, 1000) == pytest.approx(0.0)


def test_accumulation_counts_optimizer_updates(tree):
    tmp, _backend = tree
    train = process_of(build_config(job_for(tmp, "sdxl", grad_accum=2),
                                    job_paths(tmp, "j")))["train"]
    assert train["gradient_accumulation"] == 2 and "gradient_accumulation_steps" not in train
    with pytest.raises(ValueError, match="mutually exclusive"):
        standin.check_train({"gradient_accumulation": 2, "gradient_accumulation_steps": 2})


def test_flux_needs_a_diffusers_folder(tree):
    tmp, backend = tree
    job = job_for(tmp, "flux-dev", base_model=str(tmp / "models" / "flux1-dev.safetensors"))
    with pytest.raises(SpecError, match=r"^base_model: .*diffusers folder.*transformer"):
        backend.build_launch(job, job_paths(tmp, job.job_id), resume=False)
    with pytest.raises(OSError):
        standin.check_model({"is_flux": True, "name_or_path": job.base_model})


def test_chroma_extras_become_an_offline_hf_cache(tree, monkeypatch):
    tmp, backend = tree
    job = job_for(tmp, "chroma")
    paths = job_paths(tmp, job.job_id)
    launch = backend.build_launch(job, paths, resume=False)
    model = process_of(yaml.safe_load(launch.files[paths.configs / "ai_toolkit.yaml"]))["model"]
    assert "extras_name_or_path" not in model            # the Chroma loader never reads it
    cache = Path(launch.env["HF_HUB_CACHE"])
    assert cache.is_relative_to(paths.root)
    for path, text in launch.files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    context = json.loads(launch.files[paths.configs / "isengard_context.json"])
    from isengard_desktop.plugins.external import trainer_shim
    trainer_shim.link_tree(context["link_tree"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    standin.check_model(model)
    monkeypatch.delenv("HF_HUB_CACHE")
    with pytest.raises(OSError, match="Flex.1-alpha"):
        standin.check_model(model)
    # nothing given and nothing cached: refused at submit, with the reason
    job = job_for(tmp, "chroma", extra={"fields": {}})
    with pytest.raises(SpecError, match=r"ostris/Flex\.1-alpha"):
        backend.build_launch(job, job_paths(tmp, "j2"), resume=False)
