"""File -> Settings: folders, keys, model folders, trainers, ComfyUI servers and the self-test page.
Exports :class:`SettingsDialog`."""

from .settings_dialog import SettingsDialog

__all__ = ["SettingsDialog"]
