"""A model/view grid of images: one model row per image, painted by a delegate.

No widget per image, thumbnails requested only for painted items, so 10,000 images scroll
smoothly. Every tile shows a checkbox that mirrors (and toggles) its selection. Given a
``crop_for`` (record → crop rectangle or None), a tile dims what lies outside the photo's crop.

Signals (ImageGridWidget):
    files_dropped(list[Path]): files/folders dropped from the file manager onto the grid.
    selection_changed(list[int]): ids of the selected images.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from PySide6.QtCore import (QAbstractListModel, QItemSelectionModel, QModelIndex,
                            QPoint, QRect, QSize, Qt, Signal)
from PySide6.QtGui import QColor, QImage, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QListView, QStyle, QStyledItemDelegate,
                               QStyleOptionViewItem, QWidget)

from .qt_types import ModelIndex
from ...core.dataset.crops import CropRect
from ...core.db.records import ImageRecord
from ...services.thumbnails import ThumbnailService
from .drop_zone import local_paths

RecordRole = Qt.ItemDataRole.UserRole + 1
CropRole = Qt.ItemDataRole.UserRole + 2     # the photo's crop (a CropRect) or None
TILE = QSize(176, 212)
THUMB_BOX = 160
CHECK_SIZE = 18


class ImageListModel(QAbstractListModel):
    """Rows are :class:`ImageRecord`; thumbnails come from the :class:`ThumbnailService`."""

    def __init__(self, thumbnails: ThumbnailService,
                 label_for: Callable[[ImageRecord], str] | None = None,
                 parent: QWidget | None = None, *,
                 crop_for: Callable[[ImageRecord], CropRect | None] | None = None) -> None:
        super().__init__(parent)
        self._thumbs = thumbnails
        self._crop_for = crop_for
        self._records: list[ImageRecord] = []
        self._rows_by_sha: dict[str, list[int]] = defaultdict(list)
        self._label_for = label_for
        thumbnails.thumbnail_ready.connect(self._on_thumbnail_ready)

    def set_records(self, records: Sequence[ImageRecord]) -> None:
        """Show ``records``. Same images in the same order (e.g. a caption edit) update in
        place, so the view keeps its scroll position and selection."""
        if len(records) == len(self._records) and all(
                a.id == b.id for a, b in zip(records, self._records, strict=True)):
            self._records = list(records)
            if self._records:
                self.dataChanged.emit(self.index(0), self.index(len(self._records) - 1))
            return
        self.beginResetModel()
        self._records = list(records)
        self._rows_by_sha = defaultdict(list)
        for row, record in enumerate(self._records):
            self._rows_by_sha[record.sha256].append(row)
        self.endResetModel()

    def records(self) -> list[ImageRecord]:
        return list(self._records)

    def record(self, row: int) -> ImageRecord:
        return self._records[row]

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._records)

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole):  # noqa: ANN201
        if not index.isValid():
            return None
        record = self._records[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return record.filename
        if role == Qt.ItemDataRole.DecorationRole:
            return self._thumbs.pixmap(record.sha256, record.path)
        if role == Qt.ItemDataRole.ToolTipRole:
            label = self._label_for(record) if self._label_for else ""
            caption = record.caption or "(no caption)"
            crop = self._crop_for(record) if self._crop_for else None
            cropped = (f"\nCropped to {crop.width} × {crop.height} px at ({crop.x}, {crop.y})"
                       if crop else "")
            return (f"{record.filename}\n{record.width} × {record.height} px{cropped}"
                    f"{chr(10) + label if label else ''}\n{caption}")
        if role == RecordRole:
            return record
        if role == CropRole:
            return self._crop_for(record) if self._crop_for else None
        return None

    def flags(self, index: ModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.ItemIsDropEnabled
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    def _on_thumbnail_ready(self, sha256: str, _image: QImage) -> None:
        for row in self._rows_by_sha.get(sha256, ()):
            idx = self.index(row)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])


def paint_thumbnail(painter: QPainter, index: ModelIndex, rect: QRect, size: int,
                    pal: QPalette) -> QRect:
    """Paint the tile's thumbnail (its DecorationRole pixmap, or a "…" placeholder) fitted
    into a ``size`` square centred at the top of ``rect``; that square. Shared with the
    gallery's tiles."""
    box = QRect(rect.left() + (rect.width() - size) // 2, rect.top() + 6, size, size)
    pix = index.data(Qt.ItemDataRole.DecorationRole)
    if pix is not None and not pix.isNull():
        painter.drawPixmap(fitted_rect(pix.size(), box), pix)
    else:
        painter.fillRect(box, QColor(255, 255, 255, 10))
        painter.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, "…")
    return box


def fitted_rect(size: QSize, box: QRect) -> QRect:
    """Where a picture of ``size`` is drawn fitted (aspect kept) and centred in ``box``."""
    scaled = size.scaled(box.size(), Qt.AspectRatioMode.KeepAspectRatio)
    target = QRect(0, 0, scaled.width(), scaled.height())
    target.moveCenter(box.center())
    return target


def paint_crop_overlay(painter: QPainter, picture: QRect, image_size: tuple[int, int],
                       crop: CropRect) -> QRect:
    """Dim what lies outside ``crop`` (pixels of an ``image_size`` photo) on the photo drawn
    at ``picture``, and outline the crop; returns the crop's rectangle on screen."""
    sx, sy = picture.width() / image_size[0], picture.height() / image_size[1]
    inner = QRect(picture.left() + round(crop.x * sx), picture.top() + round(crop.y * sy),
                  max(1, round(crop.width * sx)), max(1, round(crop.height * sy)))
    shade = QColor(0, 0, 0, 150)
    painter.fillRect(QRect(picture.left(), picture.top(), picture.width(),
                           inner.top() - picture.top()), shade)
    painter.fillRect(QRect(picture.left(), inner.bottom() + 1, picture.width(),
                           picture.bottom() - inner.bottom()), shade)
    painter.fillRect(QRect(picture.left(), inner.top(), inner.left() - picture.left(),
                           inner.height()), shade)
    painter.fillRect(QRect(inner.right() + 1, inner.top(), picture.right() - inner.right(),
                           inner.height()), shade)
    painter.setPen(QPen(QColor(255, 255, 255, 190), 1))
    painter.setBrush(Qt.BrushStyle.NoBrush)
    painter.drawRect(inner.adjusted(0, 0, -1, -1))
    return inner


class ImageTileDelegate(QStyledItemDelegate):
    """Paints a tile: thumbnail, a selection checkbox, file name and caption."""

    def sizeHint(self, option: QStyleOptionViewItem, index: ModelIndex) -> QSize:
        return TILE

    @staticmethod
    def checkbox_rect(tile: QRect) -> QRect:
        return QRect(tile.left() + 8, tile.top() + 8, CHECK_SIZE, CHECK_SIZE)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # Antialiased frames and checkboxes are drawn once and reused: painting a screen of
        # tiles then costs a few pixmap blits instead of path rendering per tile.
        self._frames: dict[tuple[int, int, bool, bool], QPixmap] = {}
        self._checks: dict[bool, QPixmap] = {}

    def _frame(self, size: QSize, selected: bool, hovered: bool, pal: QPalette) -> QPixmap:
        key = (size.width(), size.height(), selected, hovered)
        pix = self._frames.get(key)
        if pix is None:
            pix = QPixmap(size)
            pix.fill(Qt.GlobalColor.transparent)
            p = QPainter(pix)
            p.setRenderHint(QPainter.RenderHint.Antialiasing)
            bg = pal.color(QPalette.ColorRole.Base)
            p.setBrush(bg.lighter(120) if hovered else bg)
            p.setPen(QPen(pal.color(QPalette.ColorRole.Highlight), 2) if selected
                     else QPen(QColor(255, 255, 255, 20), 1))
            p.drawRoundedRect(QRect(QPoint(0, 0), size).adjusted(1, 1, -1, -1), 6, 6)
            p.end()
            self._frames[key] = pix
        return pix

    def _checkbox(self, checked: bool, pal: QPalette) -> QPixmap:
        pix = self._checks.get(checked)
        if pix is None:
            pix = QPixmap(CHECK_SIZE + 2, CHECK_SIZE + 2)
            pix.fill(Qt.GlobalColor.transparent)
            p = QPainter(pix)
            p.setRenderHint(QPainter.RenderHint.Antialiasing)
            cb = QRect(1, 1, CHECK_SIZE, CHECK_SIZE)
            p.setPen(QPen(QColor(255, 255, 255, 200), 1.5))
            p.setBrush(pal.color(QPalette.ColorRole.Highlight) if checked
                       else QColor(0, 0, 0, 140))
            p.drawRoundedRect(cb, 4, 4)
            if checked:
                p.setPen(QPen(QColor("white"), 2))
                p.drawLine(cb.left() + 4, cb.center().y(), cb.center().x() - 1, cb.bottom() - 4)
                p.drawLine(cb.center().x() - 1, cb.bottom() - 4, cb.right() - 3, cb.top() + 4)
            p.end()
            self._checks[checked] = pix
        return pix

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: ModelIndex) -> None:
        record: ImageRecord = index.data(RecordRole)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        hovered = bool(option.state & QStyle.StateFlag.State_MouseOver)
        pal = option.palette
        rect = option.rect.adjusted(4, 4, -4, -4)
        painter.drawPixmap(rect.topLeft(), self._frame(rect.size(), selected, hovered, pal))

        box = paint_thumbnail(painter, index, rect, THUMB_BOX, pal)
        crop = index.data(CropRole)
        pix = index.data(Qt.ItemDataRole.DecorationRole) if crop is not None else None
        if pix is not None and not pix.isNull() and record.width and record.height:
            paint_crop_overlay(painter, fitted_rect(pix.size(), box),
                               (record.width, record.height), crop)

        cb = self.checkbox_rect(option.rect)
        painter.drawPixmap(cb.topLeft() - QPoint(1, 1), self._checkbox(selected, pal))

        text_rect = QRect(rect.left() + 8, box.bottom() + 4, rect.width() - 16, 18)
        fm = option.fontMetrics
        painter.setPen(pal.color(QPalette.ColorRole.Text))
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                         fm.elidedText(record.filename, Qt.TextElideMode.ElideMiddle,
                                       text_rect.width()))
        cap_rect = text_rect.translated(0, 17)
        painter.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
        painter.drawText(cap_rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                         fm.elidedText(record.caption or "no caption",
                                       Qt.TextElideMode.ElideRight, cap_rect.width()))


class ImageGridWidget(QListView):
    files_dropped = Signal(list)
    selection_changed = Signal(list)

    def __init__(self, thumbnails: ThumbnailService,
                 label_for: Callable[[ImageRecord], str] | None = None,
                 parent: QWidget | None = None, *,
                 crop_for: Callable[[ImageRecord], CropRect | None] | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ImageGrid")
        self.grid_model = ImageListModel(thumbnails, label_for, self, crop_for=crop_for)
        self.setModel(self.grid_model)
        self.setItemDelegate(ImageTileDelegate(self))
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(500)
        self.setGridSize(TILE)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.verticalScrollBar().setSingleStep(24)
        self.setMouseTracking(True)
        self.setAcceptDrops(True)
        self.setDragEnabled(False)
        self.setDropIndicatorShown(False)
        self.viewport().setAcceptDrops(True)
        self.selectionModel().selectionChanged.connect(self._emit_selection)
        self.empty_text = "No photos yet — drop photos or folders here."

    def paintEvent(self, event) -> None:  # noqa: ANN001
        super().paintEvent(event)
        if self.grid_model.rowCount() == 0 and self.empty_text:
            painter = QPainter(self.viewport())
            painter.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(self.viewport().rect().adjusted(24, 24, -24, -24),
                             Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                             self.empty_text)
            painter.end()

    # -- data --------------------------------------------------------------------------------
    def set_records(self, records: Sequence[ImageRecord]) -> None:
        """Show ``records``, keeping the selection of images that are still there."""
        keep = set(self.selected_ids())
        self.selectionModel().blockSignals(True)
        self.grid_model.set_records(records)
        for row, record in enumerate(self.grid_model.records()):
            if record.id in keep:
                self.selectionModel().select(self.grid_model.index(row),
                                             QItemSelectionModel.SelectionFlag.Select)
        self.selectionModel().blockSignals(False)
        self._emit_selection()

    def selected_ids(self) -> list[int]:
        return [self.grid_model.record(i.row()).id
                for i in sorted(self.selectionModel().selectedIndexes(), key=lambda i: i.row())]

    def select_ids(self, ids: Sequence[int], clear: bool = True) -> None:
        sel = self.selectionModel()
        if clear:
            sel.clearSelection()
        wanted = set(ids)
        first = None
        for row, record in enumerate(self.grid_model.records()):
            if record.id in wanted:
                idx = self.grid_model.index(row)
                sel.select(idx, QItemSelectionModel.SelectionFlag.Select)
                first = first or idx
        if first is not None:
            self.scrollTo(first)

    def _emit_selection(self, *_: object) -> None:
        self.selection_changed.emit(self.selected_ids())

    # -- checkbox clicks toggle without clearing the rest --------------------------------------
    def mousePressEvent(self, event) -> None:  # noqa: ANN001
        idx = self.indexAt(event.position().toPoint())
        if (idx.isValid() and event.button() == Qt.MouseButton.LeftButton and
                ImageTileDelegate.checkbox_rect(self.visualRect(idx)).adjusted(-4, -4, 4, 4)
                .contains(event.position().toPoint())):
            self.selectionModel().select(idx, QItemSelectionModel.SelectionFlag.Toggle)
            self.selectionModel().setCurrentIndex(idx, QItemSelectionModel.SelectionFlag.NoUpdate)
            event.accept()
            return
        super().mousePressEvent(event)

    def checkbox_point(self, row: int) -> QPoint:
        """Where a user clicks to tick the checkbox of ``row`` (viewport coordinates)."""
        return ImageTileDelegate.checkbox_rect(
            self.visualRect(self.grid_model.index(row))).center()

    # -- drops from the file manager ------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: ANN001
        if local_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: ANN001
        if local_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event) -> None:  # noqa: ANN001
        paths = local_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.files_dropped.emit(paths)
        else:
            event.ignore()

