"""The model catalogue: the shipped file loads and is complete, broken entries are named, and
files the user already has are recognised (name + size, or hash) so they are not fetched again."""

from __future__ import annotations

import copy
import hashlib
import tomllib

import pytest

from isengard_desktop.core.models_catalogue import (
    CatalogueError, find_present, load_catalogue, parse_catalogue, catalogue_file,
)

FAMILIES = {"sd15", "sdxl", "flux-schnell", "flux-dev", "chroma"}


def shipped() -> dict:
    return tomllib.loads(catalogue_file().read_text(encoding="utf-8"))


def test_shipped_catalogue_loads_with_every_family_and_toggle():
    cat = load_catalogue()
    assert set(cat.families) == FAMILIES
    assert {e.toggle for e in cat.extras} == {"controlnet", "ipadapter", "face_detailer", "upscale"}
    for fam in FAMILIES:
        for purpose in ("train", "generate"):
            assert cat.files_for(fam, purpose), (fam, purpose)
    dev = cat.files["flux-dev-transformer"]
    assert dev.non_commercial and dev.gated and dev.folder == "diffusion_models"
    assert not cat.files["flux-schnell-transformer"].non_commercial
    for item in cat.files.values():
        assert all(u.startswith("https://huggingface.co/") for u in item.urls)


def test_low_vram_cards_get_the_fp8_t5():
    cat = load_catalogue()
    names = lambda files: {f.name for f in files}  # noqa: E731
    assert "t5xxl_fp8_e4m3fn.safetensors" in names(cat.files_for("flux-schnell", "generate", 12))
    assert "t5xxl_fp16.safetensors" in names(cat.files_for("flux-schnell", "generate", 24))
    assert "t5xxl_fp16.safetensors" in names(cat.files_for("flux-schnell", "generate"))
    assert names(cat.files_for("sdxl", "generate", 8)) == {"sd_xl_base_1.0.safetensors",
                                                          "sdxl_vae.safetensors"}


@pytest.mark.parametrize("edit, expected", [
    (lambda d: d["files"][0].update(sha256="XYZ"),
     "file 'sd15-checkpoint': field 'sha256' must be 64 lower-case hex digits"),
    (lambda d: d["files"][0].update(folder="models"),
     "file 'sd15-checkpoint': field 'folder' must be a ComfyUI models folder"),
    (lambda d: d["files"][0].pop("licence"), "file 'sd15-checkpoint': field 'licence' is missing"),
    (lambda d: d["files"][0].update(size=-1), "file 'sd15-checkpoint': field 'size' must be 0"),
    (lambda d: d["files"][0].update(size="4 GB"),
     "file 'sd15-checkpoint': field 'size' must be a int"),
    (lambda d: d["files"][0].update(urls=["http://example.com/x"]),
     "file 'sd15-checkpoint': field 'urls' must hold https URLs"),
    (lambda d: d["files"][0].update(name="../evil.safetensors"),
     "file 'sd15-checkpoint': field 'name' must be a plain file name"),
    (lambda d: d["files"][1].update(id="sd15-checkpoint"),
     "file 'sd15-checkpoint': field 'id' is used by two files"),
    (lambda d: d["families"][0].update(train=["nope"]),
     "family 'sd15': field 'train' names an unknown file 'nope'"),
    (lambda d: d["extras"][0].update(families=["sd3"]),
     "extra 'controlnet-sdxl-union': field 'families' names an unknown family 'sd3'"),
    (lambda d: d.update(schema=2), "top level: field 'schema' is 2; this app reads schema 1"),
])
def test_broken_entries_are_named(edit, expected):
    data = copy.deepcopy(shipped())
    edit(data)
    with pytest.raises(CatalogueError) as err:
        parse_catalogue(data, "catalogue.toml")
    assert str(err.value).startswith("catalogue.toml: ") and expected in str(err.value)


def test_unreadable_and_invalid_files_name_the_path(tmp_path):
    bad = tmp_path / "catalogue.toml"
    bad.write_text("schema = [", encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"catalogue.toml: is not valid TOML"):
        load_catalogue(bad)
    with pytest.raises(CatalogueError, match=r"missing.toml: cannot be read"):
        load_catalogue(tmp_path / "missing.toml")


def _catalogue_with(content: bytes, size: int | None = None,
                    sha: str | None = None):
    data = copy.deepcopy(shipped())
    entry = next(f for f in data["files"] if f["id"] == "sd15-checkpoint")
    entry["size"] = len(content) if size is None else size
    entry["sha256"] = hashlib.sha256(content).hexdigest() if sha is None else sha
    return parse_catalogue(data).files["sd15-checkpoint"]


def test_already_have_it_by_name_and_size_anywhere_in_linked_folders(tmp_path):
    content = b"weights" * 1000
    item = _catalogue_with(content)
    linked = tmp_path / "my-comfy" / "models"
    (linked / "checkpoints" / "sd").mkdir(parents=True)
    (linked / "checkpoints" / "sd" / item.name).write_bytes(content)
    found = find_present([item], [tmp_path / "empty", linked])
    assert found["sd15-checkpoint"].how == "size"
    assert found["sd15-checkpoint"].path == linked / "checkpoints" / "sd" / item.name


def test_a_half_written_copy_does_not_count(tmp_path):
    content = b"weights" * 1000
    item = _catalogue_with(content)
    (tmp_path / item.name).write_bytes(content[:-1])
    assert find_present([item], [tmp_path]) == {}


def test_hash_check_rejects_same_size_other_bytes_and_accepts_the_real_file(tmp_path):
    content = b"weights" * 1000
    item = _catalogue_with(content)
    other = tmp_path / "a"
    other.mkdir()
    (other / item.name).write_bytes(b"x" * len(content))
    assert "sd15-checkpoint" in find_present([item], [other])         # size alone: trusted
    assert find_present([item], [other], check_hashes=True) == {}
    real = tmp_path / "b"
    real.mkdir()
    (real / item.name).write_bytes(content)
    found = find_present([item], [other, real], check_hashes=True)
    assert found["sd15-checkpoint"].how == "hash" and found["sd15-checkpoint"].path.parent == real


def test_accepted_names_and_unknown_size_match_by_name(tmp_path):
    cat = load_catalogue()
    clip_vision = cat.files["clip-vision-vit-h"]          # accepted: model.safetensors
    vae = cat.files["sdxl-vae"]                            # no size, no hash known
    (tmp_path / "clip_vision").mkdir()
    (tmp_path / "clip_vision" / "model.safetensors").write_bytes(b"not the 2.5 GB encoder")
    (tmp_path / "sdxl_vae.safetensors").write_bytes(b"vae")
    found = find_present([clip_vision, vae], [tmp_path])
    assert "clip-vision-vit-h" not in found                # wrong size
    assert found["sdxl-vae"].how == "name"


def test_runtime_face_models_are_pinned_in_the_runtime_and_present_in_their_package():
    """The face models come with the trainer runtime: each entry's package is pinned in
    requirements.in, its licence allows any use, and its file is where the installed package
    keeps it (this test environment installs the same pins)."""
    import importlib.util
    from pathlib import Path

    cat = load_catalogue()
    models = {m.id: m for m in cat.runtime_models}
    assert {"face-detector-hog", "face-landmarks-5", "face-identity-resnet"} <= set(models)
    runtime = (Path(catalogue_file()).parents[1] / "runtime" / "requirements.in").read_text()
    pins = {line.split("#")[0].strip().lower() for line in runtime.splitlines()}
    site = Path(next(iter(importlib.util.find_spec(
        "face_recognition_models").submodule_search_locations))).parent
    for model in models.values():
        assert model.package.lower() in pins, model.id
        assert not model.non_commercial and model.licence and model.runtime_licence
        assert "68" not in model.name           # the non-commercial 68-point predictor
        if model.file:
            assert (site / model.file).is_file(), model.file
    broken = shipped()
    broken["runtime_models"][0]["package"] = "dlib-bin"
    with pytest.raises(CatalogueError, match="runtime model 'face-detector-hog'.*package"):
        parse_catalogue(broken, "catalogue.toml")
