"""SettingsDialog: folders page, keys page (save/clear/unavailable), OK emits settings."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from keyring.backend import KeyringBackend  # noqa: E402
from keyring.backends import fail  # noqa: E402
from keyring.errors import PasswordDeleteError  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QDesktopServices  # noqa: E402
from PySide6.QtWidgets import (  # noqa: E402
    QFileDialog, QLabel, QLineEdit, QListWidget, QMessageBox, QPushButton,
)

from isengard_desktop.core import logging as applog  # noqa: E402
from isengard_desktop.core.paths import AppPaths, resolve_paths  # noqa: E402
from isengard_desktop.core.secrets import SECRETS, SERVICE, SecretStore  # noqa: E402
from isengard_desktop.core.settings import Settings  # noqa: E402
from isengard_desktop.ui.settings.settings_dialog import SettingsDialog  # noqa: E402

pytestmark = pytest.mark.gui

HF = "hf_" + "Qw3rTy8uIoPaSdFgHjKl9f2c"


class MemoryKeyring(KeyringBackend):
    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service, username):
        return self.store.get((service, username))

    def set_password(self, service, username, password):
        self.store[(service, username)] = password

    def delete_password(self, service, username):
        if (service, username) not in self.store:
            raise PasswordDeleteError("not set")
        del self.store[(service, username)]


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppPaths:
    monkeypatch.setenv("ISENGARD_HOME", str(tmp_path))
    yield resolve_paths()
    applog._clear_redaction_values()


@pytest.fixture
def backend() -> MemoryKeyring:
    return MemoryKeyring()


def make_dialog(qtbot, paths: AppPaths, store: SecretStore, settings: Settings | None = None):
    dialog = SettingsDialog(paths, store, settings or Settings())
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.tabs.setCurrentWidget(dialog.accounts_page)
    return dialog


def find(dialog, cls, name):
    widget = dialog.findChild(cls, name)
    assert widget is not None, name
    return widget


def test_save_token_stores_it_and_empties_the_field(qtbot, paths, backend) -> None:
    dialog = make_dialog(qtbot, paths, SecretStore(backend))
    field = find(dialog, QLineEdit, "secret_input_hf_token")
    save = find(dialog, QPushButton, "secret_save_hf_token")
    state = find(dialog, QLabel, "secret_state_hf_token")
    assert field.echoMode() == QLineEdit.EchoMode.Password
    assert state.text() == "○ Not set"
    assert not save.isEnabled()

    qtbot.keyClicks(field, HF)
    assert save.isEnabled()
    qtbot.mouseClick(save, Qt.MouseButton.LeftButton)

    assert backend.store[(SERVICE, "hf_token")] == HF
    assert field.text() == ""
    assert state.text() == "● Set (hf_…9f2c)"
    assert find(dialog, QPushButton, "secret_clear_hf_token").isEnabled()
    assert HF not in find(dialog, QLabel, "secrets_message").text()
    # the other rows are untouched
    assert find(dialog, QLabel, "secret_state_civitai_token").text() == "○ Not set"


def test_clear_after_confirmation(qtbot, paths, backend, monkeypatch) -> None:
    backend.store[(SERVICE, "civitai_token")] = "civitai-0123456789abcdef"
    asked = []

    def yes(*args, **kwargs):
        asked.append(args)
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", yes)
    dialog = make_dialog(qtbot, paths, SecretStore(backend))
    state = find(dialog, QLabel, "secret_state_civitai_token")
    assert state.text() == "● Set (civ…cdef)"
    qtbot.mouseClick(find(dialog, QPushButton, "secret_clear_civitai_token"),
                     Qt.MouseButton.LeftButton)
    assert len(asked) == 1
    assert (SERVICE, "civitai_token") not in backend.store
    assert state.text() == "○ Not set"
    assert not find(dialog, QPushButton, "secret_clear_civitai_token").isEnabled()


def test_clear_declined_keeps_the_key(qtbot, paths, backend, monkeypatch) -> None:
    backend.store[(SERVICE, "hf_token")] = HF
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    dialog = make_dialog(qtbot, paths, SecretStore(backend))
    qtbot.mouseClick(find(dialog, QPushButton, "secret_clear_hf_token"), Qt.MouseButton.LeftButton)
    assert backend.store[(SERVICE, "hf_token")] == HF


def test_unavailable_keyring_shows_banner_and_disables_inputs(qtbot, paths) -> None:
    dialog = make_dialog(qtbot, paths, SecretStore(fail.Keyring()))
    banner = find(dialog, QLabel, "keyring_banner")
    assert banner.isVisible()
    assert "No OS keyring is available" in banner.text()
    for spec in SECRETS:
        assert not find(dialog, QLineEdit, f"secret_input_{spec.key}").isEnabled()
        assert not find(dialog, QPushButton, f"secret_save_{spec.key}").isEnabled()
        assert not find(dialog, QPushButton, f"secret_clear_{spec.key}").isEnabled()
        assert find(dialog, QLabel, f"secret_state_{spec.key}").text() == "○ Not set"


def test_banner_hidden_when_keyring_works(qtbot, paths, backend) -> None:
    dialog = make_dialog(qtbot, paths, SecretStore(backend))
    assert not find(dialog, QLabel, "keyring_banner").isVisible()
    assert find(dialog, QLineEdit, "secret_input_hf_token").isEnabled()


def test_keyring_error_is_shown_inline(qtbot, paths, backend) -> None:
    from keyring.errors import PasswordSetError

    def refuse(service, username, password):
        raise PasswordSetError("access denied by the user")

    backend.set_password = refuse
    dialog = make_dialog(qtbot, paths, SecretStore(backend))
    field = find(dialog, QLineEdit, "secret_input_wandb_api_key")
    qtbot.keyClicks(field, "wandbvalue-0123456789")
    qtbot.mouseClick(find(dialog, QPushButton, "secret_save_wandb_api_key"),
                     Qt.MouseButton.LeftButton)
    message = find(dialog, QLabel, "secrets_message")
    assert message.isVisible()
    assert "access denied" in message.text() and "Weights & Biases" in message.text()
    assert field.text() == ""
    assert backend.store == {}


def test_folders_page_shows_every_app_folder(qtbot, paths, backend, monkeypatch) -> None:
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    dialog = make_dialog(qtbot, paths, SecretStore(backend))
    dialog.tabs.setCurrentWidget(dialog.folders_page)
    for name, folder in paths.as_dict().items():
        label = find(dialog, QLabel, f"path_{name}")
        assert label.text() == folder
        assert label.toolTip()
    assert "Portable mode" in find(dialog, QLabel, "portable_mode_label").text()
    assert str(paths.data.parent) in find(dialog, QLabel, "portable_mode_label").text()

    qtbot.mouseClick(find(dialog, QPushButton, "open_outputs"), Qt.MouseButton.LeftButton)
    assert [u.toLocalFile() for u in opened] == [str(paths.outputs)]
    assert paths.outputs.is_dir()


def test_model_folders_and_ok_emits_settings(qtbot, paths, backend, monkeypatch, tmp_path) -> None:
    chosen = iter([str(tmp_path / "loras"), str(tmp_path / "comfy" / "models")])
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: next(chosen))
    start = Settings(model_folders=["/models/old"], comfyui_folder="/opt/comfy",
                     remote_servers=["http://gpu-box:8188"])
    dialog = make_dialog(qtbot, paths, SecretStore(backend), start)
    dialog.tabs.setCurrentWidget(dialog.folders_page)
    folders = find(dialog, QListWidget, "model_folders_list")
    assert [folders.item(i).text() for i in range(folders.count())] == ["/models/old"]

    qtbot.mouseClick(find(dialog, QPushButton, "model_folders_add"), Qt.MouseButton.LeftButton)
    folders.item(0).setSelected(True)
    qtbot.mouseClick(find(dialog, QPushButton, "model_folders_remove"), Qt.MouseButton.LeftButton)
    qtbot.mouseClick(find(dialog, QPushButton, "comfyui_models_folder_browse"),
                     Qt.MouseButton.LeftButton)
    assert find(dialog, QLineEdit, "comfyui_models_folder_input").text() == str(
        tmp_path / "comfy" / "models")

    # a key typed but not saved with its own button is saved by OK, not lost
    dialog.tabs.setCurrentWidget(dialog.accounts_page)
    qtbot.keyClicks(find(dialog, QLineEdit, "secret_input_hf_token"), HF)

    # and so is a remote server's upload token typed for the selected server
    dialog.tabs.setCurrentWidget(dialog.comfyui_page)
    dialog.comfyui_page.server_list.setCurrentRow(0)
    qtbot.keyClicks(find(dialog, QLineEdit, "comfyui_upload_token_input"), "upload-tok-12345")

    with qtbot.waitSignal(dialog.settings_saved, timeout=1000) as blocker:
        dialog.accept()
    saved = blocker.args[0]
    qtbot.waitUntil(lambda: (SERVICE, "comfyui_upload_token:http://gpu-box:8188")
                    in backend.store, timeout=10_000)
    assert backend.store[(SERVICE, "comfyui_upload_token:http://gpu-box:8188")] == \
        "upload-tok-12345"
    assert saved.model_folders == [str(tmp_path / "loras")]
    assert saved.comfyui_models_folder == str(tmp_path / "comfy" / "models")
    assert saved.comfyui_folder == "/opt/comfy"
    assert saved.remote_servers == ["http://gpu-box:8188"]
    assert saved.version == 1
    assert dialog.result() == SettingsDialog.DialogCode.Accepted
    assert backend.store[(SERVICE, "hf_token")] == HF
    assert find(dialog, QLineEdit, "secret_input_hf_token").text() == ""
    assert HF not in repr(saved)
    assert not paths.settings_file.exists()      # the owner (SettingsService) saves it


def test_cancel_emits_nothing(qtbot, paths, backend) -> None:
    dialog = make_dialog(qtbot, paths, SecretStore(backend), Settings(model_folders=["/m"]))
    emitted = []
    dialog.settings_saved.connect(emitted.append)
    dialog.reject()
    assert emitted == []
    assert dialog.result() == SettingsDialog.DialogCode.Rejected


def test_models_page_lists_scanned_models_by_family(qtbot, tmp_path, monkeypatch):
    """The Models page scans the folders on the Folders page through the real service."""
    from isengard_desktop.core.paths import resolve_paths
    from isengard_desktop.core.secrets import SecretStore
    from isengard_desktop.services.settings_service import SettingsService
    from isengard_desktop.ui.settings.settings_dialog import SettingsDialog
    from tests.unit.test_models import FLUX_DEV, SD15, write_header_only

    paths = resolve_paths().ensure()
    service = SettingsService(paths)
    folder = tmp_path / "my-models"
    write_header_only(folder / "dreamshaper.safetensors", SD15)
    write_header_only(folder / "unet" / "flux1-dev.safetensors", FLUX_DEV)
    service.settings.model_folders = [str(folder)]
    dialog = SettingsDialog(paths, SecretStore(), service.settings, scan_models=service.scan_models)
    qtbot.addWidget(dialog)
    page = dialog.models_page
    qtbot.waitUntil(lambda: len(page.models) == 2, timeout=5000)
    rows = {page.tree.topLevelItem(i).text(0): page.tree.topLevelItem(i).text(1)
            for i in range(page.tree.topLevelItemCount())}
    assert rows == {"dreamshaper.safetensors": "SD 1.5", "flux1-dev.safetensors": "Flux.1 dev"}
    assert "2 usable" in page.summary.text()
    service.shutdown()


def test_the_apps_own_models_folder_is_scanned_by_default(qtbot, tmp_path):
    """Settings → Folders' Models folder holds base models too (issue 11, item 15)."""
    from isengard_desktop.core.paths import resolve_paths
    from isengard_desktop.core.secrets import SecretStore
    from isengard_desktop.services.settings_service import SettingsService
    from isengard_desktop.ui.settings.settings_dialog import SettingsDialog
    from tests.unit.test_models import SD15, write_header_only

    paths = resolve_paths().ensure()
    write_header_only(paths.models / "own.safetensors", SD15)
    service = SettingsService(paths)
    service.settings.model_folders = []
    found: list = []
    service.scan_models(None, found.append)
    qtbot.waitUntil(lambda: bool(found), timeout=5000)
    assert [m.path.name for m in found[0]] == ["own.safetensors"]
    dialog = SettingsDialog(paths, SecretStore(), service.settings, scan_models=service.scan_models)
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: len(dialog.models_page.models) == 1, timeout=5000)
    service.shutdown()
