"""Aspect presets and quality tiers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from isengard_desktop.core.comfy import presets
from isengard_desktop.core.comfy.presets import (
    ASPECT_PRESETS,
    QUALITY_TIERS,
    TIERS,
    megapixels,
    size_for,
    tier_settings,
)
from isengard_desktop.core.comfy.workflow_manifest import WorkflowLibrary
from isengard_desktop.core.comfy.workflows import build_graph
from isengard_desktop.core.comfy.graph_check import check_graph

REPO = Path(__file__).resolve().parents[2]
FAMILIES = ("sd15", "sdxl", "flux-dev", "flux-schnell", "chroma")
NATIVE = {"sd15": 512 * 512, "sdxl": 1024 * 1024, "flux-dev": 1024 * 1024, "flux-schnell": 1024 * 1024,
          "chroma": 1024 * 1024}
MULTIPLE = {"sd15": 64, "sdxl": 64, "flux-dev": 16, "flux-schnell": 16, "chroma": 16}


@pytest.fixture(scope="module")
def ksampler() -> dict:
    info = json.loads((REPO / "tests/fixtures/comfyui/workflows/object_info_full.json").read_text())
    return info["KSampler"]["input"]["required"]


def test_seven_aspect_presets():
    assert list(ASPECT_PRESETS) == ["1:1", "4:5", "2:3", "9:16", "5:4", "3:2", "16:9"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("aspect", list(ASPECT_PRESETS))
def test_sizes_are_multiples_near_native_area_and_aspect(family, aspect):
    w, h = size_for(aspect, family)
    m = MULTIPLE[family]
    assert w % m == 0 and h % m == 0, (w, h)
    assert 0.9 <= (w * h) / NATIVE[family] <= 1.1, (w, h)
    rw, rh = (int(x) for x in aspect.split(":"))
    assert abs(math.log((w / h) / (rw / rh))) < 0.06, (w, h)
    assert (w >= h) == (rw >= rh)


def test_known_sizes():
    assert size_for("1:1", "sd15") == (512, 512)
    assert size_for("1:1", "sdxl") == (1024, 1024)
    assert size_for("2:3", "sdxl") == (832, 1216)  # SDXL's trained bucket
    assert size_for("16:9", "sdxl") == (1344, 768)
    assert size_for("16:9", "flux-dev") == (1360, 768)
    assert size_for("9:16", "chroma") == (768, 1360)
    assert size_for("2:3", "flux") == size_for("2:3", "flux-dev")


def test_portrait_and_landscape_mirror():
    for family in FAMILIES:
        for a, b in (("4:5", "5:4"), ("2:3", "3:2"), ("9:16", "16:9")):
            assert size_for(a, family) == size_for(b, family)[::-1]


def test_megapixels():
    assert megapixels(1024, 1024) == 1.05
    assert megapixels(512, 512) == 0.26
    assert megapixels(1344, 768) == 1.03


def test_unknown_aspect_tier_family():
    with pytest.raises(ValueError, match="Unknown aspect ratio '7:3'"):
        size_for("7:3", "sdxl")
    with pytest.raises(ValueError, match="Unknown model family 'sd3'"):
        size_for("1:1", "sd3")
    with pytest.raises(ValueError, match="Unknown quality tier 'Ultra'"):
        tier_settings("Ultra", "sdxl")


def test_every_tier_uses_the_servers_sampler_and_scheduler_names(ksampler):
    samplers, schedulers = ksampler["sampler_name"][0], ksampler["scheduler"][0]
    assert TIERS == ("Draft", "Standard", "High") and list(QUALITY_TIERS) == list(TIERS)
    for tier in TIERS:
        assert set(QUALITY_TIERS[tier]) == set(FAMILIES)
        for family, s in QUALITY_TIERS[tier].items():
            assert s.sampler in samplers, (tier, family)
            assert s.scheduler in schedulers, (tier, family)
            lo, hi = ksampler["steps"][1]["min"], ksampler["steps"][1]["max"]
            assert lo <= s.steps <= hi
            assert ksampler["cfg"][1]["min"] <= s.cfg <= ksampler["cfg"][1]["max"]


def test_tiers_follow_each_family():
    for tier in TIERS:
        assert tier_settings(tier, "flux-schnell").cfg == 1.0
        assert tier_settings(tier, "flux-schnell").steps <= 8
        dev = tier_settings(tier, "flux-dev")
        assert dev.cfg == 1.0 and dev.guidance == 3.5
        assert tier_settings(tier, "sdxl").cfg >= 5.0
    assert tier_settings("Standard", "flux-schnell").steps == 4
    assert 20 <= tier_settings("Standard", "flux-dev").steps <= 30
    sdxl = tier_settings("Standard", "sdxl")
    assert (sdxl.steps, sdxl.sampler, sdxl.scheduler) == (30, "dpmpp_2m", "karras") and 6 <= sdxl.cfg <= 7
    for family in FAMILIES:
        steps = [tier_settings(t, family).steps for t in TIERS]
        assert steps == sorted(steps) and steps[0] < steps[-1]


def test_tier_and_size_params_build_valid_graphs(ksampler):
    info = json.loads((REPO / "tests/fixtures/comfyui/workflows/object_info_full.json").read_text())
    lib = WorkflowLibrary.load(REPO / "workflows")
    for family in FAMILIES:
        spec = lib.find(family)
        for tier in TIERS:
            for aspect in ASPECT_PRESETS:
                w, h = size_for(aspect, family)
                params = {"prompt": "x", "model": spec.default("model"), "width": w, "height": h, "batch": 8}
                params |= tier_settings(tier, family).as_params()
                g = build_graph(spec, params)
                gaps = [gap for gap in check_graph(g, info) if gap.kind != "not_in_list" or gap.input_name in
                        ("sampler_name", "scheduler")]
                assert gaps == [], (family, tier, aspect)
    assert presets.family_base("FLUX") == "flux-dev"
