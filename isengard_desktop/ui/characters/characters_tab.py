"""The Characters tab: character cards, the create dialog, and a character's detail view."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QAbstractListModel, QModelIndex, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFontMetrics, QImage, QPainter, QPalette, QPen
from PySide6.QtWidgets import (QAbstractItemView, QApplication, QFileDialog, QHBoxLayout,
                               QInputDialog, QLabel, QListView, QMessageBox, QPushButton,
                               QSplitter, QStackedWidget, QStyle, QStyledItemDelegate,
                               QStyleOptionViewItem, QVBoxLayout, QWidget)

from ..widgets.qt_types import ModelIndex
from ...core.db.records import Character, ImageRecord
from ...services.database import ChangeSet
from ...services.library import LibraryService
from ...services.thumbnails import ThumbnailService
from ..dialogs.confirm import PERMANENT_NOTE, confirm, confirm_trash_photos
from ..dialogs.create_character import CreateCharacterDialog
from ..widgets.caption_editor import CaptionEditorWidget
from ..widgets.dataset_score import DatasetScoreWidget
from ..widgets.drop_zone import PHOTO_FILTER, DropZoneWidget
from ..widgets.image_grid import ImageGridWidget

if TYPE_CHECKING:
    from ...core.faces.checks import DatasetScore

CharacterRole = Qt.ItemDataRole.UserRole + 1
CountRole = Qt.ItemDataRole.UserRole + 2
TrainedRole = Qt.ItemDataRole.UserRole + 3
CARD = QSize(220, 268)


class CharacterListModel(QAbstractListModel):
    def __init__(self, library: LibraryService, thumbnails: ThumbnailService,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._library = library
        self._thumbs = thumbnails
        self._items: list[Character] = []
        self._covers: dict[int, ImageRecord] = {}
        self._counts: dict[int, int] = {}
        thumbnails.thumbnail_ready.connect(self._on_thumbnail_ready)

    def refresh(self) -> None:
        """Re-read characters, covers and counts from the library snapshot (one pass)."""
        self.beginResetModel()
        self._items = self._library.characters()
        self._covers, self._counts = {}, {}
        for image in self._library.images():
            self._covers.setdefault(image.character_id, image)
            self._counts[image.character_id] = self._counts.get(image.character_id, 0) + 1
        self.endResetModel()

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._items)

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole):  # noqa: ANN201
        if not index.isValid():
            return None
        ch = self._items[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return ch.name
        if role == CharacterRole:
            return ch
        if role == Qt.ItemDataRole.DecorationRole:
            cover = self._covers.get(ch.id)
            return self._thumbs.pixmap(cover.sha256, cover.path) if cover else None
        if role == CountRole:
            return self._counts.get(ch.id, 0)
        if role == TrainedRole:
            return self._library.is_trained(ch.id)
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{ch.name}\nTrigger word: {ch.trigger_word}\n{ch.description}".strip()
        return None

    def _on_thumbnail_ready(self, sha256: str, _img: QImage) -> None:
        for row, ch in enumerate(self._items):
            cover = self._covers.get(ch.id)
            if cover and cover.sha256 == sha256:
                idx = self.index(row)
                self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])


class CharacterCardDelegate(QStyledItemDelegate):
    """Cover image, name, photo count and a trained/untrained badge."""

    def sizeHint(self, option: QStyleOptionViewItem, index: ModelIndex) -> QSize:
        return CARD

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: ModelIndex) -> None:
        ch: Character = index.data(CharacterRole)
        pal = option.palette
        rect = option.rect.adjusted(8, 8, -8, -8)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        hovered = bool(option.state & QStyle.StateFlag.State_MouseOver)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(pal.color(QPalette.ColorRole.Highlight), 2) if selected
                       else QPen(QColor(255, 255, 255, 25), 1))
        painter.setBrush(pal.color(QPalette.ColorRole.Base).lighter(115 if hovered else 100))
        painter.drawRoundedRect(rect, 10, 10)
        cover = QRect(rect.left() + 10, rect.top() + 10, rect.width() - 20, rect.width() - 20)
        pix = index.data(Qt.ItemDataRole.DecorationRole)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(255, 255, 255, 12))
        painter.drawRoundedRect(cover, 8, 8)
        if pix is not None and not pix.isNull():
            scaled = pix.scaled(cover.size(), Qt.AspectRatioMode.KeepAspectRatioByExpanding,
                                Qt.TransformationMode.SmoothTransformation)
            sx = (scaled.width() - cover.width()) // 2
            sy = (scaled.height() - cover.height()) // 2
            painter.drawPixmap(cover, scaled, QRect(sx, sy, cover.width(), cover.height()))
        else:
            painter.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(cover, Qt.AlignmentFlag.AlignCenter, "No photos yet")
        fm = QFontMetrics(option.font)
        name_rect = QRect(rect.left() + 12, cover.bottom() + 8, rect.width() - 24, 20)
        font = painter.font()
        font.setBold(True)
        painter.setFont(font)
        painter.setPen(pal.color(QPalette.ColorRole.Text))
        painter.drawText(name_rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                         fm.elidedText(ch.name, Qt.TextElideMode.ElideRight, name_rect.width()))
        font.setBold(False)
        painter.setFont(font)
        count = index.data(CountRole)
        info_rect = name_rect.translated(0, 20)
        painter.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
        painter.drawText(info_rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                         f"{count} photo{'s' if count != 1 else ''}")
        trained = index.data(TrainedRole)
        badge_text = "Trained" if trained else "Untrained"
        bw = fm.horizontalAdvance(badge_text) + 14
        badge = QRect(info_rect.right() - bw, info_rect.top() + 1, bw, 18)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor("#1f3d2b") if trained else QColor("#2a2e37"))
        painter.drawRoundedRect(badge, 9, 9)
        painter.setPen(QColor("#8fd6a8") if trained else QColor("#9aa3b2"))
        painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, badge_text)
        painter.restore()


class CharacterDetailWidget(QWidget):
    """One character: header with actions, a photo grid with drops, and a caption editor.

    Signals:
        back_requested(): the user wants the card list again.
        generate_for_dataset_requested(int): make synthetic photos of this (trained)
            character to grow its dataset (the Generate tab's staging mode).
    """

    back_requested = Signal()
    generate_for_dataset_requested = Signal(int)

    def __init__(self, library: LibraryService, thumbnails: ThumbnailService,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._library = library
        self.character_id: int | None = None

        self.back_button = QPushButton("← All characters")
        self.title = QLabel("")
        self.title.setObjectName("Title")
        self.trigger_chip = QLabel("")
        self.trigger_chip.setObjectName("TriggerChip")
        self.trigger_chip.setToolTip("The trigger word. Put it in a prompt to summon this person.")
        self.trigger_chip.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.copy_trigger_button = QPushButton("Copy")
        self.copy_trigger_button.setToolTip("Copy the trigger word to the clipboard.")
        self.rename_button = QPushButton("Rename…")
        self.import_button = QPushButton("Add photos…")
        self.import_button.setToolTip("Choose photos to add (or drop files and folders on the grid).")
        self.generate_button = QPushButton("Generate for dataset…")
        self.generate_button.setObjectName("GenerateForDataset")
        self.generate_button.setToolTip("Make new pictures of this person with their trained "
                                        "LoRA, then keep the best ones in the dataset.")
        self.generate_button.setVisible(False)   # only for characters with a trained LoRA
        self.delete_character_button = QPushButton("Delete character…")
        self.delete_character_button.setProperty("danger", True)
        self.description = QLabel("")
        self.description.setProperty("subtle", True)
        self.description.setWordWrap(True)
        self.count_label = QLabel("")
        self.count_label.setProperty("subtle", True)
        self.score_card = DatasetScoreWidget()    # filled by the Dataset tab's face checks
        self._scores: dict[int, DatasetScore] = {}

        header = QHBoxLayout()
        header.addWidget(self.back_button)
        header.addSpacing(12)
        header.addWidget(self.title)
        header.addWidget(self.trigger_chip)
        header.addWidget(self.copy_trigger_button)
        header.addStretch(1)
        header.addWidget(self.generate_button)
        header.addWidget(self.import_button)
        header.addWidget(self.rename_button)
        header.addWidget(self.delete_character_button)

        self.drop_zone = DropZoneWidget("Drop photos or folders here to add them to this character")
        self.drop_zone.setMinimumHeight(56)
        self.drop_zone.setMaximumHeight(70)
        self.grid = ImageGridWidget(thumbnails)
        self.caption_editor = CaptionEditorWidget()
        self.delete_images_button = QPushButton("Delete selected photos…")
        self.delete_images_button.setProperty("danger", True)
        self.delete_images_button.setEnabled(False)
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(8, 0, 0, 0)
        side_layout.addWidget(self.caption_editor, 1)
        side_layout.addWidget(self.delete_images_button)
        split = QSplitter()
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.drop_zone)
        left_layout.addWidget(self.grid, 1)
        split.addWidget(left)
        split.addWidget(side)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        split.setSizes([900, 300])

        layout = QVBoxLayout(self)
        layout.addLayout(header)
        layout.addWidget(self.description)
        layout.addWidget(self.count_label)
        layout.addWidget(self.score_card)
        layout.addWidget(split, 1)

        self.back_button.clicked.connect(self.back_requested)
        self.generate_button.clicked.connect(self._generate_for_dataset)
        self.copy_trigger_button.clicked.connect(self._copy_trigger)
        self.rename_button.clicked.connect(self._rename)
        self.delete_character_button.clicked.connect(self._delete_character)
        self.import_button.clicked.connect(self._browse)
        self.drop_zone.files_dropped.connect(self._import)
        self.grid.files_dropped.connect(self._import)
        self.grid.selection_changed.connect(self._on_selection)
        self.caption_editor.caption_saved.connect(self._library.set_caption)
        self.delete_images_button.clicked.connect(self._delete_images)

    def show_character(self, character_id: int) -> None:
        self.character_id = character_id
        self.grid.clearSelection()
        self.refresh()

    def refresh(self) -> None:
        ch = self._library.character(self.character_id) if self.character_id else None
        if ch is None:
            self.character_id = None
            return
        self.title.setText(ch.name)
        self.trigger_chip.setText(ch.trigger_word)
        self.description.setText(ch.description)
        self.description.setVisible(bool(ch.description))
        self.generate_button.setVisible(self._library.is_trained(ch.id))
        images = self._library.images(ch.id)
        self.grid.set_records(images)
        self.count_label.setText(
            f"{len(images)} photo{'s' if len(images) != 1 else ''}"
            + (" — 15 to 40 varied photos of one person work best." if len(images) < 15 else ""))
        score = self._scores.get(ch.id)
        self.score_card.show_scores([(ch.name, score)] if score is not None else [])

    def set_dataset_scores(self, scores: Mapping[int, DatasetScore]) -> None:
        """Keep the latest face-check scores (by character id) and show this one's."""
        self._scores.update(scores)
        self.refresh()

    def _on_selection(self, ids: list[int]) -> None:
        self.delete_images_button.setEnabled(bool(ids))
        self.delete_images_button.setText(
            f"Delete {len(ids)} selected photo{'s' if len(ids) != 1 else ''}…" if ids
            else "Delete selected photos…")
        # the editor keeps typed text for the same photo and saves it before showing another
        self.caption_editor.set_image(self._library.image(ids[0]) if len(ids) == 1 else None)

    def _generate_for_dataset(self) -> None:
        if self.character_id is not None and self._library.is_trained(self.character_id):
            self.generate_for_dataset_requested.emit(self.character_id)

    def _copy_trigger(self) -> None:
        QApplication.clipboard().setText(self.trigger_chip.text())

    def _browse(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Add photos", "", PHOTO_FILTER)
        if files:
            self._import([Path(f) for f in files])

    def _import(self, paths: list[Path]) -> None:
        if self.character_id is not None:
            self._library.import_photos(self.character_id, paths)

    def _rename(self) -> None:
        ch = self._library.character(self.character_id) if self.character_id else None
        if ch is None:
            return
        name, ok = QInputDialog.getText(self, "Rename character", "New name:", text=ch.name)
        if ok and name.strip() and name.strip() != ch.name:
            problem = self._library.update_character(ch.id, name=name)
            if problem:
                QMessageBox.warning(self, "Rename character", problem)

    def _delete_character(self) -> None:
        ch = self._library.character(self.character_id) if self.character_id else None
        if ch is None:
            return
        n = self._library.image_count(ch.id)
        permanent = self._library.trash_is_permanent
        photos = f"{n} photo{'s' if n != 1 else ''}"
        text = (f"Delete “{ch.name}” and its {photos} and captions?{PERMANENT_NOTE}"
                if permanent else
                f"Delete “{ch.name}” and move its {photos} and "
                "captions to the trash?\n\nYou can restore the files from the trash.")
        if confirm(self, "Delete character", text):
            self._library.delete_character(ch.id, allow_permanent=permanent)
            self.back_requested.emit()

    def _delete_images(self) -> None:
        ids = self.grid.selected_ids()
        permanent = self._library.trash_is_permanent
        if ids and confirm_trash_photos(self, len(ids), permanent):
            self._library.delete_images(ids, allow_permanent=permanent)


class CharactersTab(QWidget):
    """Character cards and one character's detail view.

    Signals:
        generate_for_dataset_requested(int): "Generate for dataset" on a trained character.
    """

    generate_for_dataset_requested = Signal(int)

    def __init__(self, library: LibraryService, thumbnails: ThumbnailService,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._library = library
        self.new_button = QPushButton("+  New character")
        self.new_button.setProperty("primary", True)
        self.new_button.setToolTip("Create a character and drop in their photos.")
        self.empty_hint = QLabel(
            "No characters yet. Create one, then drop in 15–40 varied photos of one person.")
        self.empty_hint.setProperty("subtle", True)
        self.cards = QListView()
        self.cards.setObjectName("CharacterCards")
        self.cards_model = CharacterListModel(library, thumbnails, self)
        self.cards.setModel(self.cards_model)
        self.cards.setItemDelegate(CharacterCardDelegate(self.cards))
        self.cards.setViewMode(QListView.ViewMode.IconMode)
        self.cards.setResizeMode(QListView.ResizeMode.Adjust)
        self.cards.setMovement(QListView.Movement.Static)
        self.cards.setUniformItemSizes(True)
        self.cards.setGridSize(CARD)
        self.cards.setMouseTracking(True)
        self.cards.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.cards.setToolTip("Double-click a character to open it.")

        list_page = QWidget()
        top = QHBoxLayout()
        title = QLabel("Characters")
        title.setObjectName("Title")
        top.addWidget(title)
        top.addStretch(1)
        top.addWidget(self.new_button)
        lp = QVBoxLayout(list_page)
        lp.addLayout(top)
        lp.addWidget(self.empty_hint)
        lp.addWidget(self.cards, 1)

        self._thumbs = thumbnails
        self._detail: CharacterDetailWidget | None = None  # built on first open (start-up)
        self._pending_scores: dict[int, DatasetScore] = {}
        self.stack = QStackedWidget()
        self.stack.addWidget(list_page)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.stack)

        self.new_button.clicked.connect(self.open_create_dialog)
        self.cards.activated.connect(self._open_index)
        self.cards.doubleClicked.connect(self._open_index)
        self.create_dialog: CreateCharacterDialog | None = None

    @property
    def detail(self) -> CharacterDetailWidget:
        if self._detail is None:
            self._detail = CharacterDetailWidget(self._library, self._thumbs)
            self._detail.set_dataset_scores(self._pending_scores)
            self._detail.back_requested.connect(lambda: self.stack.setCurrentIndex(0))
            self._detail.generate_for_dataset_requested.connect(
                self.generate_for_dataset_requested)
            self.stack.addWidget(self._detail)
        return self._detail

    def open_create_dialog(self) -> CreateCharacterDialog:
        self.create_dialog = CreateCharacterDialog(self._library, self)
        self.create_dialog.open()
        return self.create_dialog

    def open_character(self, character_id: int) -> None:
        self.detail.show_character(character_id)
        self.stack.setCurrentWidget(self.detail)

    def _open_index(self, index: QModelIndex) -> None:
        ch: Character = index.data(CharacterRole)
        if ch is not None:
            self.open_character(ch.id)

    def set_dataset_scores(self, scores: Mapping[int, DatasetScore]) -> None:
        """The face checks scored these characters' datasets (the detail page shows its
        character's card)."""
        self._pending_scores.update(scores)
        if self._detail is not None:
            self._detail.set_dataset_scores(scores)

    def on_data_changed(self, change: ChangeSet) -> None:
        self.cards_model.refresh()
        self.empty_hint.setVisible(not self._library.characters())
        detail = self._detail
        if detail is not None and detail.character_id is not None:
            if self._library.character(detail.character_id) is None:
                self.stack.setCurrentIndex(0)
                detail.character_id = None
            elif (change.everything or change.loras
                  or detail.character_id in change.character_ids):
                detail.refresh()
