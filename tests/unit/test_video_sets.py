"""The catalogue's video sets (issue 18): they load, a broken one is named, and each set holds
exactly the files its workflows' loader nodes load (read from the workflow JSON itself)."""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path

import pytest
import yaml

from isengard_desktop.core.model_sets import missing_files, size_text, video_set_files, video_sets
from isengard_desktop.core.models_catalogue import (CatalogueError, Present, catalogue_file,
                                                   load_catalogue, parse_catalogue)

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
VIDEO_KINDS = {"img2vid", "flf2vid", "txt2vid"}
# loader node class -> (the input naming the file, the ComfyUI models folder it reads from)
LOADERS = {
    "UNETLoader": ("unet_name", "diffusion_models"),
    "CheckpointLoaderSimple": ("ckpt_name", "checkpoints"),
    "CLIPLoader": ("clip_name", "text_encoders"),
    "VAELoader": ("vae_name", "vae"),
    "CLIPVisionLoader": ("clip_name", "clip_vision"),
}
MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".gguf", ".bin")


def shipped() -> dict:
    return tomllib.loads(catalogue_file().read_text(encoding="utf-8"))


def video_workflows() -> dict[str, Path]:
    manifest = yaml.safe_load((WORKFLOWS / "manifest.yaml").read_text(encoding="utf-8"))
    return {name: WORKFLOWS / entry["file"] for name, entry in manifest["workflows"].items()
            if entry.get("kind") in VIDEO_KINDS}


def loaded_files(path: Path) -> set[tuple[str, str]]:
    """(folder, file name) of every model file the graph loads; a node input naming a model
    file outside a known loader fails the test (a new loader must be added to LOADERS)."""
    out = set()
    for node_id, node in json.loads(path.read_text(encoding="utf-8")).items():
        for key, value in node["inputs"].items():
            if isinstance(value, str) and value.lower().endswith(MODEL_SUFFIXES):
                assert node["class_type"] in LOADERS, (path.name, node_id, node["class_type"])
                input_name, folder = LOADERS[node["class_type"]]
                assert key == input_name, (path.name, node_id, key)
                out.add((folder, value))
    return out


def test_the_video_sets_load_with_label_vram_and_workflows():
    cat = load_catalogue()
    assert list(cat.video_sets) == ["wan21-i2v", "wan21-flf2v", "wan21-t2v", "ltxv-2b"]
    i2v = cat.video_sets["wan21-i2v"]
    assert i2v.label == "Wan 2.1 image-to-video 480p (14B)" and i2v.min_vram_gb == 16
    assert cat.video_set_for("wan21-i2v") is i2v
    assert cat.video_set_for("ltxv-flf2v") is cat.video_sets["ltxv-2b"]
    assert cat.video_set_for("sdxl") is None
    # totals from the files' approximate sizes: 16.4 + 6.7 + 0.254 + 1.26 GB
    assert size_text(video_set_files(cat, "wan21-i2v").total) == "24.6 GB"
    assert size_text(video_set_files(cat, "ltxv-2b").total) == "16.1 GB"      # 6.3 + 9.79
    assert video_set_files(cat, "ltxv-2b").licences == ("OpenRAIL-M", "Apache-2.0")
    # the Wan sets share the text encoder and VAE: counted once when several are ticked
    both = missing_files(video_sets(cat)[:2], {})
    assert [f.id for f in both].count("umt5-xxl-fp8") == 1 and len(both) == 5
    have = {"umt5-xxl-fp8": Present(cat.files["umt5-xxl-fp8"], Path("x"), "name")}
    assert [f.id for f in video_set_files(cat, "wan21-t2v").missing(have)] == [
        "wan21-t2v-1.3b", "wan21-vae"]


def test_every_video_workflow_is_served_by_a_set_holding_exactly_its_loaded_files():
    cat = load_catalogue()
    workflows = video_workflows()
    assert set(workflows) == {"wan21-i2v", "wan21-flf2v", "wan21-t2v",
                              "ltxv-i2v", "ltxv-flf2v", "ltxv-t2v"}
    served = {w for v in cat.video_sets.values() for w in v.workflows}
    assert served == set(workflows)              # no set names a workflow that is not there
    for name, path in workflows.items():
        video = cat.video_set_for(name)
        assert video is not None, name
        in_set = {(cat.files[f].folder, cat.files[f].name) for f in video.files}
        assert in_set == loaded_files(path), (name, video.id)


@pytest.mark.parametrize("edit, expected", [
    (lambda d: d["video_sets"][0].update(files=["wan21-i2v-480p", "nope"]),
     "video set 'wan21-i2v': field 'files' names an unknown file 'nope'"),
    (lambda d: d["video_sets"][0].update(files=[]),
     "video set 'wan21-i2v': field 'files' must name at least one file"),
    (lambda d: d["video_sets"][1].pop("label"),
     "video set 'wan21-flf2v': field 'label' is missing"),
    (lambda d: d["video_sets"][2].update(min_vram_gb="8 GB"),
     "video set 'wan21-t2v': field 'min_vram_gb' must be a number"),
    (lambda d: d["video_sets"][2].update(min_vram_gb=-1),
     "video set 'wan21-t2v': field 'min_vram_gb' must be 0 or more"),
    (lambda d: d["video_sets"][3].update(workflows=["ltxv-i2v", "wan21-t2v"]),
     "video set 'ltxv-2b': field 'workflows' names 'wan21-t2v', which video set 'wan21-t2v' "
     "serves already"),
    (lambda d: d["video_sets"][3].update(workflows=[]),
     "video set 'ltxv-2b': field 'workflows' must name at least one workflow"),
    (lambda d: d["video_sets"][3].update(id="sdxl"),
     "video set 'sdxl': field 'id' is a family's id too"),
    (lambda d: d["video_sets"][1].update(id="wan21-i2v"),
     "video set 'wan21-i2v': field 'id' is used by two video sets"),
    (lambda d: d["video_sets"].append({"label": "x"}),
     "video set #5: field 'id' is missing"),
])
def test_a_broken_video_set_is_named(edit, expected):
    data = copy.deepcopy(shipped())
    edit(data)
    with pytest.raises(CatalogueError) as err:
        parse_catalogue(data, "catalogue.toml")
    assert str(err.value).startswith("catalogue.toml: ") and expected in str(err.value)
