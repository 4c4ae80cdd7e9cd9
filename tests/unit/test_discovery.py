"""core.discovery finds ComfyUI, A1111/Forge and Stability Matrix layouts in temp folders and
leaves look-alikes alone."""

from __future__ import annotations

import os
from pathlib import Path

from isengard_desktop.core.discovery import discover, is_a1111, is_comfyui, stability_library


def comfy(folder: Path, python: bool = True) -> Path:
    (folder / "comfy").mkdir(parents=True)
    (folder / "models" / "checkpoints").mkdir(parents=True)
    (folder / "main.py").write_text("print('comfy')\n")
    if python:
        (folder / "venv" / "bin").mkdir(parents=True)
        (folder / "venv" / "bin" / "python").write_text("")
    return folder


def webui(folder: Path, starter: str = "webui.py") -> Path:
    (folder / "models" / "Stable-diffusion").mkdir(parents=True)
    (folder / starter).write_text("")
    return folder


def stability(lib: Path, settings: bool = True, packages: bool = False) -> Path:
    (lib / "Models" / "StableDiffusion").mkdir(parents=True)
    if settings:
        (lib / "settings.json").write_text("{}")
    if packages:
        (lib / "Packages").mkdir()
    return lib


def test_each_layout_is_found(tmp_path):
    home = tmp_path / "home"
    comfy(home / "ComfyUI")
    comfy(home / "Documents" / "ComfyUI", python=False)
    webui(home / "stable-diffusion-webui", "launch.py")
    webui(home / "Documents" / "AI" / "stable-diffusion-webui-forge")
    sm = stability(home / "StabilityMatrix" / "Data")
    comfy(sm / "Packages" / "ComfyUI")
    found = discover(home, env={}, os_name="Linux")

    comfies = {c.folder: c for c in found.comfy}
    assert set(comfies) == {home / "ComfyUI", home / "Documents" / "ComfyUI",
                            sm / "Packages" / "ComfyUI"}
    main = comfies[home / "ComfyUI"]
    assert main.models == home / "ComfyUI" / "models"
    assert main.python == home / "ComfyUI" / "venv" / "bin" / "python"
    assert comfies[home / "Documents" / "ComfyUI"].python is None
    assert comfies[sm / "Packages" / "ComfyUI"].source == "Stability Matrix"

    folders = {f.folder: f for f in found.model_folders}
    assert set(folders) == {
        home / "stable-diffusion-webui" / "models" / "Stable-diffusion",
        home / "Documents" / "AI" / "stable-diffusion-webui-forge" / "models"
        / "Stable-diffusion",
        sm / "Models"}
    assert folders[sm / "Models"].kind == "stability-matrix"
    forge = folders[home / "Documents" / "AI" / "stable-diffusion-webui-forge" / "models"
                    / "Stable-diffusion"]
    assert forge.kind == "a1111" and "Forge" in forge.label
    assert "A1111" in folders[home / "stable-diffusion-webui" / "models"
                              / "Stable-diffusion"].label
    assert not found.truncated


def test_look_alikes_are_ignored(tmp_path):
    home = tmp_path / "home"
    (home / "notcomfy" / "comfy").mkdir(parents=True)          # no models/
    (home / "notcomfy" / "main.py").write_text("")
    (home / "script" / "models").mkdir(parents=True)           # no comfy/
    (home / "script" / "main.py").write_text("")
    (home / "projects" / "webui" / "models" / "Stable-diffusion").mkdir(parents=True)
    (home / "Backup" / "Data" / "Models").mkdir(parents=True)  # no settings.json, no Packages
    (home / "webui.py").mkdir()                                # a folder, not a file
    comfy(home / ".hidden" / "ComfyUI")                       # hidden folders are skipped
    comfy(home / "a" / "b" / "c" / "d" / "ComfyUI")           # deeper than the search goes
    found = discover(home, env={}, os_name="Linux")
    assert found.empty, found
    assert not is_comfyui(home / "notcomfy") and not is_comfyui(home / "script")
    assert not is_a1111(home / "projects" / "webui")
    assert stability_library(home / "Backup") is None


def test_windows_appdata_and_portable_stability_matrix(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    appdata = tmp_path / "AppData" / "Roaming"
    stability(appdata / "StabilityMatrix", settings=False, packages=True)
    portable = stability(tmp_path / "usb" / "StabilityMatrix" / "Data")
    found = discover(home, [tmp_path / "usb"], env={"APPDATA": str(appdata)},
                     os_name="Windows")
    assert {f.folder for f in found.model_folders} == {
        appdata / "StabilityMatrix" / "Models", portable / "Models"}


def test_the_search_is_bounded_and_does_not_follow_links(tmp_path):
    home = tmp_path / "home"
    for i in range(30):
        (home / f"dir{i:02d}" / "sub").mkdir(parents=True)
    comfy(home / "zz" / "ComfyUI")
    os.symlink(home, home / "loop")                 # a link back to home is not walked
    found = discover(home, env={}, os_name="Linux", max_folders=20)
    assert found.truncated and not found.comfy
    found = discover(home, env={}, os_name="Linux")
    assert [c.folder for c in found.comfy] == [home / "zz" / "ComfyUI"]
    assert not found.truncated


def desktop_data(folder: Path, windows: bool) -> Path:
    """A ComfyUI Desktop data folder: .venv, models, user, custom_nodes, input, output."""
    for name in ("models/checkpoints", "user/default", "custom_nodes", "input", "output"):
        (folder / name).mkdir(parents=True)
    python = (folder / ".venv" / "Scripts" / "python.exe" if windows
              else folder / ".venv" / "bin" / "python")
    python.parent.mkdir(parents=True)
    python.write_text("")
    return folder


def app_code(folder: Path) -> Path:
    (folder / "comfy").mkdir(parents=True)
    (folder / "main.py").write_text("")
    return folder


def test_comfyui_desktop_on_windows_is_a_comfyui_to_launch(tmp_path):
    import json

    home = tmp_path / "home"
    home.mkdir()
    appdata, local = tmp_path / "Roaming", tmp_path / "Local"
    data = desktop_data(tmp_path / "D" / "ComfyData", windows=True)   # outside home
    (appdata / "ComfyUI").mkdir(parents=True)
    (appdata / "ComfyUI" / "config.json").write_text(json.dumps({"basePath": str(data),
                                                                 "installState": "installed"}))
    code = app_code(local / "Programs" / "@comfyorgcomfyui-electron" / "resources" / "ComfyUI")
    found = discover(home, env={"APPDATA": str(appdata), "LOCALAPPDATA": str(local)},
                     os_name="Windows")
    assert found.model_folders == ()
    [install] = found.comfy
    assert install.folder == code and install.source == "ComfyUI Desktop"
    assert install.models == data / "models"
    assert install.python == data / ".venv" / "Scripts" / "python.exe"


def test_comfyui_desktop_on_macos_from_the_old_yaml_config(tmp_path):
    home = tmp_path / "home"
    support = home / "Library" / "Application Support" / "ComfyUI"
    data = desktop_data(home / "Documents" / "ComfyUI", windows=False)
    support.mkdir(parents=True)
    # installs before config.json's basePath kept it in extra_models_config.yaml
    (support / "extra_models_config.yaml").write_text(
        f"# ComfyUI extra_model_paths.yaml for darwin\ncomfyui:\n  base_path: {data}\n"
        "  is_default: true\n  checkpoints: models/checkpoints/\n")
    app = home / "Applications" / "ComfyUI.app" / "Contents" / "Resources" / "ComfyUI"
    found = discover(home, env={}, os_name="Darwin")
    # the app's code is not there: offer the models folder and the address to connect to
    assert found.comfy == ()
    [models] = found.model_folders
    assert models.folder == data / "models" and models.kind == "comfyui-desktop"
    assert "http://127.0.0.1:8000" in models.label and "ComfyUI Desktop" in models.label
    app_code(app)
    [install] = discover(home, env={}, os_name="Darwin").comfy
    assert install.folder == app and install.python == data / ".venv" / "bin" / "python"
    assert install.models == data / "models"


def test_desktop_data_folder_found_by_the_walk_and_look_alikes(tmp_path):
    home = tmp_path / "home"
    data = desktop_data(home / "AI" / "ComfyUI", windows=False)
    no_user = home / "other"
    (no_user / ".venv").mkdir(parents=True)
    (no_user / "models").mkdir()
    (home / ".config" / "ComfyUI").mkdir(parents=True)
    (home / ".config" / "ComfyUI" / "config.json").write_text("{not json")  # ignored
    found = discover(home, env={}, os_name="Linux")
    assert [f.folder for f in found.model_folders] == [data / "models"]
    assert found.comfy == ()
