"""ComfyUI Desktop's data folder chosen as the ComfyUI folder (issue 13, item 11): its code is
inside the Desktop app, so the app says what to choose instead of only "no main.py"."""

from __future__ import annotations

import pytest

from isengard_desktop.services.generation.comfy_launch import (LaunchProblem, desktop_hint,
                                                               plan_launch)
from isengard_desktop.ui.settings.comfyui_page import check_local_install


def _desktop_data_folder(root):
    for name in (".venv/Scripts", "models/checkpoints", "user/default", "input", "output"):
        (root / name).mkdir(parents=True)
    return root


def test_desktop_data_folder_gets_a_hint(tmp_path):
    base = _desktop_data_folder(tmp_path / "Documents" / "ComfyUI")
    with pytest.raises(LaunchProblem) as info:
        plan_launch(str(base), "", "", tmp_path / "loras", tmp_path / "extra.yaml")
    text = str(info.value)
    assert "has no main.py" in text and "ComfyUI Desktop" in text
    assert str(base / ".venv") in text and "resources/ComfyUI" in text
    ok, lines = check_local_install(str(base), "")
    assert not ok and "ComfyUI Desktop" in lines[0]


def test_other_folders_get_no_desktop_hint(tmp_path):
    (tmp_path / "models").mkdir()
    assert desktop_hint(tmp_path) == ""
    ok, lines = check_local_install(str(tmp_path), "")
    assert not ok and "ComfyUI Desktop" not in lines[0] and "checkout" in lines[0]
