"""Presets, the time estimate and dataset warnings (Qt-free)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pytest

from isengard_desktop.core.training import presets
from isengard_desktop.core.training.presets import (
    PRESET_NAMES,
    PRESETS,
    apply_preset,
    dataset_warnings,
    estimate_seconds,
    format_clock,
    format_duration,
)
from isengard_desktop.core.training.spec import FAMILIES, TrainingJob


def _job(**kw) -> TrainingJob:
    base = dict(job_id="abc", character_id=1, character_name="Anna", trigger_word="anr_toka",
                family="sd15", base_model="/m/a.safetensors", dataset_dir="/d",
                output_name="anna-sd15-abc")
    base.update(kw)
    return TrainingJob(**base)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_makes_a_valid_job(family, name):
    job = apply_preset(_job(), family, name)
    job.validate()
    assert job.family == family and job.preset == name
    p = PRESETS[family][name]
    assert (job.steps, job.rank, job.learning_rate, job.resolution) == (
        p.steps, p.rank, p.learning_rate, p.resolution)
    assert 0 < job.warmup_steps < job.steps
    assert 0 < job.checkpoint_every <= job.steps and 0 < job.sample_every <= job.steps


@pytest.mark.parametrize("family", FAMILIES)
def test_presets_grow_from_quick_to_high_quality(family):
    quick, balanced, high = (PRESETS[family][n] for n in PRESET_NAMES)
    assert quick.steps < balanced.steps < high.steps
    assert quick.rank <= balanced.rank <= high.rank
    assert quick.resolution <= balanced.resolution <= high.resolution


def test_real_world_values_per_family():
    sd15 = PRESETS["sd15"]["Balanced"]
    assert sd15.resolution == 512 and sd15.rank == 16 and sd15.learning_rate == 1e-4
    for family in ("sdxl", "flux-dev", "flux-schnell", "chroma"):
        p = PRESETS[family]["Balanced"]
        assert p.resolution == 1024 and 16 <= p.rank <= 32
    for family in ("flux-dev", "flux-schnell", "chroma"):
        assert all(p.learning_rate == 1e-4 and p.quantize_base == "int8"
                   for p in PRESETS[family].values())
    assert all(p.quantize_base == "none" for p in PRESETS["sdxl"].values())


def test_apply_preset_on_dict_keeps_other_fields_and_returns_a_copy():
    fields = asdict(_job(seed=7, sample_prompts=["a photo of [trigger]"]))
    out = apply_preset(fields, "sdxl", "Quick")
    assert out is not fields and fields["preset"] == ""
    assert out["seed"] == 7 and out["sample_prompts"] == ["a photo of [trigger]"]
    assert out["family"] == "sdxl" and out["resolution"] == 1024 and out["preset"] == "Quick"
    TrainingJob(**out).validate()


def test_big_cards_train_flux_without_quantizing():
    assert apply_preset({}, "flux-dev", "Balanced", vram_gb=24)["quantize_base"] == "int8"
    assert apply_preset({}, "flux-dev", "Balanced", vram_gb=48)["quantize_base"] == "none"
    assert apply_preset({}, "sd15", "Balanced", vram_gb=8)["quantize_base"] == "none"


def test_unknown_family_or_preset_is_named():
    with pytest.raises(ValueError, match="family"):
        apply_preset({}, "sd3", "Quick")
    with pytest.raises(ValueError, match="preset"):
        apply_preset({}, "sd15", "Turbo")


def test_estimate_uses_measured_step_time_first():
    seconds, basis = estimate_seconds("sdxl", 1024, 1000, 1, measured_sec_per_step=1.2)
    assert basis == "measured on this machine: 1.20 s/step"
    assert 1200 < seconds < 1200 + 300   # steps × measured + loading/caching


def test_estimate_typical_scales_with_steps_resolution_batch_and_gpu():
    base, basis = estimate_seconds("sdxl", 1024, 1000, 1, None, None)
    assert basis == "typical for a 24 GB GPU"
    more_steps, _ = estimate_seconds("sdxl", 1024, 2000, 1)
    smaller, _ = estimate_seconds("sdxl", 768, 1000, 1)
    bigger_batch, _ = estimate_seconds("sdxl", 1024, 1000, 2)
    small_card, words = estimate_seconds("sdxl", 1024, 1000, 1, gpu_hint="RTX 3060, 12 GB")
    big_card, _ = estimate_seconds("sdxl", 1024, 1000, 1, gpu_hint="80 GB")
    assert more_steps > base and smaller < base and bigger_batch > base
    assert small_card > base > big_card and words == "typical for a 12 GB GPU"
    cpu, cpu_words = estimate_seconds("sd15", 512, 1000, 1, gpu_hint="cpu")
    assert "CPU" in cpu_words and cpu > estimate_seconds("sd15", 512, 1000, 1)[0] * 10


def test_cpu_estimate_uses_the_familys_cpu_figure_and_a_cpu_measurement_first():
    sd15, words = estimate_seconds("sd15", 512, 100, 1, gpu_hint="cpu", cpu_cores=8)
    assert words == ("a typical step time on this computer's CPU (8 cores): about "
                     "6.00 s/step, until a CPU job here measures it")
    assert sd15 == 90.0 + 100 * 6.0                  # CPU loading/caching + steps × figure
    sdxl, _ = estimate_seconds("sdxl", 1024, 100, 1, gpu_hint="cpu", cpu_cores=8)
    flux, _ = estimate_seconds("flux-dev", 1024, 100, 1, gpu_hint="cpu", cpu_cores=8)
    assert sd15 < sdxl < flux
    tiny, _ = estimate_seconds("sd15", 64, 100, 1, gpu_hint="cpu", cpu_cores=8)
    assert tiny < sd15                                # pixel count scales the step
    fewer_cores, words2 = estimate_seconds("sd15", 512, 100, 1, gpu_hint="cpu", cpu_cores=2)
    assert fewer_cores > sd15 and "(2 cores)" in words2
    measured, basis = estimate_seconds("sd15", 512, 100, 1, 9.5, "cpu")
    assert basis == "measured on this computer's CPU: 9.50 s/step"
    assert measured == 90.0 + 100 * 9.5
    assert estimate_seconds("sd15", 512, 1000, 1, measured_sec_per_step=0.0)[1].startswith(
        "typical")   # a zero "measurement" is no measurement


def test_estimate_orders_families_sensibly():
    sd15 = estimate_seconds("sd15", 512, 1500, 1)[0]
    sdxl = estimate_seconds("sdxl", 1024, 1500, 1)[0]
    flux = estimate_seconds("flux-dev", 1024, 1500, 1)[0]
    assert sd15 < sdxl < flux
    assert 5 * 60 < sd15 < 30 * 60 and 1 * 3600 < flux < 2 * 3600


def test_durations_read_plainly():
    assert format_duration(20) == "under a minute"
    assert format_duration(25 * 60) == "about 25 min"
    assert format_duration(100 * 60) == "about 1 h 40 min"
    assert format_duration(2 * 3600) == "about 2 h"
    assert format_duration(50 * 3600) == "about 2 d 2 h"
    assert format_clock(42) == "42 s" and format_clock(187) == "3:07"
    assert format_clock(3729) == "1:02:09"


@dataclass
class Img:
    width: int = 1024
    height: int = 1280
    caption: str = "a photo"


def test_a_good_dataset_has_no_warnings():
    assert dataset_warnings([Img() for _ in range(25)]) == []


def test_dataset_warnings_name_each_problem():
    assert "No photos yet" in dataset_warnings([])[0]
    few = dataset_warnings([Img() for _ in range(4)])
    assert len(few) == 1 and few[0].startswith("Only 4 photos")
    many = dataset_warnings([Img() for _ in range(250)])
    assert len(many) == 1 and "250 photos" in many[0]
    small = [Img(400, 600) for _ in range(5)] + [Img() for _ in range(15)]
    assert any("5 of 20 photos are smaller than 512 px" in w for w in dataset_warnings(small))
    assert any("smaller than 1024 px" in w for w in dataset_warnings(
        [Img(800, 900)] * 12, resolution=1024))
    one_small = [Img(400, 600)] + [Img() for _ in range(19)]   # 5 %: not worth a warning
    assert dataset_warnings(one_small) == []
    wide = dataset_warnings([Img(3000, 900)] + [Img() for _ in range(14)])
    assert any("1 photo has an extreme aspect ratio" in w for w in wide)
    uncaptioned = dataset_warnings([Img(caption="")] * 3 + [Img()] * 12)
    assert any("3 of 15 photos have no caption" in w for w in uncaptioned)
    none = dataset_warnings([Img(caption=" ")] * 12)
    assert any("No photo has a caption" in w for w in none)


def test_module_is_qt_free():
    from pathlib import Path

    src = Path(presets.__file__).read_text(encoding="utf-8")
    assert "PySide6" not in src and "pyqtgraph" not in src


def test_tier_values_make_each_preset_fit_where_the_trainer_can():
    """Presets per VRAM tier (issue 16 item 1): for every family, preset and card the built-in
    trainer can fit, the tuned preset fits (memory model), changing only memory fields; where
    nothing fits (Flux on 8 GB) the preset stays as written, no note; Flux on 12 GB gets the
    4-bit base."""
    from isengard_desktop.core.training.memory_fit import fit, predict
    from isengard_desktop.core.training.presets import PRESET_NAMES, preset, tier_values

    for family in ("sd15", "sdxl", "flux-dev", "chroma"):
        for name in PRESET_NAMES:
            base = asdict(preset(family, name))
            for gb in (8, 12, 16, 24, 48):
                values, note = tier_values(family, name, gb)
                job = {**values, "family": family}
                fits = fit(predict(job, family), gb).fits
                changed = {k for k in values if values[k] != base[k]}
                assert changed <= {"resolution", "batch_size", "grad_accum",
                                   "gradient_checkpointing", "quantize_base"}, changed
                if "resolution" in changed:
                    assert fits and f"your {gb} GB card" in note, (family, name, gb)
                    assert values["resolution"] < base["resolution"]
                if not fits:
                    assert note == "" and values["resolution"] == base["resolution"]
    assert tier_values("sdxl", "Balanced", None) == (asdict(preset("sdxl", "Balanced")), "")
    flux12, note = tier_values("flux-dev", "Balanced", 12)
    assert flux12["quantize_base"] == "nf4" and flux12["resolution"] == 1024
    assert note == "Tuned for your 12 GB card: 4-bit base (nf4)."
    assert tier_values("flux-dev", "Balanced", 8)[1] == ""
