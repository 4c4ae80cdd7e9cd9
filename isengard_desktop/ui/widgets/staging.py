"""The staging strip of synthetic dataset expansion: generated images of one character wait
here to be kept (they join the dataset) or discarded (they go to the trash).

Each image is a tile with Keep and Discard buttons. The keyboard works too: ←/→ move between
images, K keeps and D discards the current one, and the next one becomes current.
A decision is shown at once ("Keeping…") and the tile goes when the owner sends the new list.

Signals (StagingStripWidget):
    keep_requested(list[int]): GalleryItem ids to add to the character's dataset.
    discard_requested(list[int]): GalleryItem ids to send to the trash.
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Callable, Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QKeyEvent
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QPushButton, QScrollArea,
                               QSizePolicy, QVBoxLayout, QWidget)

from ...core.comfy.jobs import GalleryItem
from ...services.background import alive
from ...services.thumbnails import ThumbnailService
from .gallery import thumb_key
from .picture_tile import PictureTile, set_style_property, stepped_id

TILE_IMAGE = 184


class StagingTileWidget(PictureTile):
    """One staged image with Keep and Discard."""

    def __init__(self, item: GalleryItem, parent: QWidget | None = None) -> None:
        super().__init__(item, TILE_IMAGE, parent)
        self.setObjectName("StagingTile")
        self.setFixedWidth(TILE_IMAGE + 20)
        self.image.setObjectName("StagingImage")
        self.caption = QLabel(f"seed {item.seed}")
        self.caption.setProperty("subtle", True)
        self.caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.caption.setToolTip(item.prompt)
        self.keep_button = QPushButton("Keep")
        self.keep_button.setObjectName("StagingKeep")
        self.keep_button.setToolTip("Add this image to the character's dataset, captioned with "
                                    "its prompt (trigger word included). Shortcut: K")
        self.discard_button = QPushButton("Discard")
        self.discard_button.setObjectName("StagingDiscard")
        self.discard_button.setProperty("danger", True)
        self.discard_button.setToolTip("Move this image to the trash. Shortcut: D")
        for button in (self.keep_button, self.discard_button):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        buttons = QHBoxLayout()
        buttons.setSpacing(6)
        buttons.addWidget(self.keep_button, 1)
        buttons.addWidget(self.discard_button, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 10, 10, 10)
        layout.setSpacing(6)
        self.likeness = QLabel("")
        self.likeness.setObjectName("StagingLikeness")
        self.likeness.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.likeness.setWordWrap(True)
        self.likeness.hide()
        layout.addWidget(self.image)
        layout.addWidget(self.caption)
        layout.addWidget(self.likeness)
        layout.addLayout(buttons)
        self.decision = ""
        self.identity: float | None = None
        self.scored = False

    def set_identity(self, similarity: float | None) -> None:
        """The likeness of this picture's face to the character's photos (the face
        analysis' identity score; None: no face found). Below the same-person line the
        tile warns before the picture can enter the dataset."""
        self.identity, self.scored = similarity, True
        if similarity is None:
            text, warn = "No face found", True
            tip = ("The face analysis found no face in this picture: kept, it would teach the "
                   "LoRA nothing about the person.")
        elif similarity < SAME_PERSON_SIMILARITY:
            text, warn = f"May be a different person ({similarity:.2f})", True
            tip = (f"Likeness {similarity:.2f} to the character's photos; below "
                   f"{SAME_PERSON_SIMILARITY:.1f} the face analysis reads another person. "
                   "Keeping it would teach the LoRA a wrong face.")
        else:
            text, warn = f"Likeness {similarity:.2f}", False
            tip = (f"Likeness {similarity:.2f} to the character's photos (1.0 = the same "
                   f"face; {SAME_PERSON_SIMILARITY:.1f} and above reads the same person).")
        self.likeness.setText(text)
        self.likeness.setToolTip(tip)
        set_style_property(self.likeness, "warning", warn)
        self.likeness.show()

    def set_decision(self, decision: str) -> None:
        """"keep" or "discard": the request is on its way; the buttons say so."""
        self.decision = decision
        self.keep_button.setEnabled(False)
        self.discard_button.setEnabled(False)
        why = "Already decided; waiting for the library."
        self.keep_button.setToolTip(why)
        self.discard_button.setToolTip(why)
        self.caption.setText("Keeping…" if decision == "keep" else "Discarding…")


# dlib's same-person distance 0.6 as a similarity (core/identity.py; not imported: numpy)
SAME_PERSON_SIMILARITY = 0.4


class StagingStripWidget(QFrame):
    keep_requested = Signal(list)
    discard_requested = Signal(list)

    def __init__(self, thumbnails: ThumbnailService, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("StagingStrip")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._thumbs = thumbnails
        self._scorer: Callable[[list[Path], Callable[[dict[Path, float | None]], None]],
                               None] | None = None
        self._asked: set[int] = set()
        self.tiles: list[StagingTileWidget] = []
        self.current_id: int | None = None
        self._row = QHBoxLayout()
        self._row.setContentsMargins(8, 8, 8, 8)
        self._row.setSpacing(10)
        self._row.addStretch(1)
        inner = QWidget()
        inner.setObjectName("StagingInner")
        inner.setLayout(self._row)
        self.scroll_area = QScrollArea()
        self.scroll_area.setWidget(inner)
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll_area.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll_area.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.scroll_area.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.scroll_area.setFixedHeight(TILE_IMAGE + 110)
        self.empty_label = QLabel("")
        self.empty_label.setProperty("subtle", True)
        self.empty_label.setWordWrap(True)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint = QLabel("Keep adds an image to the dataset; Discard moves it to the trash. "
                           "Keys: ← → to move, K to keep, D to discard.")
        self.hint.setProperty("subtle", True)
        self.hint.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.scroll_area)
        layout.addWidget(self.empty_label)
        layout.addWidget(self.hint)
        layout.addStretch(1)
        self.set_empty_text("Nothing is waiting here. Press Generate: the pictures land in this "
                            "strip to keep or discard.")
        thumbnails.thumbnail_ready.connect(self._on_thumbnail_ready)
        self._update_empty()

    def set_empty_text(self, text: str) -> None:
        self.empty_label.setText(text)

    # -- content -------------------------------------------------------------------------------
    def set_items(self, items: Sequence[GalleryItem]) -> None:
        """Show these staged images (oldest first), keeping the current one if still there."""
        wanted = [i for i in items if i.status == "staging"]
        old = {t.item.id: t for t in self.tiles}
        order = [t.item.id for t in self.tiles]
        current_index = order.index(self.current_id) if self.current_id in order else 0
        for shown in self.tiles:
            self._row.removeWidget(shown)
        keep: list[StagingTileWidget] = []
        for item in sorted(wanted, key=lambda i: i.id):
            tile = old.pop(item.id, None)
            if tile is None:
                tile = StagingTileWidget(item)
                tile.keep_button.clicked.connect(lambda _=False, i=item.id: self.keep(i))
                tile.discard_button.clicked.connect(lambda _=False, i=item.id: self.discard(i))
                tile.clicked.connect(self.set_current)
                tile.set_pixmap(self._thumbs.pixmap(thumb_key(item.path), Path(item.path)))
            keep.append(tile)
        for gone in old.values():
            gone.setParent(None)
            gone.deleteLater()
        for n, tile in enumerate(keep):
            self._row.insertWidget(n, tile)
        self.tiles = keep
        self._score_new()
        if self.current_id not in {t.item.id for t in keep}:
            self.current_id = None
            undecided = [t for t in keep if not t.decision]
            if undecided:
                pick = min(current_index, len(keep) - 1)
                after = [t for t in keep[pick:] if not t.decision] or undecided
                self.current_id = after[0].item.id
        self._mark_current()
        self._update_empty()

    def set_scorer(self, scorer: Callable[[list[Path], Callable[[dict[Path, float | None]],
                                                                  None]], None] | None) -> None:
        """The identity scorer of the character whose pictures are staged (None: no face
        analysis); pictures shown from now on are scored once each."""
        self._scorer = scorer
        self._asked = set()
        self._score_new()

    def _score_new(self) -> None:
        scorer = self._scorer
        if scorer is None:
            return
        asked = self._asked
        new = [t for t in self.tiles if not t.scored and t.item.id not in asked]
        if not new:
            return
        asked.update(t.item.id for t in new)
        by_path = {Path(t.item.path): t.item.id for t in new}

        def scored(scores: dict[Path, float | None]) -> None:
            if not alive(self):
                return
            for path, item_id in by_path.items():
                tile = self.tile(item_id)
                if tile is not None and path in scores:
                    tile.set_identity(scores[path])

        scorer(list(by_path), scored)

    def reset_decisions(self) -> None:
        """Forget pending Keep/Discard marks (the owner says they did not happen)."""
        for tile in self.tiles:
            if tile.decision:
                tile.setParent(None)
                tile.deleteLater()
        self.tiles = [t for t in self.tiles if not t.decision]

    def item_ids(self) -> list[int]:
        return [t.item.id for t in self.tiles]

    def tile(self, item_id: int) -> StagingTileWidget | None:
        return next((t for t in self.tiles if t.item.id == item_id), None)

    def _update_empty(self) -> None:
        empty = not self.tiles
        self.empty_label.setVisible(empty)
        self.scroll_area.setVisible(not empty)
        self.hint.setVisible(not empty)

    # -- current and keys ----------------------------------------------------------------------
    def set_current(self, item_id: int) -> None:
        if self.tile(item_id) is not None:
            self.current_id = item_id
            self._mark_current()
            self.setFocus(Qt.FocusReason.OtherFocusReason)

    def _mark_current(self) -> None:
        for t in self.tiles:
            t.set_current(t.item.id == self.current_id)
        tile = self.tile(self.current_id) if self.current_id is not None else None
        if tile is not None:
            self.scroll_area.ensureWidgetVisible(tile, 20, 0)

    def move_current(self, delta: int) -> None:
        target = stepped_id(self.item_ids(), self.current_id, delta)
        if target is not None:
            self.set_current(target)

    def _advance_from(self, item_id: int) -> None:
        ids = self.item_ids()
        if item_id not in ids:
            return
        pos = ids.index(item_id)
        rest = [t for t in self.tiles[pos + 1:] + self.tiles[:pos] if not t.decision]
        if rest:
            self.current_id = rest[0].item.id
            self._mark_current()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key in (Qt.Key.Key_Left, Qt.Key.Key_Up):
            self.move_current(-1)
        elif key in (Qt.Key.Key_Right, Qt.Key.Key_Down):
            self.move_current(1)
        elif key == Qt.Key.Key_K and self.current_id is not None:
            self.keep(self.current_id)
        elif key == Qt.Key.Key_D and self.current_id is not None:
            self.discard(self.current_id)
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    # -- decisions -----------------------------------------------------------------------------
    def keep(self, item_id: int) -> None:
        self._decide(item_id, "keep")

    def discard(self, item_id: int) -> None:
        self._decide(item_id, "discard")

    def _decide(self, item_id: int, decision: str) -> None:
        tile = self.tile(item_id)
        if tile is None or tile.decision:
            return
        tile.set_decision(decision)
        self._advance_from(item_id)
        (self.keep_requested if decision == "keep" else self.discard_requested).emit([item_id])

    def _on_thumbnail_ready(self, key: str, _image: QImage) -> None:
        for tile in self.tiles:
            if thumb_key(tile.item.path) == key:
                tile.set_pixmap(self._thumbs.pixmap(key, Path(tile.item.path)))
