"""The Settings dialog: where the app keeps its files, model folders, API keys, this machine's
GPUs and the trainer build chosen for them.

Folder choices are handed to the owner (``settings_saved``) when the user presses OK. API keys
go straight to the OS keyring when the user presses a row's Save (or OK with a key typed); they
never stay in a widget and are never written to a file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from loguru import logger
from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView, QDialog, QDialogButtonBox, QFileDialog, QFrame, QGridLayout, QGroupBox,
    QHBoxLayout, QLabel, QLineEdit, QListWidget, QPushButton, QSizePolicy,
    QTabWidget, QVBoxLayout, QWidget,
)

from isengard_desktop.core.hardware.gpu import detect_machine
from isengard_desktop.core.logging import correlation
from isengard_desktop.core.models import model_search_folders
from isengard_desktop.core.paths import ENV_HOME, AppPaths
from isengard_desktop.core.secrets import (
    SECRETS, KeyringUnavailable, SecretSpec, SecretStore, SecretStoreError,
)
from isengard_desktop.core.settings import Settings
from isengard_desktop.ui.settings.comfyui_page import ComfyUIPageWidget
from isengard_desktop.ui.dialogs.confirm import confirm
from isengard_desktop.ui.settings.machine_page import DetectMachine, MachinePageWidget
from isengard_desktop.ui.settings.tiers_page import TiersPageWidget
from isengard_desktop.ui.settings.models_page import ModelsPageWidget, ScanModels
from isengard_desktop.ui.settings.selftest_page import SelfTestFactory, SelfTestPageWidget
from isengard_desktop.ui.settings.trainers_page import TrainersPageWidget

__all__ = ["SettingsDialog"]

_FOLDER_HELP = {
    "data": "The app's database, characters and training jobs.",
    "models": "Models the app downloads or converts for you.",
    "outputs": "Generated images and videos, and finished LoRAs.",
    "logs": "Log files (app logs are JSON lines under logs/app, kept 30 days).",
    "tmp": "Scratch files; safe to empty while the app is closed.",
    "cache": "Thumbnails and other files the app can rebuild.",
    "config": "settings.json. API keys are not here: they live in the OS keyring.",
}

_STATE_SET_STYLE = "color: #6fbf73;"   # the one colour here: a calm green for "set"


def _message(label: QLabel, text: str, *, error: bool) -> None:
    label.setText(text)
    label.setProperty("error", error)
    label.setVisible(bool(text))


class _FoldersPage(QWidget):
    """App folders (read-only, with Open), model folders and the ComfyUI models folder."""

    def __init__(self, paths: AppPaths, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._paths = paths
        layout = QVBoxLayout(self)

        if paths.portable:
            mode = (f"Portable mode: {ENV_HOME} is set, so everything lives under "
                    f"{paths.data.parent}.")
        else:
            mode = (f"Standard folders for this system ({ENV_HOME} is not set). Set {ENV_HOME} "
                    "to keep everything in one folder (portable mode).")
        self.mode_label = QLabel(mode)
        self.mode_label.setObjectName("portable_mode_label")
        self.mode_label.setWordWrap(True)
        self.mode_label.setToolTip(
            f"When the environment variable {ENV_HOME} names a folder, data, models, outputs, "
            "logs, tmp, cache and config all live under it.")
        layout.addWidget(self.mode_label)

        box = QGroupBox("App folders")
        box.setToolTip("Where Isengard keeps its own files. Change them with "
                       f"{ENV_HOME} before starting the app.")
        grid = QGridLayout(box)
        for row, (name, folder) in enumerate(paths.as_dict().items()):
            title = QLabel(name.capitalize())
            title.setToolTip(_FOLDER_HELP.get(name, ""))
            value = QLabel(folder)
            value.setObjectName(f"path_{name}")
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            value.setToolTip(f"{_FOLDER_HELP.get(name, '')}\n{folder}")
            value.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
            button = QPushButton("Open")
            button.setObjectName(f"open_{name}")
            button.setToolTip(f"Open {folder} in the file manager.")
            button.clicked.connect(lambda _=False, p=folder: self._open_folder(Path(p)))
            grid.addWidget(title, row, 0)
            grid.addWidget(value, row, 1)
            grid.addWidget(button, row, 2)
        layout.addWidget(box)

        models_box = QGroupBox("Model folders")
        models_box.setToolTip("Extra folders where the app looks for base models, LoRAs, VAEs "
                              "and text encoders you already have.")
        models_layout = QVBoxLayout(models_box)
        self.model_folders = QListWidget()
        self.model_folders.setObjectName("model_folders_list")
        self.model_folders.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.model_folders.setToolTip("Folders searched for model files (*.safetensors, ...).")
        self.model_folders.addItems(settings.model_folders)
        models_layout.addWidget(self.model_folders)
        buttons = QHBoxLayout()
        self.add_button = QPushButton("Add…")
        self.add_button.setObjectName("model_folders_add")
        self.add_button.setToolTip("Choose a folder that holds model files.")
        self.add_button.clicked.connect(self._add_model_folder)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setObjectName("model_folders_remove")
        self.remove_button.setToolTip("Forget the selected folders (nothing on disk is deleted).")
        self.remove_button.clicked.connect(self._remove_model_folders)
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        models_layout.addLayout(buttons)
        layout.addWidget(models_box)

        comfy_box = QGroupBox("ComfyUI models folder")
        comfy_box.setToolTip("The 'models' folder of your ComfyUI install. Finished LoRAs are "
                             "placed in its 'loras' subfolder so ComfyUI can load them.")
        comfy_layout = QHBoxLayout(comfy_box)
        self.comfy_models = QLineEdit(settings.comfyui_models_folder)
        self.comfy_models.setObjectName("comfyui_models_folder_input")
        self.comfy_models.setPlaceholderText("e.g. ~/ComfyUI/models")
        self.comfy_models.setToolTip(comfy_box.toolTip())
        browse = QPushButton("Browse…")
        browse.setObjectName("comfyui_models_folder_browse")
        browse.setToolTip("Choose ComfyUI's models folder.")
        browse.clicked.connect(self._browse_comfy_models)
        comfy_layout.addWidget(self.comfy_models, 1)
        comfy_layout.addWidget(browse)
        layout.addWidget(comfy_box)

        self.message = QLabel()
        self.message.setObjectName("folders_message")
        self.message.setWordWrap(True)
        self.message.setVisible(False)
        layout.addWidget(self.message)
        layout.addStretch(1)

    def model_folder_list(self) -> list[str]:
        return [self.model_folders.item(i).text() for i in range(self.model_folders.count())]

    def _open_folder(self, folder: Path) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            _message(self.message, f"Could not create {folder}: {exc.strerror or exc}.", error=True)
            return
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            _message(self.message, f"No file manager opened {folder}; open it by hand.",
                     error=True)
        else:
            _message(self.message, "", error=False)

    def _add_model_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a model folder")
        if not folder:
            return
        if folder in self.model_folder_list():
            _message(self.message, f"{folder} is already in the list.", error=False)
            return
        self.model_folders.addItem(folder)
        _message(self.message, "", error=False)

    def _remove_model_folders(self) -> None:
        for item in self.model_folders.selectedItems():
            self.model_folders.takeItem(self.model_folders.row(item))

    def _browse_comfy_models(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "ComfyUI models folder",
                                                  self.comfy_models.text())
        if folder:
            self.comfy_models.setText(folder)


class _AccountsPage(QWidget):
    """One row per known secret: state, a password field, Save and Clear."""

    def __init__(self, secrets: SecretStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._secrets = secrets
        self.inputs: dict[str, QLineEdit] = {}
        self.states: dict[str, QLabel] = {}
        self.save_buttons: dict[str, QPushButton] = {}
        self.clear_buttons: dict[str, QPushButton] = {}

        layout = QVBoxLayout(self)
        ok, reason = secrets.available()
        self.banner = QLabel()
        self.banner.setObjectName("keyring_banner")
        self.banner.setWordWrap(True)
        self.banner.setFrameShape(QFrame.Shape.StyledPanel)
        self.banner.setToolTip("Keys are kept only in the operating system's keyring; without "
                               "one, Isengard stores no keys at all.")
        if not ok:
            self.banner.setText(str(KeyringUnavailable(reason)))
        self.banner.setVisible(not ok)
        layout.addWidget(self.banner)

        note = QLabel("Keys are saved to your operating system's keyring as soon as you press "
                      "Save. They are never written to a file or a log.")
        note.setWordWrap(True)
        layout.addWidget(note)

        grid = QGridLayout()
        for row, spec in enumerate(SECRETS):
            self._add_row(grid, row, spec, enabled=ok)
        layout.addLayout(grid)

        self.message = QLabel()
        self.message.setObjectName("secrets_message")
        self.message.setWordWrap(True)
        self.message.setVisible(False)
        layout.addWidget(self.message)
        layout.addStretch(1)
        self.refresh()

    def _add_row(self, grid: QGridLayout, row: int, spec: SecretSpec, *, enabled: bool) -> None:
        title = QLabel(spec.label)
        title.setToolTip(spec.help)
        state = QLabel()
        state.setObjectName(f"secret_state_{spec.key}")
        state.setToolTip("Whether this key is stored in the OS keyring; only its first and last "
                         "characters are shown.")
        field = QLineEdit()
        field.setObjectName(f"secret_input_{spec.key}")
        field.setEchoMode(QLineEdit.EchoMode.Password)
        field.setPlaceholderText("Paste a new value")
        field.setToolTip(spec.help)
        field.setEnabled(enabled)
        save = QPushButton("Save")
        save.setObjectName(f"secret_save_{spec.key}")
        save.setToolTip(f"Store the typed value as your {spec.label} (replaces any stored one).")
        save.setAutoDefault(False)
        save.setEnabled(False)
        clear = QPushButton("Clear")
        clear.setObjectName(f"secret_clear_{spec.key}")
        clear.setToolTip(f"Remove the {spec.label} from the OS keyring.")
        clear.setAutoDefault(False)
        clear.setEnabled(False)
        field.textChanged.connect(
            lambda text, b=save: b.setEnabled(bool(text.strip()) and self.is_available()))
        save.clicked.connect(lambda _=False, k=spec.key: self.save_secret(k))
        clear.clicked.connect(lambda _=False, k=spec.key: self.clear_secret(k))
        grid.addWidget(title, row, 0)
        grid.addWidget(state, row, 1)
        grid.addWidget(field, row, 2)
        grid.addWidget(save, row, 3)
        grid.addWidget(clear, row, 4)
        grid.setColumnStretch(2, 1)
        self.inputs[spec.key] = field
        self.states[spec.key] = state
        self.save_buttons[spec.key] = save
        self.clear_buttons[spec.key] = clear

    def is_available(self) -> bool:
        return self._secrets.available()[0]

    def refresh(self) -> None:
        """Update every row's state from the keyring."""
        available = self.is_available()
        for spec in SECRETS:
            state = self.states[spec.key]
            try:
                masked = self._secrets.masked(spec.key) if available else ""
            except SecretStoreError as exc:
                state.setText("? Unknown")
                state.setStyleSheet("")
                _message(self.message, str(exc), error=True)
                self.clear_buttons[spec.key].setEnabled(available)
                continue
            if masked:
                state.setText(f"● Set ({masked})")
                state.setStyleSheet(_STATE_SET_STYLE)
            else:
                state.setText("○ Not set")
                state.setStyleSheet("")
            self.clear_buttons[spec.key].setEnabled(available and bool(masked))

    def pending_keys(self) -> list[str]:
        return [key for key, field in self.inputs.items() if field.text().strip()]

    def save_secret(self, key: str) -> bool:
        """Store what is typed in ``key``'s field; the field is emptied at once. True on success."""
        field = self.inputs[key]
        value = field.text()
        field.clear()
        spec = next(s for s in SECRETS if s.key == key)
        with correlation():
            try:
                self._secrets.set(key, value)
            except (ValueError, SecretStoreError) as exc:
                logger.warning("Could not store the {}: {}", spec.label, exc)
                _message(self.message, str(exc), error=True)
                return False
        _message(self.message, f"Saved the {spec.label} to the OS keyring.", error=False)
        self.refresh()
        return True

    def clear_secret(self, key: str) -> None:
        spec = next(s for s in SECRETS if s.key == key)
        if not confirm(self, "Remove key",
                       f"Remove the {spec.label} from the OS keyring? Downloads or runs that "
                       "need it will ask for it again."):
            return
        with correlation():
            try:
                self._secrets.clear(key)
            except SecretStoreError as exc:
                logger.warning("Could not remove the {}: {}", spec.label, exc)
                _message(self.message, str(exc), error=True)
                return
        _message(self.message, f"Removed the {spec.label}.", error=False)
        self.refresh()


class SettingsDialog(QDialog):
    """Settings: folders and API keys.

    The dialog writes no settings file itself: OK emits the updated settings and the owner
    (``SettingsService.update``) saves them. API keys are the exception: they go to the OS
    keyring as soon as the user saves them.

    Signals:
        settings_saved(Settings): the user pressed OK; carries the updated settings.
        wizard_requested(): the user pressed "Set-up assistant…" (the dialog closes first,
            saving changed settings, so the assistant starts from them and this dialog never
            overwrites what the assistant links).
    """

    settings_saved = Signal(object)
    wizard_requested = Signal()

    def __init__(self, paths: AppPaths, secrets: SecretStore, settings: Settings,
                 parent: QWidget | None = None, scan_models: ScanModels | None = None,
                 selftest_factory: SelfTestFactory | None = None,
                 detect: DetectMachine | None = None, comfy_install: object = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setObjectName("settings_dialog")
        self._paths = paths
        self._secrets = secrets
        self._settings = settings

        layout = QVBoxLayout(self)
        self.tabs = QTabWidget()
        self.folders_page = _FoldersPage(paths, settings)
        self.accounts_page = _AccountsPage(secrets)
        self.tabs.addTab(self.folders_page, "Folders")
        self.tabs.addTab(self.accounts_page, "Accounts && keys")
        self.tabs.setTabToolTip(0, "Where the app keeps its files and where it finds models.")
        self.tabs.setTabToolTip(1, "API keys for Weights & Biases, Hugging Face and Civitai, "
                                   "kept in the OS keyring.")
        self.models_page: ModelsPageWidget | None = None
        if scan_models is not None:
            self.models_page = ModelsPageWidget(scan_models, self._model_search_folders)
            self.tabs.addTab(self.models_page, "Models")
            self.tabs.setTabToolTip(2, "Base models found in your model folders, by family.")
            self.models_page.rescan()
        self.selftest_page: SelfTestPageWidget | None = None
        if selftest_factory is not None:
            self.selftest_page = SelfTestPageWidget(selftest_factory)
            index = self.tabs.addTab(self.selftest_page, "Self-test")
            self.tabs.setTabToolTip(index, "Check that training works on this computer: "
                                           "PyTorch, GPU, libraries, disk and a tiny run.")
        self.machine_page = MachinePageWidget(
            settings.runtime_device_override,
            detect if detect is not None else (lambda: detect_machine(paths.data)),
            data_folder=str(paths.data))
        index = self.tabs.addTab(self.machine_page, "This machine")
        self.tabs.setTabToolTip(index, "GPUs, driver, memory and disk, and the trainer build "
                                       "(PyTorch for CUDA, ROCm, Apple or CPU) chosen for them.")
        self.trainers_page = TrainersPageWidget(settings.trainer_installs)
        index = self.tabs.addTab(self.trainers_page, "Trainers")
        self.tabs.setTabToolTip(index, "ai-toolkit, diffusion-pipe and kohya sd-scripts you "
                                       "already have: folders, Python, checks, what runs here.")
        self.comfyui_page = ComfyUIPageWidget(settings, secrets=secrets,
                                              comfy_install=comfy_install, paths=paths)
        index = self.tabs.addTab(self.comfyui_page, "ComfyUI")
        self.tabs.setTabToolTip(index, "ComfyUI for the Generate tab: on this computer and "
                                       "servers on your network.")
        self.tiers_page = TiersPageWidget(
            settings.server_tiers,
            detect if detect is not None else (lambda: detect_machine(paths.data)),
            self.comfyui_page.remote_servers)
        index = self.tabs.addTab(self.tiers_page, "Servers && tiers")
        self.tabs.setTabToolTip(index, "Which ComfyUI server (one per GPU, and those on your "
                                       "network) takes final, standard or draft pictures.")
        layout.addWidget(self.tabs)

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setToolTip(
            "Save the folder settings (and any key you typed) and close.")
        self.buttons.button(QDialogButtonBox.StandardButton.Cancel).setToolTip(
            "Close without saving folder changes. Keys already saved stay saved.")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.wizard_button = self.buttons.addButton("Set-up assistant…",
                                                    QDialogButtonBox.ButtonRole.ResetRole)
        self.wizard_button.setObjectName("settings_wizard_button")
        self.wizard_button.setToolTip(
            "Close Settings (keeping the changes made here) and open the set-up assistant: "
            "this computer's GPU, the trainer runtime, linking ComfyUI and models.")
        self.wizard_button.clicked.connect(self._open_wizard)
        layout.addWidget(self.buttons)
        self.resize(760, 560)

    def _open_wizard(self) -> None:
        new = self.updated_settings()
        if new != self._settings:
            self.comfyui_page.share_models(self._settings.comfyui_folder)
            self._settings = new
            self.settings_saved.emit(new)
        self.reject()
        self.wizard_requested.emit()

    def _model_search_folders(self) -> list[str]:
        return model_search_folders(self._paths.models, self.folders_page.model_folder_list(),
                                    self.folders_page.comfy_models.text().strip())

    def updated_settings(self) -> Settings:
        """The settings as currently shown in the dialog."""
        settings = dataclasses.replace(
            self._settings,
            model_folders=self.folders_page.model_folder_list(),
            comfyui_models_folder=self.folders_page.comfy_models.text().strip(),
            comfyui_folder=self.comfyui_page.comfyui_folder(),
            comfyui_python=self.comfyui_page.comfyui_python(),
            remote_servers=self.comfyui_page.remote_servers(),
            trainer_installs=self.trainers_page.installs(),
            runtime_device_override=self.machine_page.device_override(),
            server_tiers=self.tiers_page.tiers(),
        )
        url, model = self.comfyui_page.ollama(self._settings)
        sizes = self.comfyui_page.funnel_box.sizes()
        return dataclasses.replace(settings, ollama_url=url, ollama_model=model,
                                   funnel_drafts=sizes.drafts, funnel_standard=sizes.standard,
                                   funnel_final=sizes.final)

    def accept(self) -> None:
        # A key typed but not saved would otherwise be lost when the dialog closes.
        for key in self.accounts_page.pending_keys():
            if not self.accounts_page.save_secret(key):
                self.tabs.setCurrentWidget(self.accounts_page)
                return
        if self.comfyui_page.upload_token is not None:   # typed, Save token not pressed
            self.comfyui_page.upload_token.save_pending()
        new = self.updated_settings()
        self.comfyui_page.share_models(self._settings.comfyui_folder)   # off the UI thread
        self._settings = new
        self.settings_saved.emit(new)
        super().accept()
