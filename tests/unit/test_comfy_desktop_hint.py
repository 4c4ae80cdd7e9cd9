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


def test_desktop_code_with_its_data_folder_python_keeps_files_in_the_data_folder(tmp_path):
    import stat

    from isengard_desktop.core.discovery import desktop_data_of

    data = _desktop_data_folder(tmp_path / "Documents" / "ComfyUI")
    python = data / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    resources = tmp_path / "ComfyUI.app" / "Contents" / "Resources"
    code = resources / "ComfyUI"
    (code / "comfy").mkdir(parents=True)
    (code / "main.py").write_text("")
    (resources / "app.asar").write_text("")
    assert desktop_data_of(python) == data
    plan = plan_launch(str(code), str(python), str(data / "models"), tmp_path / "loras",
                       tmp_path / "extra.yaml")
    args = plan.arguments
    for flag, sub in (("--user-directory", "user"), ("--input-directory", "input"),
                      ("--output-directory", "output")):
        assert args[args.index(flag) + 1] == str(data / sub)
    assert plan.cwd == str(code)
    # a ComfyUI that is not inside an app keeps ComfyUI's own defaults
    (resources / "app.asar").unlink()
    plain = plan_launch(str(code), str(python), "", tmp_path / "loras", tmp_path / "e.yaml")
    assert "--user-directory" not in plain.arguments
