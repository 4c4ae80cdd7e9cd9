"""Holds the user's settings and saves them off the UI thread.

Signals:
    settings_changed(Settings): new settings are in effect (saved in the background).
    failed(str): the settings file could not be written.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from ..core.models import ModelInfo, model_search_folders, scan_model_folders
from ..core.paths import AppPaths
from ..core.settings import Settings, load_settings, save_settings
from .ops import run_in_executor


class SettingsService(QObject):
    settings_changed = Signal(object)
    failed = Signal(str)

    def __init__(self, paths: AppPaths, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.paths = paths
        self._io = ThreadPoolExecutor(1, thread_name_prefix="settings-io")
        # A few hundred bytes read once at start-up, before the window shows.
        self.settings: Settings = load_settings(paths.settings_file)

    def update(self, settings: Settings) -> None:
        self.settings = settings
        self.settings_changed.emit(settings)
        run_in_executor(self._io, lambda: save_settings(self.paths.settings_file, settings),
                        None, lambda exc: self.failed.emit(
                            f"Could not save settings to {self.paths.settings_file}: {exc}"))

    def scan_models(self, folders: list[str] | None,
                    on_done: Callable[[list[ModelInfo]], None]) -> None:
        """Find base models (header-only) on a worker thread; ``None`` = the app's own Models
        folder, the model folders and the ComfyUI models folder from the current settings."""
        if folders is None:
            folders = model_search_folders(self.paths.models, self.settings.model_folders,
                                           self.settings.comfyui_models_folder)
        run_in_executor(self._io, lambda: scan_model_folders(folders), on_done,
                        lambda exc: self.failed.emit(f"Could not scan the model folders: {exc}"))

    def shutdown(self) -> None:
        self._io.shutdown(wait=True)
