"""Ctrl+Enter presses a tab's main button (Start training, Generate) from anywhere in the tab."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QAbstractButton, QWidget

RUN_KEYS = ("Ctrl+Return", "Ctrl+Enter")  # main keyboard and keypad Enter


def add_run_shortcut(scope: QWidget, button: QAbstractButton) -> list[QShortcut]:
    """Clicks ``button`` (when enabled) on Ctrl+Enter while focus is inside ``scope``."""

    def press() -> None:
        if button.isEnabled() and button.isVisible():
            button.click()

    shortcuts = []
    for keys in RUN_KEYS:
        shortcut = QShortcut(QKeySequence(keys), scope,
                             context=Qt.ShortcutContext.WidgetWithChildrenShortcut)
        shortcut.activated.connect(press)
        shortcuts.append(shortcut)
    tip = button.toolTip()
    if "Ctrl+Enter" not in tip:
        button.setToolTip(f"{tip}\n(Ctrl+Enter)" if tip else "Ctrl+Enter")
    return shortcuts
