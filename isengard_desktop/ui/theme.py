"""Applies the calm dark theme: Fusion style, a dark palette and resources/theme/dark.qss; and
the app icon (resources/icons/, rendered from isengard.svg by packaging/make_icons.py)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QColor, QIcon, QPalette
from PySide6.QtWidgets import QApplication

RESOURCES = Path(__file__).resolve().parents[2] / "resources"


def resources_dir() -> Path:
    """The resources folder (source tree or a PyInstaller bundle)."""
    import sys

    bundle = getattr(sys, "_MEIPASS", None)
    return Path(bundle) / "resources" if bundle else RESOURCES


ICON_SIZES = (16, 32, 48, 64, 128, 256, 512)


def app_icon() -> QIcon:
    """The app icon at every rendered size (Qt picks per use: title bar, task bar, Alt+Tab).
    QIcon reads the files lazily, when a size is first painted. Null when the PNGs are missing
    (a broken install); the window then has Qt's default icon."""
    folder = resources_dir() / "icons"
    icon = QIcon()
    for size in ICON_SIZES:
        path = folder / f"isengard-{size}.png"
        if path.is_file():
            icon.addFile(str(path))
    return icon


def apply_dark_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    pal = QPalette()
    colors = {
        QPalette.ColorRole.Window: "#16181d",
        QPalette.ColorRole.WindowText: "#dfe3ea",
        QPalette.ColorRole.Base: "#1d2027",
        QPalette.ColorRole.AlternateBase: "#20242b",
        QPalette.ColorRole.Text: "#e3e7ee",
        QPalette.ColorRole.Button: "#262a33",
        QPalette.ColorRole.ButtonText: "#dfe3ea",
        QPalette.ColorRole.Highlight: "#3d6fd6",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.ToolTipBase: "#23272f",
        QPalette.ColorRole.ToolTipText: "#e3e7ee",
        QPalette.ColorRole.PlaceholderText: "#7d8596",
        QPalette.ColorRole.Link: "#7ea6f5",
    }
    for role, value in colors.items():
        pal.setColor(role, QColor(value))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText,
                 QPalette.ColorRole.WindowText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor("#5d6472"))
    app.setPalette(pal)
    qss = resources_dir() / "theme" / "dark.qss"
    if qss.exists():
        app.setStyleSheet(qss.read_text(encoding="utf-8"))
