"""A banner that says what is missing, with one button that fixes it ("The trainer runtime is
not installed — Install…"). Used by Training (no GPU, no trainer runtime, no base model) and
Generate (no ComfyUI, no model).

Signals:
    action_requested(str): the button was pressed; carries the banner's ``target`` (e.g. the
        wizard page that fixes it: "runtime", "models").
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

__all__ = ["NoticeBannerWidget"]

STYLES = {
    "warning": "QFrame#NoticeBanner { background: #4a3a14; border-radius: 4px; }"
               " QLabel { color: #f3e3b5; }",
    "missing": "QFrame#NoticeBanner { background: #1d2230; border: 1px solid #2c3a57;"
               " border-radius: 4px; } QLabel { color: #c8d2e6; }",
}


class NoticeBannerWidget(QFrame):
    """One notice: text, and an optional action button. Hidden until :meth:`show_notice`."""

    action_requested = Signal(str)

    def __init__(self, kind: str = "warning", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("NoticeBanner")
        self.setStyleSheet(STYLES.get(kind, STYLES["warning"]))
        self.label = QLabel("")
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.button = QPushButton("")
        self.button.setProperty("primary", True)
        self.button.hide()
        self.target = ""
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 3, 6, 3)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.button, 0, Qt.AlignmentFlag.AlignVCenter)
        self.button.clicked.connect(lambda: self.action_requested.emit(self.target))
        self.hide()

    def text(self) -> str:
        return self.label.text()

    def show_notice(self, text: str, action: str = "", target: str = "",
                    tooltip: str = "") -> None:
        """Show ``text``; with ``action`` a button of that name emits ``target``."""
        self.label.setText(text)
        self.target = target
        self.button.setText(action)
        self.button.setToolTip(tooltip)
        self.button.setVisible(bool(action))
        self.show()

    def clear(self) -> None:
        """Hide the banner (nothing is missing any more)."""
        self.hide()
