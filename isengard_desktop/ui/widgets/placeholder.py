"""A calm page for a tab whose feature is still being built: says what it will do."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget


class PlannedFeatureWidget(QWidget):
    def __init__(self, title: str, status: str, bullets: list[str],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(48, 40, 48, 40)
        heading = QLabel(title)
        heading.setObjectName("Title")
        state = QLabel(status)
        state.setObjectName("Banner")
        state.setWordWrap(True)
        body = QLabel("<ul style='margin-left:-20px'>" +
                      "".join(f"<li style='margin-bottom:6px'>{b}</li>" for b in bullets) +
                      "</ul>")
        body.setWordWrap(True)
        body.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(heading)
        layout.addSpacing(8)
        layout.addWidget(state)
        layout.addSpacing(12)
        layout.addWidget(body)
        layout.addStretch(1)
        self.status_text = status
