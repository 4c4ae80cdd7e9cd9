"""File -> Settings: folders, keys, model folders, this machine (GPUs, trainer build), trainers,
ComfyUI servers and the self-test page.
Exports :class:`SettingsDialog`."""

from .settings_dialog import SettingsDialog

__all__ = ["SettingsDialog"]
