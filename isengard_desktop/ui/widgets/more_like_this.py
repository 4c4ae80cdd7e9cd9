""""More like this" controls (:class:`MoreLikeThisWidget`): a strength (denoise) slider, a
count and the button. Used by the gallery's details and the Explore view.

Signals:
    requested(float denoise, int count): the button was pressed.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QPushButton, QSlider, QSpinBox,
                               QVBoxLayout, QWidget)

from ...core.comfy.funnel import MORE_LIKE_COUNT, MORE_LIKE_DENOISE

__all__ = ["MoreLikeThisWidget"]


class MoreLikeThisWidget(QWidget):
    requested = Signal(float, int)

    def __init__(self, parent: QWidget | None = None, two_rows: bool = False) -> None:
        super().__init__(parent)
        self.setObjectName("MoreLikeThis")
        self.button = QPushButton("More like this")
        self.button.setObjectName("MoreLikeThisButton")
        self.button.setToolTip("Make new pictures from this one (image to image) with nearby "
                               "seeds (its seed + 1, + 2, …). They keep its prompt, model, "
                               "size and LoRA and record it as their parent.")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("MoreLikeStrength")
        self.slider.setRange(5, 90)
        self.slider.setValue(round(MORE_LIKE_DENOISE * 100))
        self.slider.setToolTip("Strength (denoise, 0.05 to 0.90): how far the new pictures may "
                               "move away from this one. Low keeps the composition and "
                               "changes details; 0.35 is a gentle variation.")
        self.value_label = QLabel("")
        self.value_label.setMinimumWidth(32)
        self.count = QSpinBox()
        self.count.setObjectName("MoreLikeCount")
        self.count.setRange(1, 16)
        self.count.setValue(MORE_LIKE_COUNT)
        self.count.setToolTip("How many pictures to make, each with the next seed.")
        self._tip = self.button.toolTip()
        strength = QLabel("Strength")
        strength.setToolTip(self.slider.toolTip())
        # two rows in a narrow pane (the gallery's details): button + count, then strength
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(4)
        first = QHBoxLayout()
        first.setSpacing(6)
        second = QHBoxLayout() if two_rows else first
        second.setSpacing(6)
        first.addWidget(self.button, 1 if two_rows else 0)
        if two_rows:
            first.addWidget(QLabel("Count"))
            first.addWidget(self.count)
        second.addWidget(strength)
        second.addWidget(self.slider, 1)
        second.addWidget(self.value_label)
        if not two_rows:
            second.addWidget(self.count)
        outer.addLayout(first)
        if two_rows:
            outer.addLayout(second)
        self.slider.valueChanged.connect(self._show_value)
        self.button.clicked.connect(lambda: self.requested.emit(self.denoise(),
                                                                self.count.value()))
        self._show_value()

    def denoise(self) -> float:
        return self.slider.value() / 100

    def _show_value(self) -> None:
        self.value_label.setText(f"{self.denoise():.2f}")

    def set_available(self, enabled: bool, why: str = "") -> None:
        """Enable the button; when disabled its tooltip says ``why``."""
        self.button.setEnabled(enabled)
        self.button.setToolTip(self._tip if enabled or not why else why)
