"""The generation gallery: a grid of generated images (newest first) and a details pane with
each image's parameters and actions.

Thumbnails come from the shared :class:`ThumbnailService` (decoded off the UI thread, cached
on disk); generated files have no sha256 in the library, so they are keyed by a hash of their
path (:func:`thumb_key`).

Signals (GalleryWidget):
    reuse_requested(object): "Reuse parameters" on a :class:`GalleryItem`.
    video_requested(object): "To Video" on a :class:`GalleryItem` (a keyframe for the Video tab).
    more_like_requested(object, float, int): "More like this" on a GalleryItem, with the
        strength (denoise) and count chosen beside the button (image to image, nearby seeds).
    lineage_requested(int): the details show a picture: its lineage tree is wanted (the owner
        answers with ``details.lineage.set_rows``).
    delete_requested(object): "Delete" (or the Delete key) on a GalleryItem: to the OS trash.
    message_posted(str): a short result for the status bar ("Seed 123 copied").
    selection_changed(object): the selected GalleryItem, or None.
"""

from __future__ import annotations

import hashlib
from html import escape
from pathlib import Path
from typing import Any
from collections.abc import Sequence

from PySide6.QtCore import QAbstractListModel, QModelIndex, QRect, QSize, Qt, QUrl, Signal
from PySide6.QtGui import (QColor, QDesktopServices, QImage, QKeySequence, QPainter, QPalette,
                           QPen, QPixmap, QShortcut)
from PySide6.QtWidgets import (QAbstractItemView, QApplication, QHBoxLayout, QLabel, QListView,
                               QPushButton, QScrollArea, QSplitter, QStyle, QStyledItemDelegate,
                               QStyleOptionViewItem, QVBoxLayout, QWidget)

from .qt_types import ModelIndex
from ...core.comfy.funnel import STAGE_TITLES
from ...core.comfy.jobs import GalleryItem
from ...services.thumbnails import ThumbnailService
from .image_grid import paint_thumbnail
from .lineage_tree import LineageTreeWidget
from .more_like_this import MoreLikeThisWidget

ItemRole = Qt.ItemDataRole.UserRole + 1
TILE = QSize(180, 206)
THUMB_BOX = 162
FAMILY_WORDS = {"sd15": "SD 1.5", "sdxl": "SDXL", "flux-dev": "Flux dev",
                "flux-schnell": "Flux schnell", "chroma": "Chroma"}


def thumb_key(path: str | Path) -> str:
    """The ThumbnailService key of a generated file (a hex digest of its path)."""
    return hashlib.sha256(str(path).encode("utf-8", "surrogatepass")).hexdigest()


def item_summary(item: GalleryItem) -> str:
    """One short line: size and quality tier (the seed is in the details)."""
    tier = (item.params or {}).get("tier")
    return f"{item.width}×{item.height}" + (f" · {tier}" if tier else "")


def details_html(item: GalleryItem, lora_name: str = "") -> str:
    """The details pane's text: every parameter needed to make the image again."""
    p: dict[str, Any] = dict(item.params or {})
    rows: list[tuple[str, str]] = [("Prompt", item.prompt or "—")]
    if item.negative:
        rows.append(("Negative", item.negative))
    rows.append(("Seed", str(item.seed)))
    if item.stage:
        rows.append(("Explore stage", STAGE_TITLES.get(item.stage, item.stage)
                     + (" · kept" if item.pick == "keep" else "")))
    rows.append(("Size", f"{item.width} × {item.height} px"
                 + (f" ({p['aspect']})" if p.get("aspect") else "")))
    family = FAMILY_WORDS.get(str(p.get("family", "")), str(p.get("family", "")))
    rows.append(("Model", item.model + (f" · {family}" if family else "")))
    tier_bits = [str(p[k]) for k in ("tier",) if p.get(k)]
    for key, word in (("steps", "steps"), ("cfg", "CFG"), ("sampler", ""), ("scheduler", "")):
        if p.get(key) not in (None, ""):
            tier_bits.append(f"{p[key]} {word}".strip() if key != "cfg" else f"CFG {p[key]}")
    if tier_bits:
        rows.append(("Quality", " · ".join(tier_bits)))
    if item.lora_path:
        name = lora_name or Path(item.lora_path).name
        rows.append(("LoRA", f"{name}, strength {item.lora_strength:.2f}"))
    features = p.get("features")
    if features:
        rows.append(("Extras", ", ".join(sorted(str(f) for f in features))))
    if item.parent_image:
        denoise = (p.get("feature_inputs") or {}).get("denoise")
        rows.append(("Varied from", Path(item.parent_image).name
                     + (f", denoise {denoise}" if denoise is not None else "")))
    rows.append(("Workflow", item.workflow))
    if item.server:
        rows.append(("Server", item.server))
    if item.created:
        rows.append(("Made", item.created.replace("T", " ")[:19]))
    rows.append(("File", item.path))
    cells = "".join(
        f"<tr><td style='color:#8b93a3; padding:2px 10px 2px 0; vertical-align:top'>"
        f"{escape(k)}</td><td style='padding:2px 0'>{escape(v)}</td></tr>" for k, v in rows)
    return f"<table cellspacing='0'>{cells}</table>"


class GalleryListModel(QAbstractListModel):
    """Rows are :class:`GalleryItem` (newest first)."""

    def __init__(self, thumbnails: ThumbnailService, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._thumbs = thumbnails
        self._items: list[GalleryItem] = []
        self._rows: dict[str, int] = {}
        thumbnails.thumbnail_ready.connect(self._on_thumbnail_ready)

    def set_items(self, items: Sequence[GalleryItem]) -> None:
        if [i.id for i in items] == [i.id for i in self._items]:
            self._items = list(items)
            if self._items:
                self.dataChanged.emit(self.index(0), self.index(len(self._items) - 1))
            return
        self.beginResetModel()
        self._items = list(items)
        self._rows = {thumb_key(i.path): row for row, i in enumerate(self._items)}
        self.endResetModel()

    def items(self) -> list[GalleryItem]:
        return list(self._items)

    def item(self, row: int) -> GalleryItem:
        return self._items[row]

    def row_of(self, item_id: int) -> int:
        return next((r for r, i in enumerate(self._items) if i.id == item_id), -1)

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._items)

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole):  # noqa: ANN201
        if not index.isValid():
            return None
        item = self._items[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return item_summary(item)
        if role == Qt.ItemDataRole.DecorationRole:
            return self._thumbs.pixmap(thumb_key(item.path), Path(item.path))
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{item.prompt}\n{item_summary(item)} · seed {item.seed}\n{item.model}"
        if role == ItemRole:
            return item
        return None

    def _on_thumbnail_ready(self, key: str, _image: QImage) -> None:
        row = self._rows.get(key)
        if row is not None and row < len(self._items):
            idx = self.index(row)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])


class GalleryTileDelegate(QStyledItemDelegate):
    """A framed thumbnail with its seed and size underneath."""

    def sizeHint(self, option: QStyleOptionViewItem, index: ModelIndex) -> QSize:
        return TILE

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: ModelIndex) -> None:
        item: GalleryItem = index.data(ItemRole)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        hovered = bool(option.state & QStyle.StateFlag.State_MouseOver)
        pal = option.palette
        rect = option.rect.adjusted(4, 4, -4, -4)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        bg = pal.color(QPalette.ColorRole.Base)
        painter.setBrush(bg.lighter(120) if hovered else bg)
        painter.setPen(QPen(pal.color(QPalette.ColorRole.Highlight), 2) if selected
                       else QPen(QColor(255, 255, 255, 20), 1))
        painter.drawRoundedRect(rect, 6, 6)
        box = paint_thumbnail(painter, index, rect, THUMB_BOX, pal)
        text_rect = QRect(rect.left() + 8, box.bottom() + 6, rect.width() - 16, 18)
        painter.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignCenter,
                         option.fontMetrics.elidedText(item_summary(item),
                                                       Qt.TextElideMode.ElideRight,
                                                       text_rect.width()))
        painter.restore()


class GalleryDetailsWidget(QWidget):
    """The selected image: a larger preview, its parameters and the actions on it."""

    def __init__(self, thumbnails: ThumbnailService, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("GalleryDetails")
        self._thumbs = thumbnails
        self.item: GalleryItem | None = None
        self.preview = QLabel()
        self.preview.setObjectName("GalleryPreview")
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumHeight(120)
        self.preview.setMaximumHeight(170)
        self.text = QLabel("Select an image to see how it was made.")
        self.text.setObjectName("GalleryDetailsText")
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.text.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        scroll = QScrollArea()
        scroll.setWidget(self.text)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.reuse_button = QPushButton("Reuse parameters")
        self.reuse_button.setProperty("primary", True)
        self.copy_seed_button = QPushButton("Copy seed")
        self.video_button = QPushButton("To Video")
        self.open_file_button = QPushButton("Open file")
        self.open_folder_button = QPushButton("Open folder")
        self.delete_button = QPushButton("Delete")
        self._tips = {
            self.reuse_button: "Fill the form with this image's prompt, model, size, quality, "
                               "seed and LoRA, to make it again or vary it.",
            self.delete_button: "Move this image to the trash (you can restore it from there) "
                                "and remove it from the gallery. Key: Delete.",
            self.copy_seed_button: "Copy this image's seed to the clipboard.",
            self.video_button: "Make a clip from this picture: opens the Video tab with it as "
                               "the start keyframe (press it on more pictures to add them as "
                               "the next keyframes).",
            self.open_file_button: "Open the PNG in your image viewer. Its parameters are "
                                   "stored inside it (A1111, ComfyUI and Civitai read them).",
            self.open_folder_button: "Show the folder that holds this image.",
        }
        grid = QVBoxLayout()
        grid.setSpacing(6)
        row1, row2 = QHBoxLayout(), QHBoxLayout()
        row1.addWidget(self.reuse_button, 1)
        row1.addWidget(self.copy_seed_button)
        row1.addWidget(self.video_button)
        row2.addWidget(self.open_file_button, 1)
        row2.addWidget(self.open_folder_button, 1)
        row2.addWidget(self.delete_button)
        # the former "Vary": image to image from this picture, nearby seeds, low denoise
        self.more = MoreLikeThisWidget(two_rows=True)
        self.lineage = LineageTreeWidget()
        self.lineage.setVisible(False)
        grid.addWidget(self.more)
        grid.addLayout(row1)
        grid.addLayout(row2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 0, 0, 0)
        layout.addWidget(self.preview)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.lineage)
        layout.addLayout(grid)
        thumbnails.thumbnail_ready.connect(self._on_thumbnail_ready)
        self.show_item(None)

    def show_item(self, item: GalleryItem | None, lora_name: str = "") -> None:
        self.item = item
        for button, tip in self._tips.items():
            button.setEnabled(item is not None)
            button.setToolTip(tip if item is not None else "Select an image in the gallery "
                                                           "first.")
        self.preview.setVisible(item is not None)
        self.more.set_available(item is not None, "Select an image in the gallery first.")
        if item is None or not self.lineage.rows or \
                item.id not in {r.id for r in self.lineage.rows}:
            self.lineage.set_rows([])
        if item is None:
            self.text.setText("<span style='color:#8b93a3'>Select an image to see how it was "
                              "made.</span>")
            self.preview.clear()
            return
        self.text.setText(details_html(item, lora_name))
        self._set_preview(self._thumbs.pixmap(thumb_key(item.path), Path(item.path)))

    def _set_preview(self, pix: QPixmap | None) -> None:
        if pix is None or pix.isNull():
            self.preview.setText("…")
            return
        box = QSize(max(self.preview.width(), 120), self.preview.maximumHeight())
        self.preview.setPixmap(pix.scaled(box, Qt.AspectRatioMode.KeepAspectRatio,
                                          Qt.TransformationMode.SmoothTransformation))

    def _on_thumbnail_ready(self, key: str, _image: QImage) -> None:
        if self.item is not None and key == thumb_key(self.item.path):
            self._set_preview(self._thumbs.pixmap(key, Path(self.item.path)))


class GalleryWidget(QWidget):
    reuse_requested = Signal(object)
    video_requested = Signal(object)
    more_like_requested = Signal(object, float, int)
    lineage_requested = Signal(int)
    delete_requested = Signal(object)
    message_posted = Signal(str)
    selection_changed = Signal(object)

    def __init__(self, thumbnails: ThumbnailService, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Gallery")
        self.grid = QListView()
        self.grid.setObjectName("GalleryGrid")
        self.model = GalleryListModel(thumbnails, self)
        self.grid.setModel(self.model)
        self.grid.setItemDelegate(GalleryTileDelegate(self.grid))
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setUniformItemSizes(True)
        self.grid.setGridSize(TILE)
        self.grid.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.grid.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.grid.setMouseTracking(True)
        self.grid.setToolTip("Your generated images, newest first. Select one to see its "
                             "parameters.")
        self.details = GalleryDetailsWidget(thumbnails)
        self.lora_names: dict[str, str] = {}
        self.empty_label = QLabel("No pictures yet. Write a prompt and press Generate; every "
                                  "image lands here with the settings that made it.")
        self.empty_label.setProperty("subtle", True)
        self.empty_label.setWordWrap(True)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.addWidget(self.empty_label)
        lv.addWidget(self.grid, 1)
        split = QSplitter()
        split.addWidget(left)
        split.addWidget(self.details)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setChildrenCollapsible(False)
        split.setSizes([560, 320])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(split)

        self.grid.selectionModel().currentChanged.connect(lambda *_: self._on_current())
        self.details.reuse_button.clicked.connect(self._reuse)
        self.details.more.requested.connect(self._more_like)
        self.details.lineage.picture_activated.connect(self.select_item)
        self.details.delete_button.clicked.connect(lambda: self._emit(self.delete_requested))
        delete_key = QShortcut(QKeySequence(QKeySequence.StandardKey.Delete), self.grid)
        delete_key.setContext(Qt.ShortcutContext.WidgetShortcut)
        delete_key.activated.connect(lambda: self._emit(self.delete_requested))
        self.details.copy_seed_button.clicked.connect(self._copy_seed)
        self.details.video_button.clicked.connect(lambda: self._emit(self.video_requested))
        self.details.open_file_button.clicked.connect(lambda: self._open(folder=False))
        self.details.open_folder_button.clicked.connect(lambda: self._open(folder=True))
        self._update_empty()

    # -- content -------------------------------------------------------------------------------
    def set_items(self, items: Sequence[GalleryItem]) -> None:
        """Show ``items`` newest first, keeping the selected image when it is still there."""
        current = self.selected_item()
        ordered = sorted(items, key=lambda i: i.id, reverse=True)
        self.model.set_items(ordered)
        self._update_empty()
        if current is not None and self.model.row_of(current.id) >= 0:
            self.select_item(current.id)
        elif current is not None:
            self.details.show_item(None)
        elif self.details.item is not None:
            self._on_current()

    def items(self) -> list[GalleryItem]:
        return self.model.items()

    def select_item(self, item_id: int) -> None:
        row = self.model.row_of(item_id)
        if row < 0:
            return
        idx = self.model.index(row)
        self.grid.setCurrentIndex(idx)
        self.grid.scrollTo(idx)
        self._on_current()

    def selected_item(self) -> GalleryItem | None:
        idx = self.grid.currentIndex()
        return self.model.item(idx.row()) if idx.isValid() else None

    def _update_empty(self) -> None:
        empty = self.model.rowCount() == 0
        self.empty_label.setVisible(empty)
        self.grid.setVisible(not empty)

    def _on_current(self) -> None:
        item = self.selected_item()
        name = self.lora_names.get(item.lora_path, "") if item is not None else ""
        self.details.show_item(item, name)
        if item is not None:
            self.lineage_requested.emit(item.id)
        self.selection_changed.emit(item)

    # -- actions -------------------------------------------------------------------------------
    def _more_like(self, denoise: float, count: int) -> None:
        if self.details.item is not None:
            self.more_like_requested.emit(self.details.item, denoise, count)

    def _reuse(self) -> None:
        self._emit(self.reuse_requested)

    def _emit(self, signal: Any) -> None:
        if self.details.item is not None:
            signal.emit(self.details.item)

    def _copy_seed(self) -> None:
        item = self.details.item
        if item is not None:
            QApplication.clipboard().setText(str(item.seed))
            self.message_posted.emit(f"Seed {item.seed} copied.")

    def _open(self, folder: bool) -> None:
        item = self.details.item
        if item is None:
            return
        target = Path(item.path).parent if folder else Path(item.path)
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(target))):
            self.message_posted.emit(f"Nothing opened {target}; open it by hand.")
