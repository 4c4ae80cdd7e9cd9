"""Our ``isengard:`` section in a user-run ComfyUI's extra_model_paths.yaml: the user's sections
and comments stay byte for byte, re-linking replaces only ours, unlinking leaves the file as it
was (or removes it when we created it), and a broken file is refused with its line."""

from __future__ import annotations

import os

import pytest
import yaml

from isengard_desktop.core.comfy_extra_paths import (
    ExtraPathsError, link_comfyui, unlink_comfyui,
)
from isengard_desktop.core.paths import MODEL_LAYOUT
from isengard_desktop.services.generation.comfy_launch import write_extra_model_paths

USER_FILE = """\
# My ComfyUI paths — hand-written, keep these comments!
#config for a1111 ui
a111:
    base_path: /mnt/sd/webui/   # trailing comment

    checkpoints: models/Stable-diffusion
    # a comment inside a section
    loras: |
         models/Lora
         models/LyCORIS
    upscale_models: |
                  models/ESRGAN
                  models/RealESRGAN

# comfyui on another disk
comfyui:
     base_path: "/data/comfy: models"
     is_default: true
     checkpoints: models/checkpoints/
#    clip: models/clip/   (commented out by the user)

other_ui:
    base_path: ~/other
    vae: vae
# last line comment, no newline at the end"""


def resolved(yaml_file) -> dict[str, list[str]]:
    """What ComfyUI's utils/extra_config.py (load_extra_path_config) makes of the file: each
    section's base_path (expanduser + expandvars) joined to each non-empty line of each
    per-folder value."""
    config = yaml.safe_load(yaml_file.read_text(encoding="utf-8"))
    out: dict[str, list[str]] = {}
    for conf in config.values():
        conf = dict(conf)
        base = conf.pop("base_path", None)
        if base is not None:
            base = os.path.expandvars(os.path.expanduser(base))
        conf.pop("is_default", None)
        for folder, value in conf.items():
            for line in value.split("\n"):
                if line:
                    out.setdefault(folder, []).append(os.path.join(base, line) if base else line)
    return out


@pytest.fixture
def comfy(tmp_path):
    folder = tmp_path / "ComfyUI"
    folder.mkdir()
    (folder / "main.py").write_text("")
    return folder


def test_round_trip_keeps_user_file_byte_identical(comfy, tmp_path):
    yaml_file = comfy / "extra_model_paths.yaml"
    yaml_file.write_bytes(USER_FILE.encode())
    models, loras = tmp_path / "my models: #1", tmp_path / "loras"

    assert link_comfyui(comfy, models, loras).action == "added"
    text = yaml_file.read_text(encoding="utf-8")
    assert text.endswith(USER_FILE)                    # the user's text, untouched, after ours
    ours = text[:-len(USER_FILE)]
    assert ours.startswith("isengard:\n") and ours.endswith("\n\n")
    parsed = yaml.safe_load(text)
    assert {k: v for k, v in parsed.items() if k != "isengard"} == yaml.safe_load(USER_FILE)
    paths = resolved(yaml_file)
    assert str(models / "checkpoints") in paths["checkpoints"]
    assert str(models / "diffusion_models") in paths["diffusion_models"]
    assert str(models / "ultralytics/bbox") in paths["ultralytics_bbox"]
    assert {str(models / "loras"), str(loras)} <= set(paths["loras"])
    assert "/mnt/sd/webui/models/Lora" in paths["loras"]       # the user's still there

    # re-link with another folder: only our block changes
    other = tmp_path / "elsewhere"
    assert link_comfyui(comfy, other, loras).action == "replaced"
    again = yaml_file.read_text(encoding="utf-8")
    assert again.endswith(USER_FILE) and again.count("isengard:") == 1
    assert str(other / "vae") in resolved(yaml_file)["vae"]
    assert str(models / "vae") not in resolved(yaml_file)["vae"]
    assert link_comfyui(comfy, other, loras).action == "unchanged"

    assert unlink_comfyui(comfy).action == "removed"
    assert yaml_file.read_bytes() == USER_FILE.encode()
    assert unlink_comfyui(comfy).action == "unchanged"


def test_section_moved_by_user_is_replaced_in_place(comfy, tmp_path):
    yaml_file = comfy / "extra_model_paths.yaml"
    yaml_file.write_text("a:\n  vae: x\n")
    link_comfyui(comfy, tmp_path / "m")
    # the user moves our block below theirs and adds a section after it
    text = yaml_file.read_text()
    block, _, user = text.partition("\n\n")
    yaml_file.write_text(user + block + "\n# theirs\nb:\n  vae: y\n")
    link_comfyui(comfy, tmp_path / "n")
    text = yaml_file.read_text()
    assert text.startswith("a:\n  vae: x\nisengard:\n")
    assert text.endswith("\n# theirs\nb:\n  vae: y\n")
    assert yaml.safe_load(text)["isengard"]["base_path"] == str(tmp_path / "n")
    unlink_comfyui(comfy)
    assert yaml_file.read_text() == "a:\n  vae: x\n# theirs\nb:\n  vae: y\n"


def test_created_file_is_removed_on_unlink(comfy, tmp_path):
    yaml_file = comfy / "extra_model_paths.yaml"
    assert link_comfyui(comfy, tmp_path / "models").action == "created"
    assert yaml.safe_load(yaml_file.read_text())["isengard"]["base_path"] == \
        str(tmp_path / "models")
    assert link_comfyui(comfy, tmp_path / "models2").action == "replaced"
    assert unlink_comfyui(comfy).action == "deleted"
    assert not yaml_file.exists()


def test_created_file_the_user_added_to_is_kept(comfy, tmp_path):
    yaml_file = comfy / "extra_model_paths.yaml"
    link_comfyui(comfy, tmp_path / "models")
    with yaml_file.open("a") as fh:
        fh.write("\nmine:\n  loras: /x\n")
    assert unlink_comfyui(comfy).action == "removed"
    assert yaml.safe_load(yaml_file.read_text()) == {"mine": {"loras": "/x"}}


def test_document_start_and_crlf_are_kept(comfy, tmp_path):
    yaml_file = comfy / "extra_model_paths.yaml"
    original = b"# head\r\n---\r\na:\r\n  vae: v\r\n"
    yaml_file.write_bytes(original)
    link_comfyui(comfy, tmp_path / "m")
    raw = yaml_file.read_bytes()
    assert raw.startswith(b"# head\r\n---\r\nisengard:\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b"")          # no bare line feeds added
    unlink_comfyui(comfy)
    assert yaml_file.read_bytes() == original


@pytest.mark.parametrize("bad, line", [
    ("a:\n  vae: x\n b: [unclosed\n", 3),
    ("a:\n\tvae: tab\n", 2),
    ("a: 'open\n", 2),
])
def test_malformed_user_file_is_refused_naming_file_and_line(comfy, tmp_path, bad, line):
    yaml_file = comfy / "extra_model_paths.yaml"
    yaml_file.write_text(bad)
    with pytest.raises(ExtraPathsError) as err:
        link_comfyui(comfy, tmp_path / "m")
    assert str(yaml_file) in str(err.value) and f"line {line}" in str(err.value)
    assert yaml_file.read_text() == bad
    with pytest.raises(ExtraPathsError):
        unlink_comfyui(comfy)
    assert yaml_file.read_text() == bad
    assert sorted(p.name for p in comfy.iterdir()) == ["extra_model_paths.yaml", "main.py"]


def test_not_a_mapping_is_refused(comfy, tmp_path):
    yaml_file = comfy / "extra_model_paths.yaml"
    yaml_file.write_text("- a\n- b\n")
    with pytest.raises(ExtraPathsError, match="not sections"):
        link_comfyui(comfy, tmp_path / "m")
    assert yaml_file.read_text() == "- a\n- b\n"


def test_flow_style_file_is_refused_not_mangled(comfy, tmp_path):
    yaml_file = comfy / "extra_model_paths.yaml"
    yaml_file.write_text("{a: {vae: x},\n b: {vae: y}}\n")
    with pytest.raises(ExtraPathsError, match="by hand"):
        link_comfyui(comfy, tmp_path / "m")
    assert yaml_file.read_text() == "{a: {vae: x},\n b: {vae: y}}\n"


def test_managed_comfyui_lists_the_app_models_folder_and_creates_its_layout(tmp_path):
    app_models, loras = tmp_path / "home" / "models", tmp_path / "home" / "loras"
    config = write_extra_model_paths(tmp_path / "extra.yaml", loras, "", app_models)
    paths = resolved(config)
    for name in MODEL_LAYOUT:
        assert (app_models / name).is_dir()
        assert str(app_models / name) in paths[name.replace("/", "_")]
    assert paths["loras"] == [str(loras), str(app_models / "loras")]
