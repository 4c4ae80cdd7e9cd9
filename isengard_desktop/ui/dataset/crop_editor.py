"""The crop editor: one photo with its crop frame, dragged and resized with the aspect of a
chosen training bucket locked (issue 15 item 3).

:class:`CropCanvasWidget` shows the photo fitted to the widget, dims what lies outside the
crop and lets the user move the frame (drag inside it) or resize it (drag a corner); the
geometry is :mod:`~...core.dataset.crops`' (always inside the photo, aspect kept).
:class:`CropEditorDialog` adds the bucket choice and Save / Reset (no crop) / Cancel. The
photo is decoded off the UI thread (a :class:`~...services.background.BackgroundOp`); until
it arrives (or if it cannot be read) the frame is drawn on a grey stand-in of the photo's
size, and editing works the same.

Signals (CropCanvasWidget):
    crop_changed(CropRect): the frame moved or changed size.
"""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import (QComboBox, QDialog, QHBoxLayout, QLabel, QPushButton,
                               QVBoxLayout, QWidget)

from ...core.dataset.crops import CropRect, crop_for_bucket, move_crop, resize_crop
from ...core.db.crops import ImageCrop
from ...core.db.records import ImageRecord
from ...core.training.buckets import nearest_bucket
from ...services.background import BackgroundOp
from ..widgets.image_grid import fitted_rect, paint_crop_overlay
from ..widgets.samples_strip import load_scaled

__all__ = ["CORNERS", "CropCanvasWidget", "CropEditorDialog", "bucket_label"]

CORNERS = ("tl", "tr", "bl", "br")
HANDLE = 10          # px: corner handles are drawn this size and grabbed within it
MARGIN = 12
PREVIEW_BOX = 1600   # the photo is decoded at most this many pixels on its long side


def bucket_label(bucket: tuple[int, int]) -> str:
    w, h = bucket
    shape = "square" if w == h else ("portrait" if h > w else "landscape")
    return f"{w} × {h} ({shape}, {w / h:.2f})"


class CropCanvasWidget(QWidget):
    """The photo with its crop frame; see the module docstring."""

    crop_changed = Signal(object)

    def __init__(self, image_size: tuple[int, int], crop: CropRect,
                 bucket: tuple[int, int], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(360, 360)
        self.setMouseTracking(True)
        self.setToolTip("Drag inside the frame to move it; drag a corner to resize it. The "
                        "frame keeps the chosen bucket's aspect ratio.")
        self._size = image_size
        self._crop = crop
        self._bucket = bucket
        self._image: QImage | None = None
        self._drag: tuple[str, QPointF, CropRect] | None = None   # (mode, start, crop then)

    # -- state -------------------------------------------------------------------------------
    def crop(self) -> CropRect:
        return self._crop

    def bucket(self) -> tuple[int, int]:
        return self._bucket

    def set_image(self, image: QImage) -> None:
        self._image = None if image.isNull() else image
        self.update()

    def set_crop(self, crop: CropRect, bucket: tuple[int, int] | None = None) -> None:
        if bucket is not None:
            self._bucket = bucket
        if crop != self._crop:
            self._crop = crop
            self.crop_changed.emit(crop)
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(720, 640)

    # -- geometry ----------------------------------------------------------------------------
    def picture_rect(self) -> QRect:
        """Where the photo is drawn (fitted, centred, with a margin)."""
        return fitted_rect(QSize(*self._size),
                           self.rect().adjusted(MARGIN, MARGIN, -MARGIN, -MARGIN))

    def _scale(self) -> tuple[float, float]:
        pic = self.picture_rect()
        return pic.width() / self._size[0], pic.height() / self._size[1]

    def widget_point(self, x: float, y: float) -> QPoint:
        """The widget position of the photo's pixel (x, y)."""
        pic, (sx, sy) = self.picture_rect(), self._scale()
        return QPoint(round(pic.left() + x * sx), round(pic.top() + y * sy))

    def image_point(self, pos: QPointF | QPoint) -> QPointF:
        """The photo's pixel under the widget position ``pos``."""
        pic, (sx, sy) = self.picture_rect(), self._scale()
        return QPointF((pos.x() - pic.left()) / sx, (pos.y() - pic.top()) / sy)

    def corner_point(self, corner: str) -> QPoint:
        """Where the ``corner`` handle ("tl", "tr", "bl", "br") of the frame is drawn."""
        c = self._crop
        x = c.right if corner[1] == "r" else c.x
        y = c.bottom if corner[0] == "b" else c.y
        return self.widget_point(x, y)

    def _hit(self, pos: QPointF) -> str | None:
        for corner in CORNERS:
            p = self.corner_point(corner)
            if abs(pos.x() - p.x()) <= HANDLE and abs(pos.y() - p.y()) <= HANDLE:
                return corner
        point = self.image_point(pos)
        c = self._crop
        if c.x <= point.x() <= c.right and c.y <= point.y() <= c.bottom:
            return "move"
        return None

    # -- painting ----------------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        pic = self.picture_rect()
        if self._image is not None:
            painter.drawImage(pic, self._image)
        else:
            painter.fillRect(pic, QColor(90, 90, 90))
        inner = paint_crop_overlay(painter, pic, self._size, self._crop)
        painter.setPen(QPen(QColor("white"), 2))
        painter.drawRect(inner.adjusted(0, 0, -1, -1))
        painter.setBrush(QColor("white"))
        for corner in CORNERS:
            p = self.corner_point(corner)
            painter.drawRect(QRect(p.x() - HANDLE // 2, p.y() - HANDLE // 2, HANDLE, HANDLE))
        painter.end()

    # -- dragging ----------------------------------------------------------------------------
    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return super().mousePressEvent(event)
        mode = self._hit(event.position())
        if mode is not None:
            self._drag = (mode, self.image_point(event.position()), self._crop)
            event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._drag is None:
            mode = self._hit(event.position())
            cursor = (Qt.CursorShape.SizeAllCursor if mode == "move" else
                      Qt.CursorShape.SizeFDiagCursor if mode in ("tl", "br") else
                      Qt.CursorShape.SizeBDiagCursor if mode in ("tr", "bl") else
                      Qt.CursorShape.ArrowCursor)
            self.setCursor(cursor)
            return
        mode, start, before = self._drag
        point = self.image_point(event.position())
        w, h = self._size
        if mode == "move":
            crop = move_crop(before, point.x() - start.x(), point.y() - start.y(), w, h)
        else:
            crop = resize_crop(before, mode, point.x(), point.y(), self._bucket, w, h)
        self.set_crop(crop)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._drag is not None and event.button() == Qt.MouseButton.LeftButton:
            self.mouseMoveEvent(event)
            self._drag = None
            event.accept()
            return
        super().mouseReleaseEvent(event)


class CropEditorDialog(QDialog):
    """Adjust one photo's crop: the frame, the bucket (aspect) it has, Save / Reset / Cancel.
    After ``accepted``, :meth:`result_crop` is the crop to store (``"manual"``), or None for
    Reset (the whole photo is used)."""

    def __init__(self, record: ImageRecord, crop: ImageCrop | None,
                 buckets: list[tuple[int, int]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Adjust crop — {record.filename}")
        self.record = record
        size = (record.width, record.height)
        if crop is not None and crop.bucket in buckets:
            bucket, rect = crop.bucket, crop.rect
        else:
            bucket = nearest_bucket(crop.rect.width, crop.rect.height, buckets) if crop else \
                nearest_bucket(record.width, record.height, buckets)
            rect = crop_for_bucket(crop.rect if crop else None, bucket, *size)
        self._reset = False

        self.canvas = CropCanvasWidget(size, rect, bucket)
        self.bucket_combo = QComboBox()
        self.bucket_combo.setToolTip(
            "The training bucket (size and aspect ratio) this crop is made for. The frame "
            "keeps its aspect; the trainer scales the crop to this bucket without cutting it "
            "again.")
        self._buckets = list(buckets)
        for b in buckets:
            self.bucket_combo.addItem(bucket_label(b))
        self.bucket_combo.setCurrentIndex(buckets.index(bucket))
        self.size_label = QLabel()
        self.size_label.setProperty("subtle", True)
        self.note = QLabel("" if crop is not None else
                           "This photo has no crop yet: the whole photo is used. Save to crop "
                           "it to this frame.")
        self.note.setWordWrap(True)
        self.save_button = QPushButton("Save crop")
        self.save_button.setDefault(True)
        self.reset_button = QPushButton("Reset (no crop)")
        self.reset_button.setToolTip("Remove the crop: the trainer uses the whole photo (the "
                                     "photo's file is never changed either way).")
        self.cancel_button = QPushButton("Cancel")

        top = QHBoxLayout()
        top.addWidget(QLabel("Bucket:"))
        top.addWidget(self.bucket_combo, 1)
        top.addWidget(self.size_label)
        buttons = QHBoxLayout()
        buttons.addWidget(self.reset_button)
        buttons.addStretch(1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.note)
        layout.addLayout(buttons)

        self.bucket_combo.currentIndexChanged.connect(self._on_bucket)
        self.canvas.crop_changed.connect(self._show_size)
        self.save_button.clicked.connect(self.accept)
        self.cancel_button.clicked.connect(self.reject)
        self.reset_button.clicked.connect(self._on_reset)
        self._show_size(rect)
        BackgroundOp(parent=self, op=lambda: load_scaled(str(record.path), PREVIEW_BOX)) \
            .success(self.canvas.set_image) \
            .failure(lambda exc: self.note.setText(f"{record.filename} could not be shown "
                                                   f"({exc}); the frame still works.")) \
            .run()

    def _on_bucket(self, index: int) -> None:
        if not 0 <= index < len(self._buckets):
            return
        bucket = self._buckets[index]
        crop = crop_for_bucket(self.canvas.crop(), bucket, self.record.width,
                               self.record.height)
        self.canvas.set_crop(crop, bucket)

    def _show_size(self, crop: CropRect) -> None:
        self.size_label.setText(f"{crop.width} × {crop.height} px at ({crop.x}, {crop.y})")

    def _on_reset(self) -> None:
        self._reset = True
        self.accept()

    def result_crop(self) -> ImageCrop | None:
        """What to store after ``accepted``: the frame ("manual"), or None after Reset."""
        if self._reset:
            return None
        return ImageCrop(self.canvas.crop(), self.canvas.bucket(), "manual")
