"""A/B view: two pictures over each other with a movable split (the checkpoint comparison and
the LoRA explorer use it)."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QRect, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPaintEvent
from PySide6.QtWidgets import QWidget

__all__ = ["ABView"]


class ABView(QWidget):
    """Two pictures over each other; the split slider shows A left of the line, B right."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.a = QImage()
        self.b = QImage()
        self.split = 0.5
        self.setMinimumSize(240, 200)

    def set_images(self, a: QImage, b: QImage) -> None:
        self.a, self.b = a, b
        self.update()

    def set_split(self, value: float) -> None:
        self.split = min(1.0, max(0.0, value))
        self.update()

    def _target(self, image: QImage) -> QRect:
        size = image.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
        return QRect(QPoint((self.width() - size.width()) // 2,
                            (self.height() - size.height()) // 2), size)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt)
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("#111317"))
        x = int(self.width() * self.split)
        if not self.a.isNull():
            painter.setClipRect(QRect(0, 0, x, self.height()))
            painter.drawImage(self._target(self.a), self.a)
        if not self.b.isNull():
            painter.setClipRect(QRect(x, 0, self.width() - x, self.height()))
            painter.drawImage(self._target(self.b), self.b)
        painter.setClipping(False)
        painter.setPen(QColor("#e6e6e6"))
        painter.drawLine(x, 0, x, self.height())
        painter.end()
