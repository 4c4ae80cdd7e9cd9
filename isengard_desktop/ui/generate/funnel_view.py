"""The Generate tab's Explore view (:class:`FunnelViewWidget`): one stage of a draft funnel as
a grid, keyboard triage, "Next stage", "More like this" and the current picture's lineage.

Keys (like the staging strip): ←/→ move, ↑/↓ move a row, K keeps and D discards the current
picture (then the next undecided one becomes current), U makes it undecided again, 1–9 toggle
Keep on the first nine pictures. Decisions are shown at once and recorded by the owner; the
files stay, so a stage can be re-opened (the stage buttons) and decided again.

The view never calls the service: the tab feeds it (:meth:`FunnelViewWidget.show_stage`) and
turns its signals into service calls.

Signals:
    pick_requested(list[int], str): generation ids and "keep" | "discard" | "".
    next_requested(str funnel_id, str stage): make the next stage from the kept pictures.
    stage_requested(str funnel_id, str stage): show another stage (re-open it).
    funnel_requested(str funnel_id): show another exploration (the picker).
    delete_requested(str funnel_id): "Delete this exploration…" (the owner confirms).
    more_like_requested(int id, float denoise, int count): "More like this" on a picture.
    current_changed(int): the current picture changed (its lineage is wanted).
    back_requested(): back to the gallery.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QKeyEvent, QResizeEvent
from PySide6.QtWidgets import (QButtonGroup, QComboBox, QFrame, QGridLayout, QHBoxLayout,
                               QLabel, QPushButton, QScrollArea, QVBoxLayout, QWidget)

from ...core.comfy.funnel import STAGE_TITLES, STAGES, FunnelSizes, next_stage
from ...core.comfy.jobs import GalleryItem
from ...services.thumbnails import ThumbnailService
from ..widgets.gallery import thumb_key
from ..widgets.lineage_tree import LineageTreeWidget
from ..widgets.more_like_this import MoreLikeThisWidget
from ..widgets.picture_tile import PictureTile, set_style_property, stepped_id

__all__ = ["FunnelTileWidget", "FunnelViewWidget"]

TILE_IMAGE = 120
TILE_STEP = TILE_IMAGE + 14 + 8      # tile width + grid spacing
PICK_WORDS = {"keep": "Kept", "discard": "Discarded", "": ""}


class FunnelTileWidget(PictureTile):
    """One picture of a stage: thumbnail, number and seed, its decision, Keep and Discard
    buttons (pressing a decided one again makes the picture undecided)."""

    decided = Signal(int, str)

    def __init__(self, item: GalleryItem, number: int, parent: QWidget | None = None) -> None:
        super().__init__(item, TILE_IMAGE, parent)
        self.number = number
        self.setObjectName("FunnelTile")
        self.setProperty("pick", item.pick)
        self.caption = QLabel("")
        self.caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.seed_label = QLabel("")
        self.seed_label.setProperty("subtle", True)
        self.seed_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.seed_label.setFixedWidth(TILE_IMAGE)
        self.setFixedWidth(TILE_IMAGE + 14)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(4)
        layout.addWidget(self.image)
        self.keep_button = QPushButton("Keep")
        self.keep_button.setObjectName("FunnelKeep")
        self.discard_button = QPushButton("Discard")
        self.discard_button.setObjectName("FunnelDiscard")
        buttons = QHBoxLayout()
        buttons.setSpacing(4)
        for button, pick in ((self.keep_button, "keep"), (self.discard_button, "discard")):
            button.setCheckable(True)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.clicked.connect(lambda _=False, p=pick: self.decided.emit(
                self.item.id, "" if self.item.pick == p else p))
            buttons.addWidget(button, 1)
        layout.addWidget(self.caption)
        layout.addWidget(self.seed_label)
        layout.addLayout(buttons)
        self.set_item(item)

    def set_item(self, item: GalleryItem) -> None:
        self.item = item
        word = PICK_WORDS.get(item.pick, "")
        self.caption.setText(f"{self.number}" + (f" · {word}" if word else ""))
        seed = f"seed {item.seed}"
        self.seed_label.setText(self.seed_label.fontMetrics().elidedText(
            seed, Qt.TextElideMode.ElideMiddle, TILE_IMAGE))
        self.setToolTip(f"Picture {self.number}, seed {item.seed}. "
                        + (f"{word}. " if word else "")
                        + "K keeps, D discards, U undecided"
                        + (f", {self.number} toggles Keep." if self.number <= 9 else "."))
        self.keep_button.setChecked(item.pick == "keep")
        self.discard_button.setChecked(item.pick == "discard")
        self.keep_button.setToolTip("Undecided again (U)." if item.pick == "keep" else
                                    "Keep this picture for the next stage (K).")
        self.discard_button.setToolTip("Undecided again (U)." if item.pick == "discard" else
                                       "Leave this picture out of the next stage (D). The "
                                       "file stays, so you can change your mind.")
        set_style_property(self, "pick", item.pick)


class FunnelViewWidget(QFrame):
    pick_requested = Signal(list, str)
    next_requested = Signal(str, str)
    stage_requested = Signal(str, str)
    funnel_requested = Signal(str)
    delete_requested = Signal(str)
    more_like_requested = Signal(int, float, int)
    current_changed = Signal(int)
    back_requested = Signal()

    def __init__(self, thumbnails: ThumbnailService, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("FunnelView")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._thumbs = thumbnails
        self.funnel_id = ""
        self.stage = "draft"
        self.sizes = FunnelSizes()
        self.tiles: list[FunnelTileWidget] = []
        self.current_id: int | None = None
        self.running = 0
        self.columns = 4

        self.title = QLabel("Explore")
        self.title.setObjectName("SectionLabel")
        self.funnel_combo = QComboBox()
        self.funnel_combo.setObjectName("FunnelCombo")
        self.funnel_combo.setToolTip("Your explorations, newest first: pick one to re-open it.")
        self.stage_group = QButtonGroup(self)
        self.stage_buttons: dict[str, QPushButton] = {}
        self.delete_button = QPushButton("Delete this exploration…")
        self.delete_button.setObjectName("FunnelDeleteButton")
        self.delete_button.setToolTip("Move every picture of this exploration (all stages) to "
                                      "the trash and forget it. Pictures you kept into a "
                                      "dataset stay. You are asked first.")
        self.delete_button.clicked.connect(
            lambda: self.delete_requested.emit(self.funnel_id) if self.funnel_id else None)
        self.back_button = QPushButton("Back to the gallery")
        self.back_button.setToolTip("Leave Explore. The explorations stay; re-open them here "
                                    "later (Generate → Explore, or the picker).")
        head = QHBoxLayout()
        head.addWidget(self.title)
        head.addWidget(self.funnel_combo, 1)
        for stage in STAGES:
            button = QPushButton(STAGE_TITLES[stage])
            button.setCheckable(True)
            button.setObjectName("FunnelStageButton")
            button.setProperty("stage", stage)
            button.setToolTip(f"Show the {STAGE_TITLES[stage].lower()} stage of this "
                              "exploration (you can change its decisions and go on from it).")
            self.stage_group.addButton(button)
            self.stage_buttons[stage] = button
            head.addWidget(button)
        head.addWidget(self.delete_button)
        head.addWidget(self.back_button)

        self._grid = QGridLayout()
        self._grid.setContentsMargins(6, 6, 6, 6)
        self._grid.setSpacing(8)
        inner = QWidget()
        inner.setLayout(self._grid)
        self.scroll_area = QScrollArea()
        self.scroll_area.setWidget(inner)
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll_area.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.empty_label = QLabel("")
        self.empty_label.setProperty("subtle", True)
        self.empty_label.setWordWrap(True)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)

        self.count_label = QLabel("")
        self.count_label.setObjectName("FunnelCount")
        self.next_button = QPushButton("Next stage ▸")
        self.next_button.setObjectName("FunnelNextButton")
        self.next_button.setProperty("primary", True)
        self.hint = QLabel("Keys: ← → ↑ ↓ move · K keep · D discard · U undecided · 1–9 toggle "
                           "Keep.")
        self.hint.setProperty("subtle", True)
        self.hint.setWordWrap(True)
        self.more = MoreLikeThisWidget()
        self.lineage = LineageTreeWidget(hide_single=False)
        self.lineage.setVisible(False)
        foot = QHBoxLayout()
        foot.addWidget(self.count_label, 1)
        foot.addWidget(self.next_button)

        # the current picture's lineage and the keys beside the grid (below it, the tree
        # squeezed the grid to one row at 1280×800)
        self.lineage.setMaximumHeight(16777215)
        side = QWidget()
        side.setFixedWidth(230)
        sv = QVBoxLayout(side)
        sv.setContentsMargins(0, 0, 0, 0)
        lineage_title = QLabel("Lineage")
        lineage_title.setObjectName("SectionLabel")
        sv.addWidget(lineage_title)
        sv.addWidget(self.lineage, 1)
        sv.addStretch(0)
        sv.addWidget(self.hint)
        body = QHBoxLayout()
        body.addWidget(self.scroll_area, 1)
        body.addWidget(self.empty_label, 1)
        body.addWidget(side)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(head)
        layout.addLayout(body, 1)
        layout.addLayout(foot)
        layout.addWidget(self.more)

        self.back_button.clicked.connect(self.back_requested)
        self.next_button.clicked.connect(self._next)
        self.stage_group.buttonClicked.connect(
            lambda b: self.stage_requested.emit(self.funnel_id, b.property("stage")))
        self.funnel_combo.activated.connect(self._on_funnel_picked)
        self.more.requested.connect(self._more_like)
        thumbnails.thumbnail_ready.connect(self._on_thumbnail_ready)

    # -- content -------------------------------------------------------------------------------
    def set_funnels(self, funnels: Sequence[tuple[str, GalleryItem]]) -> None:
        """The picker: (funnel id, its first picture), newest first."""
        self.funnel_combo.blockSignals(True)
        self.funnel_combo.clear()
        for funnel_id, first in funnels:
            prompt = str((first.params or {}).get("prompt") or first.prompt)
            when = first.created.replace("T", " ")[:16]
            self.funnel_combo.addItem(f"{prompt[:48]} · {when}".strip(" ·"), funnel_id)
        self.funnel_combo.setCurrentIndex(self.funnel_combo.findData(self.funnel_id))
        self.funnel_combo.blockSignals(False)

    def show_stage(self, funnel_id: str, stage: str, items: Sequence[GalleryItem],
                   sizes: FunnelSizes, running: int = 0) -> None:
        """Show ``stage`` of ``funnel_id`` (its pictures, oldest first); ``running`` jobs of
        this funnel are still being made."""
        same = funnel_id == self.funnel_id and stage == self.stage
        self.funnel_id, self.stage, self.sizes, self.running = funnel_id, stage, sizes, running
        self.stage_buttons[stage].setChecked(True)
        index = self.funnel_combo.findData(funnel_id)
        if index >= 0:
            self.funnel_combo.setCurrentIndex(index)
        old = {t.item.id: t for t in self.tiles}
        for tile in self.tiles:
            self._grid.removeWidget(tile)
        tiles: list[FunnelTileWidget] = []
        for number, item in enumerate(sorted(items, key=lambda i: i.id), start=1):
            reused = old.pop(item.id, None) if same else None
            if reused is not None and reused.number == number:
                tile = reused
                tile.set_item(item)
            else:
                if reused is not None:
                    old[item.id] = reused          # renumbered: made anew, this one goes
                tile = FunnelTileWidget(item, number)
                tile.clicked.connect(self.set_current)
                tile.decided.connect(lambda item_id, pick: self.decide(item_id, pick,
                                                                       advance=bool(pick)))
                tile.set_pixmap(self._thumbs.pixmap(thumb_key(item.path), Path(item.path)))
            tiles.append(tile)
        for gone in old.values():
            gone.setParent(None)
            gone.deleteLater()
        self.tiles = tiles
        self._place_tiles()
        if self.current_id not in {t.item.id for t in tiles}:
            undecided = [t for t in tiles if not t.item.pick]
            self.current_id = (undecided or tiles)[0].item.id if tiles else None
            if self.current_id is not None:
                self.current_changed.emit(self.current_id)
        self._mark_current()
        self._update_counts()

    def _place_tiles(self) -> None:
        """Tiles in rows as wide as the grid's viewport allows."""
        width = self.scroll_area.viewport().width()
        self.columns = max(1, (width - 12) // TILE_STEP) if width > 0 else self.columns
        for tile in self.tiles:
            self._grid.removeWidget(tile)
        for n, tile in enumerate(self.tiles):
            self._grid.addWidget(tile, n // self.columns, n % self.columns,
                                 Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self._grid.setColumnStretch(self.columns, 1)
        self._grid.setRowStretch(max(1, -(-len(self.tiles) // self.columns)), 1)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        width = self.scroll_area.viewport().width()
        if self.tiles and max(1, (width - 12) // TILE_STEP) != self.columns:
            self._place_tiles()

    def item_ids(self) -> list[int]:
        return [t.item.id for t in self.tiles]

    def tile(self, item_id: int | None) -> FunnelTileWidget | None:
        return next((t for t in self.tiles if t.item.id == item_id), None)

    def kept(self) -> list[GalleryItem]:
        return [t.item for t in self.tiles if t.item.pick == "keep"]

    def _update_counts(self) -> None:
        made = len(self.tiles)
        after = next_stage(self.stage)
        want = self.sizes.keep(self.stage)
        kept = len(self.kept())
        making = f" · {self.running} being made…" if self.running else ""
        if after is None:
            self.count_label.setText(f"{made} final picture{'s' if made != 1 else ''} · keep "
                                     f"{want} · {kept} kept{making}")
        else:
            self.count_label.setText(f"{made} {STAGE_TITLES[self.stage].lower()} · keep "
                                     f"{want} for {STAGE_TITLES[after].lower()} · {kept} "
                                     f"kept{making}")
        self.empty_label.setVisible(not self.tiles)
        self.scroll_area.setVisible(bool(self.tiles))
        self.empty_label.setText("The pictures of this stage are being made…" if self.running
                                 else "Nothing in this stage yet: keep pictures in the stage "
                                      "before it and press Next stage.")
        self.next_button.setVisible(after is not None)
        if after is not None:
            self.next_button.setText(f"Next stage: {STAGE_TITLES[after]} ▸")
            ok = kept > 0
            self.next_button.setEnabled(ok)
            self.next_button.setToolTip(
                f"Make the {kept} kept picture{'s' if kept != 1 else ''} again at "
                f"{STAGE_TITLES[after].lower()} quality with the same seeds (only those not "
                "made yet)." if ok else "Keep at least one picture first (K).")
        current = self.tile(self.current_id)
        self.more.set_available(current is not None, "Pick a picture first.")

    # -- current and keys ----------------------------------------------------------------------
    def set_current(self, item_id: int) -> None:
        if self.tile(item_id) is not None:
            changed = item_id != self.current_id
            self.current_id = item_id
            self._mark_current()
            self.setFocus(Qt.FocusReason.OtherFocusReason)
            if changed:
                self.current_changed.emit(item_id)

    def _mark_current(self) -> None:
        for t in self.tiles:
            t.set_current(t.item.id == self.current_id)
        tile = self.tile(self.current_id)
        if tile is not None:
            self.scroll_area.ensureWidgetVisible(tile, 10, 10)

    def move_current(self, delta: int) -> None:
        target = stepped_id(self.item_ids(), self.current_id, delta)
        if target is not None:
            self.set_current(target)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        digits = {getattr(Qt.Key, f"Key_{n}"): n for n in range(1, 10)}
        if key == Qt.Key.Key_Left:
            self.move_current(-1)
        elif key == Qt.Key.Key_Right:
            self.move_current(1)
        elif key == Qt.Key.Key_Up:
            self.move_current(-self.columns)
        elif key == Qt.Key.Key_Down:
            self.move_current(self.columns)
        elif key == Qt.Key.Key_K and self.current_id is not None:
            self.decide(self.current_id, "keep")
        elif key == Qt.Key.Key_D and self.current_id is not None:
            self.decide(self.current_id, "discard")
        elif key == Qt.Key.Key_U and self.current_id is not None:
            self.decide(self.current_id, "", advance=False)
        elif key in digits and digits[key] <= len(self.tiles):
            tile = self.tiles[digits[key] - 1]
            self.set_current(tile.item.id)
            self.decide(tile.item.id, "" if tile.item.pick == "keep" else "keep",
                        advance=False)
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    # -- decisions -----------------------------------------------------------------------------
    def decide(self, item_id: int, pick: str, advance: bool = True) -> None:
        """Mark a picture kept/discarded/undecided (shown at once) and ask the owner to
        record it; the next undecided picture becomes current when ``advance``."""
        tile = self.tile(item_id)
        if tile is None:
            return
        tile.set_item(replace(tile.item, pick=pick))
        if advance:
            ids = self.item_ids()
            pos = ids.index(item_id)
            rest = [t for t in self.tiles[pos + 1:] + self.tiles[:pos] if not t.item.pick]
            if rest:
                self.set_current(rest[0].item.id)
        self._update_counts()
        self.pick_requested.emit([item_id], pick)

    def _next(self) -> None:
        if self.kept() and next_stage(self.stage) is not None:
            self.next_requested.emit(self.funnel_id, self.stage)

    def _more_like(self, denoise: float, count: int) -> None:
        if self.current_id is not None:
            self.more_like_requested.emit(self.current_id, denoise, count)

    def _on_funnel_picked(self, index: int) -> None:
        funnel_id = self.funnel_combo.itemData(index)
        if funnel_id and funnel_id != self.funnel_id:
            self.funnel_requested.emit(funnel_id)

    def _on_thumbnail_ready(self, key: str, _image: QImage) -> None:
        for tile in self.tiles:
            if thumb_key(tile.item.path) == key:
                tile.set_pixmap(self._thumbs.pixmap(key, Path(tile.item.path)))
