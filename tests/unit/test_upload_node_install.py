"""The managed ComfyUI gets our upload node only when Isengard owns its folder."""

from __future__ import annotations

import sys
from pathlib import Path

from isengard_desktop.core.comfy.lora_upload import NODE_FOLDER, install_node
from isengard_desktop.services.generation.comfy_launch import plan_launch


def comfy(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "main.py").write_text("")
    return root


def test_an_app_owned_comfyui_gets_the_node_and_a_users_one_is_untouched(tmp_path):
    data = tmp_path / "data"
    owned = comfy(data / "comfyui" / "ComfyUI")
    users = comfy(tmp_path / "home" / "ComfyUI")
    for root in (owned, users):
        plan_launch(str(root), sys.executable, "", tmp_path / "loras", tmp_path / "x.yaml",
                    app_data=data)
    node = owned / "custom_nodes" / NODE_FOLDER.name
    assert sorted(p.name for p in node.iterdir()) == ["__init__.py", "lora_store.py"]
    assert (node / "lora_store.py").read_bytes() == (NODE_FOLDER / "lora_store.py").read_bytes()
    assert not (users / "custom_nodes").exists()
    plan_launch(str(users), sys.executable, "", tmp_path / "loras", tmp_path / "x.yaml")
    assert not (users / "custom_nodes").exists()            # no app folder given: never


def test_install_never_copies_a_token_and_updates_a_stale_copy(tmp_path):
    source = tmp_path / "src" / "isengard_lora_upload"
    source.mkdir(parents=True)
    (source / "__init__.py").write_text("v2")
    (source / "token.txt").write_text("secret")
    target = tmp_path / "custom_nodes" / "isengard_lora_upload"
    target.mkdir(parents=True)
    (target / "__init__.py").write_text("v1")
    (target / "token.txt").write_text("theirs")
    install_node(tmp_path / "custom_nodes", source)
    assert (target / "__init__.py").read_text() == "v2"
    assert (target / "token.txt").read_text() == "theirs"    # their token stays
