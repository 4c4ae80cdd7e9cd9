"""The Settings → ComfyUI page on its own: the local install check names what is missing, and
the remote server list refuses duplicates and bad addresses."""

from __future__ import annotations

import platform
import sys

from isengard_desktop.core.settings import Settings
from isengard_desktop.services.ops import init_main_thread_bridge
from isengard_desktop.ui.settings.comfyui_page import ComfyUIPageWidget
from tests.helpers.generate_ui import click


def test_comfyui_page_check_says_what_is_missing(qtbot, tmp_path):
    init_main_thread_bridge()
    page = ComfyUIPageWidget(Settings())
    qtbot.addWidget(page)
    folder = tmp_path / "ComfyUI"
    folder.mkdir()
    (folder / "main.py").write_text("")
    page.folder_edit.setText(str(folder))
    page.python_edit.setText(sys.executable)       # a real Python without ComfyUI's packages
    click(qtbot, page.check_button)
    assert not page.check_button.isEnabled()
    qtbot.waitUntil(page.check_button.isEnabled, timeout=30_000)
    text = page.check_result.text()
    assert f"ComfyUI found: {folder / 'main.py'}" in text
    assert f"Python {platform.python_version()}: {sys.executable}" in text
    assert "lacks packages ComfyUI needs" in text and "torchsde" in text
    assert f"{sys.executable} -m pip install -r {folder / 'requirements.txt'}" in text
    assert page.check_result.property("error") is True
    # remote list: add, refuse a duplicate and a bad address, remove
    qtbot.keyClicks(page.url_edit, "10.0.0.7:8188")
    click(qtbot, page.add_button)
    qtbot.keyClicks(page.url_edit, "http://10.0.0.7:8188/")
    click(qtbot, page.add_button)
    assert "already in the list" in page.server_message.text()
    page.url_edit.setText("gopher://x")
    click(qtbot, page.add_button)
    assert page.server_message.property("error") is True
    assert page.remote_servers() == ["http://10.0.0.7:8188"]
    page.server_list.setCurrentRow(0)
    click(qtbot, page.remove_button)
    assert page.remote_servers() == []


def test_upload_token_is_saved_per_server_in_the_keyring(qtbot):
    from isengard_desktop.core.secrets import SERVICE, SecretStore
    from tests.helpers.keyring import MemoryKeyring

    init_main_thread_bridge()
    backend = MemoryKeyring()
    page = ComfyUIPageWidget(Settings(remote_servers=["http://10.0.0.7:8188",
                                                      "http://10.0.0.8:8188"]),
                             secrets=SecretStore(backend))
    qtbot.addWidget(page)
    widget = page.upload_token
    assert widget is not None and widget.token_edit.toolTip()
    qtbot.waitUntil(lambda: "Select a server" in widget.state.text(), timeout=10_000)
    click(qtbot, widget.save_button)                    # nothing selected, nothing typed
    assert backend.store == {}
    page.server_list.setCurrentRow(1)
    qtbot.waitUntil(lambda: "no upload token" in widget.state.text(), timeout=10_000)
    qtbot.keyClicks(widget.token_edit, "tok-123456789abcdef")
    click(qtbot, widget.save_button)
    qtbot.waitUntil(lambda: "upload token set" in widget.state.text(), timeout=10_000)
    assert "tok…cdef" in widget.state.text() and "10.0.0.8" in widget.state.text()
    assert widget.token_edit.text() == ""
    assert backend.store == {(SERVICE, "comfyui_upload_token:http://10.0.0.8:8188"):
                             "tok-123456789abcdef"}
    page.server_list.setCurrentRow(0)                   # the other server has none
    qtbot.waitUntil(lambda: "10.0.0.7:8188: no upload token" in widget.state.text(),
                    timeout=10_000)
    page.server_list.setCurrentRow(1)
    qtbot.waitUntil(lambda: "upload token set" in widget.state.text(), timeout=10_000)
    click(qtbot, widget.clear_button)
    qtbot.waitUntil(lambda: "no upload token" in widget.state.text(), timeout=10_000)
    assert backend.store == {}
    click(qtbot, widget.help_button)
    assert widget.help_box is not None
    text = widget.help_box.text()
    assert "custom_nodes" in text and "token.txt" in text and "isengard_lora_upload" in text
    widget.help_box.close()


def test_linking_a_comfyui_folder_shares_the_models_and_unlinking_takes_it_back(
        qtbot, tmp_path, monkeypatch):
    """Settings → ComfyUI: a folder set + OK writes our section into that ComfyUI's
    extra_model_paths.yaml (the user's comments kept); cleared + OK takes it out again."""
    import yaml
    from PySide6.QtWidgets import QDialogButtonBox

    from isengard_desktop.core.paths import resolve_paths
    from isengard_desktop.core.secrets import SecretStore
    from isengard_desktop.ui.settings import SettingsDialog
    from tests.helpers.keyring import MemoryKeyring

    init_main_thread_bridge()
    monkeypatch.setenv("ISENGARD_HOME", str(tmp_path / "app"))
    paths = resolve_paths()
    comfy = tmp_path / "MyComfyUI"
    (comfy / "comfy").mkdir(parents=True)
    (comfy / "main.py").write_text("")
    users = ("# my own paths, keep me\n"
             "a111:\n"
             "    base_path: /srv/webui  # the old one\n"
             "    checkpoints: models/Stable-diffusion\n")
    yaml_file = comfy / "extra_model_paths.yaml"
    yaml_file.write_text(users)

    def ok(settings):
        dialog = SettingsDialog(paths, SecretStore(MemoryKeyring()), settings)
        qtbot.addWidget(dialog)
        return dialog

    dialog = ok(Settings())
    page = dialog.comfyui_page
    assert page.share_box.isChecked() and not page.share_box.isHidden()
    assert "extra_model_paths.yaml" in page.share_note.text() and "isengard" in \
        page.share_box.toolTip()
    page.folder_edit.setText(str(comfy))
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    qtbot.waitUntil(lambda: "isengard:" in yaml_file.read_text(), timeout=10_000)
    text = yaml_file.read_text()
    assert users in text                       # the user's lines, byte for byte
    assert "# the old one" in text
    data = yaml.safe_load(text)
    assert data["a111"] == {"base_path": "/srv/webui", "checkpoints": "models/Stable-diffusion"}
    assert data["isengard"]["base_path"] == str(paths.models)
    assert str(paths.loras) in data["isengard"]["loras"]
    qtbot.waitUntil(lambda: "Added the 'isengard:' section" in page.share_result.text(),
                    timeout=10_000)

    dialog = ok(Settings(comfyui_folder=str(comfy)))
    dialog.comfyui_page.folder_edit.setText("")
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    qtbot.waitUntil(lambda: "isengard" not in yaml_file.read_text(), timeout=10_000)
    assert yaml_file.read_text() == users


def test_the_box_unticked_writes_nothing(qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QDialogButtonBox

    from isengard_desktop.core.paths import resolve_paths
    from isengard_desktop.core.secrets import SecretStore
    from isengard_desktop.ui.settings import SettingsDialog
    from tests.helpers.keyring import MemoryKeyring

    init_main_thread_bridge()
    monkeypatch.setenv("ISENGARD_HOME", str(tmp_path / "app"))
    comfy = tmp_path / "MyComfyUI"
    comfy.mkdir()
    (comfy / "main.py").write_text("")
    dialog = SettingsDialog(resolve_paths(), SecretStore(MemoryKeyring()), Settings())
    qtbot.addWidget(dialog)
    dialog.comfyui_page.folder_edit.setText(str(comfy))
    dialog.comfyui_page.share_box.setChecked(False)
    saved = []
    dialog.settings_saved.connect(saved.append)
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    assert saved and saved[0].comfyui_folder == str(comfy)
    qtbot.wait(300)
    assert not (comfy / "extra_model_paths.yaml").exists()


def test_the_comfyui_inside_the_desktop_app_is_not_written_to(tmp_path, monkeypatch):
    from isengard_desktop.core.paths import resolve_paths
    from isengard_desktop.ui.settings.comfyui_page import share_models_change

    monkeypatch.setenv("ISENGARD_HOME", str(tmp_path / "app"))
    resources = tmp_path / "Programs" / "@comfyorgcomfyui-electron" / "resources"
    code = resources / "ComfyUI"
    (code / "comfy").mkdir(parents=True)
    (code / "main.py").write_text("")
    (resources / "app.asar").write_text("")            # an Electron app's own files
    assert share_models_change("", str(code), True, resolve_paths()) == []
    assert not (code / "extra_model_paths.yaml").exists()
    (resources / "app.asar").unlink()                   # a plain folder of that name is fine
    [said] = share_models_change("", str(code), True, resolve_paths())
    assert said.startswith(f"Created {code / 'extra_model_paths.yaml'}")


def test_ollama_fields_show_problems_and_keep_the_old_value_when_invalid(qtbot):
    page = ComfyUIPageWidget(Settings(ollama_model="qwen2.5:7b"))
    qtbot.addWidget(page)
    assert page.ollama_url_edit.text() == "http://127.0.0.1:11434"
    page.ollama_url_edit.setText("localhost:11434")
    page.ollama_model_edit.setText("mistral")
    assert "Address: write http://host:port" in page.ollama_message.text()
    assert not page.ollama_message.isHidden()
    assert page.ollama(Settings()) == ("http://127.0.0.1:11434", "mistral")
    page.ollama_url_edit.setText("http://gpu-box:11434")
    assert page.ollama_message.isHidden()
    assert page.ollama(Settings()) == ("http://gpu-box:11434", "mistral")
