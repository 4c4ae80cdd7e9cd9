"""What every picture tile of a triage view shares: a square thumbnail, the "current" frame the
keyboard moves, and a click that names the picture (``StagingTileWidget`` in the Generate
staging strip, ``FunnelTileWidget`` in the draft funnel). :func:`set_style_property` re-applies
the style sheet after a dynamic property changes (Qt reads ``[prop="value"]`` selectors only
when a widget is polished); :func:`stepped_id` is the arrow keys' step through the tiles."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QMouseEvent, QPixmap
from PySide6.QtWidgets import QFrame, QLabel, QWidget

from ...core.comfy.jobs import GalleryItem

__all__ = ["PictureTile", "set_style_property", "stepped_id"]


def stepped_id(ids: Sequence[int], current: int | None, delta: int) -> int | None:
    """Keyboard triage's arrow keys: the id ``delta`` places from ``current`` in ``ids``
    (clamped to the ends; the first when ``current`` is not shown; None when none is)."""
    if not ids:
        return None
    if current is None or current not in ids:
        return ids[0]
    return ids[max(0, min(len(ids) - 1, list(ids).index(current) + delta))]


def set_style_property(widget: QWidget, name: str, value: Any) -> None:
    """Set a dynamic property the style sheet selects on, and restyle ``widget`` when it
    changed."""
    if widget.property(name) == value:
        return
    widget.setProperty(name, value)
    widget.style().unpolish(widget)
    widget.style().polish(widget)


class PictureTile(QFrame):
    """A tile showing ``item`` in a ``side``-pixel square; ``clicked(item id)`` on a press."""

    clicked = Signal(int)

    def __init__(self, item: GalleryItem, side: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.item = item
        self.side = side
        self.setProperty("current", False)
        self.image = QLabel("…")
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setFixedSize(side, side)

    def set_pixmap(self, pix: QPixmap | None) -> None:
        """Show the thumbnail (kept in proportion); a missing one leaves the placeholder."""
        if pix is None or pix.isNull():
            return
        self.image.setPixmap(pix.scaled(QSize(self.side, self.side),
                                        Qt.AspectRatioMode.KeepAspectRatio,
                                        Qt.TransformationMode.SmoothTransformation))

    def set_current(self, current: bool) -> None:
        """The keyboard's current picture gets the highlighted frame."""
        set_style_property(self, "current", current)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self.clicked.emit(self.item.id)
        super().mousePressEvent(event)
