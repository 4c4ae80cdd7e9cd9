"""The Generate form's input image (img2img): the picture new ones start from and how far they
may move away from it (denoise, 0.20–0.90).

"Reuse parameters" of an image-to-image picture sets it; ✕ removes it. The whole part, slider
included, is shown only while an input image is set. Nothing here calls a service; the tab may hand it a thumbnail.

Signals:
    changed(): the input image or the denoise value changed.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSlider, QVBoxLayout, QWidget

from .options import subtle

__all__ = ["DEFAULT_DENOISE", "DENOISE_RANGE", "InputImageWidget"]

DENOISE_RANGE = (0.2, 0.9)
DEFAULT_DENOISE = 0.55
THUMB = 64


class InputImageWidget(QWidget):
    """See the module docstring."""

    changed = Signal()

    TIP = ("The picture the new ones start from (image to image). Its parameters are in the "
           "form; change the prompt to steer the variation.")
    DENOISE_TIP = ("Denoise: how far the new pictures may move away from the input image, "
                   "0.20 to 0.90. Low values keep its composition, colours and face and change "
                   "details; high values keep only the rough layout. 0.5–0.6 gives close "
                   "variations.")
    CLEAR_TIP = "Remove the input image: Generate makes pictures from the prompt alone again."

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("InputImage")
        self._path = ""
        self.title = QLabel("Input image")
        self.title.setObjectName("SectionLabel")
        self.thumb = QLabel()
        self.thumb.setObjectName("InputImageThumb")
        self.thumb.setFixedSize(THUMB, THUMB)
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumb.setToolTip(self.TIP)
        self.name_label = subtle()
        self.name_label.setObjectName("InputImageName")
        self.clear_button = QPushButton("✕")
        self.clear_button.setObjectName("ClearInputImage")
        self.clear_button.setFixedWidth(30)
        self.clear_button.setToolTip(self.CLEAR_TIP)
        self.clear_button.setAccessibleName("Remove the input image")
        lo, hi = DENOISE_RANGE
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("DenoiseSlider")
        self.slider.setRange(round(lo * 100), round(hi * 100))
        self.slider.setSingleStep(5)
        self.slider.setPageStep(10)
        self.slider.setValue(round(DEFAULT_DENOISE * 100))
        self.slider.setToolTip(self.DENOISE_TIP)
        self.denoise_label = QLabel("Denoise")
        self.denoise_label.setToolTip(self.DENOISE_TIP)
        self.value_label = QLabel(f"{DEFAULT_DENOISE:.2f}")
        self.value_label.setMinimumWidth(34)
        self.value_label.setToolTip(self.DENOISE_TIP)

        top = QHBoxLayout()
        top.setSpacing(8)
        top.addWidget(self.thumb)
        top.addWidget(self.name_label, 1)
        top.addWidget(self.clear_button, 0, Qt.AlignmentFlag.AlignTop)
        row = QHBoxLayout()
        row.addWidget(self.denoise_label)
        row.addWidget(self.slider, 1)
        row.addWidget(self.value_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.title)
        layout.addLayout(top)
        layout.addLayout(row)

        self.slider.valueChanged.connect(self._on_slider)
        self.clear_button.clicked.connect(self.clear)
        self.setVisible(False)

    def path(self) -> str:
        return self._path

    def denoise(self) -> float:
        return round(self.slider.value() / 100, 2)

    def set_denoise(self, value: float) -> None:
        lo, hi = DENOISE_RANGE
        self.slider.setValue(round(max(lo, min(hi, float(value))) * 100))

    def set_image(self, path: str, denoise: float | None = None) -> None:
        """Start from ``path``; ``denoise`` None keeps the slider where it is."""
        self._path = path
        if denoise is not None:
            self.set_denoise(denoise)
        self.name_label.setText(f"Varying {Path(path).name}. New pictures start from it.")
        self.name_label.setToolTip(path)
        self.thumb.clear()
        self.thumb.setText("…")
        self.setVisible(True)
        self.changed.emit()

    def set_preview(self, pixmap: QPixmap | None) -> None:
        if pixmap is None or pixmap.isNull():
            return
        self.thumb.setPixmap(pixmap.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                           Qt.TransformationMode.SmoothTransformation))

    def clear(self) -> None:
        if not self._path and self.isHidden():
            return
        self._path = ""
        self.thumb.clear()
        self.name_label.setText("")
        self.setVisible(False)
        self.changed.emit()

    def _on_slider(self, value: int) -> None:
        self.value_label.setText(f"{value / 100:.2f}")
        self.changed.emit()
