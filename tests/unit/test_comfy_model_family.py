"""Server model files classified by family (issue 10, item 13): comfy-check's availability,
the Generate picker's list and `isengard generate`'s pick use it; an unknown file is unknown."""

from __future__ import annotations

import pytest

from isengard_desktop.core.comfy.model_family import (
    UNKNOWN,
    choose_model,
    classify_model,
    family_choices,
)
from isengard_desktop.core.comfy.graph_check import workflow_availability
from isengard_desktop.core.comfy.workflow_manifest import WorkflowLibrary
from tests.unit.test_workflows import WORKFLOWS, load_object_info, with_models


@pytest.mark.parametrize("name, family", [
    ("v1-5-pruned-emaonly.safetensors", "sd15"), ("sd15.safetensors", "sd15"),
    ("dreamshaper_8.safetensors", "sd15"), ("sd_xl_base_1.0.safetensors", "sdxl"),
    ("juggernautXL_v9.safetensors", "sdxl"), ("sdxl/juggernaut.safetensors", "sdxl"),
    ("ponyDiffusionV6XL.safetensors", "sdxl"), ("flux1-dev.safetensors", "flux-dev"),
    ("flux1-dev-fp8.safetensors", "flux-dev"), ("flux1-schnell.safetensors", "flux-schnell"),
    ("Chroma1-HD.safetensors", "chroma"), ("chroma-unlocked-v47.safetensors", "chroma"),
    ("model.safetensors", UNKNOWN), ("juggernaut.safetensors", UNKNOWN),
])
def test_file_names_are_classified(name, family):
    assert classify_model(name) == family


def test_what_the_library_knows_wins():
    assert classify_model("me.safetensors", {"me.safetensors": "sdxl"}) == "sdxl"
    assert classify_model("models/me.safetensors", {"me.safetensors": "sdxl"}) == "sdxl"


def test_family_choices_keep_the_family_then_the_unknown():
    names = ["sd15.safetensors", "sd_xl_base_1.0.safetensors", "mystery.safetensors"]
    assert family_choices(names, "sd15") == ["sd15.safetensors", "mystery.safetensors"]
    assert family_choices(names, "sdxl") == ["sd_xl_base_1.0.safetensors",
                                              "mystery.safetensors"]


def test_availability_needs_a_model_of_the_workflows_family():
    library = WorkflowLibrary.load(WORKFLOWS)
    info = with_models(load_object_info(), models={
        "checkpoints": ["v1-5-pruned-emaonly.safetensors"]})
    status = {s.name: s for s in workflow_availability(library, info)}
    assert status["sd15"].ok
    assert not status["sdxl"].ok
    assert any("SDXL" in m and "v1-5-pruned-emaonly.safetensors (SD 1.5)" in m
               for m in status["sdxl"].missing), status["sdxl"].missing


def test_generate_picks_a_file_of_the_family_or_says_why():
    names = ["v1-5-pruned-emaonly.safetensors", "sd_xl_base_1.0.safetensors"]
    assert choose_model(names, "sdxl", "") == ("sd_xl_base_1.0.safetensors", "")
    with pytest.raises(ValueError, match="no SDXL model.*SD 1.5"):
        choose_model(["v1-5-pruned-emaonly.safetensors"], "sdxl", "")
    with pytest.raises(ValueError, match="SD 1.5 model.*SDXL"):
        choose_model(names, "sdxl", "v1-5-pruned-emaonly.safetensors")
    name, note = choose_model(["mystery.safetensors"], "sdxl", "")
    assert name == "mystery.safetensors" and "unknown" in note
