"""Compare checkpoints (issue 16, item 4): a job's saved steps side by side, each with its
sample images, the identity score of each picture and the row that looks most like the
person marked "Recommended"; one click makes a row's LoRA the character's.

Rows = saved steps (oldest first), columns = the job's sample prompts, then the row's score.
Double-click a picture → zoom; select two rows → "Compare A/B" shows one prompt's two pictures
over each other with a split slider. Pictures are decoded off the UI thread; scores come from
the ``scorer`` given by the app (the identity score of the face analysis), asynchronously.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QDialog, QDialogButtonBox,
                               QHBoxLayout, QHeaderView, QLabel, QPushButton, QSlider, QSplitter,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from ...core.training.checkpoint_grid import CheckpointGrid, GridRow, with_scores
from ...services.background import BackgroundOp, alive
from ..widgets.ab_view import ABView

__all__ = ["CheckpointCompareDialog", "Scorer", "ZoomDialog"]

# scorer(images, on_scores): the identity score (0..1, higher = more like the character's
# photos) of each image's main face; None for an image with no face
Scorer = Callable[[list[Path], Callable[[Mapping[Path, float | None]], None]], None]

CELL = 160            # px: a picture's cell
RECOMMENDED = "★ Recommended"


def _load(paths: list[Path], size: int) -> dict[Path, QImage]:
    """Decode and scale the pictures (worker thread: QImage only, never QPixmap)."""
    out: dict[Path, QImage] = {}
    for path in paths:
        image = QImage(str(path))
        if not image.isNull():
            out[path] = image.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio,
                                     Qt.TransformationMode.SmoothTransformation)
    return out


def _score_text(score: float | None) -> str:
    return "no face" if score is None else f"{score:.2f}"


class ZoomDialog(QDialog):
    """One picture, large."""

    def __init__(self, image: QImage, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.label = QLabel()
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label.setPixmap(QPixmap.fromImage(image))
        layout = QVBoxLayout(self)
        layout.addWidget(self.label)


class CheckpointCompareDialog(QDialog):
    """The comparison of one job. Signals: ``use_requested(int step)`` — the user chose
    that step's LoRA (the owner calls the training service)."""

    use_requested = Signal(int)
    fill_requested = Signal(list)
    fill_cancel_requested = Signal()

    def __init__(self, title: str, total_steps: int = 0, *, scorer: Scorer | None = None,
                 can_fill: str = "", fill_route: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Compare checkpoints — {title}")
        self.resize(1000, 780)
        self._scorer = scorer
        self._total = total_steps
        self._full: dict[Path, QImage] = {}
        self.grid = CheckpointGrid(())

        self.intro = QLabel("Each row is a step the trainer saved, with the sample pictures it "
                            "made there. The identity score says how much each picture's face "
                            "looks like the character's photos (1.0 = the same person).")
        self.intro.setWordWrap(True)
        self.status = QLabel("Reading the job…")
        self.status.setProperty("subtle", True)
        self.status.setWordWrap(True)
        # how "Make the missing pictures" renders (ComfyUI on which server, the trainer's
        # sampler) or why nothing can; then how the last run ended
        self.route_label = QLabel()
        self.route_label.setProperty("subtle", True)
        self.route_label.setWordWrap(True)
        self.table = QTableWidget()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.MultiSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setIconSize(QSize(CELL, CELL))
        self.table.verticalHeader().setDefaultSectionSize(CELL + 8)
        self.table.horizontalHeader().setDefaultSectionSize(CELL + 8)
        self.table.horizontalHeader().setDefaultAlignment(
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.cellDoubleClicked.connect(self._zoom)

        self.use_button = QPushButton("Use this checkpoint")
        self.use_button.setToolTip("Make the selected step's LoRA the character's LoRA (the "
                                   "one Generate uses). The other LoRAs stay on disk.")
        self.ab_button = QPushButton("Compare A/B")
        self.ab_button.setToolTip("Select two rows: their pictures of one prompt over each "
                                  "other, with a slider to move the split.")
        self.fill_button = QPushButton("Make the missing pictures")
        self._can_fill = False
        self.fill_button.setEnabled(False)
        self.fill_button.clicked.connect(lambda: self.fill_requested.emit(self.grid.gaps))
        self.stop_fill_button = QPushButton("Stop making pictures")
        self.stop_fill_button.setToolTip("Stop after the picture being made; the pictures "
                                         "made so far are kept.")
        self.stop_fill_button.hide()
        self.stop_fill_button.clicked.connect(self.fill_cancel_requested)
        self.use_button.clicked.connect(self._use)
        self.ab_button.clicked.connect(self._show_ab)

        self.ab_prompt = QComboBox()
        self.ab_prompt.setToolTip("Which sample prompt the A/B view shows.")
        self.ab_prompt.currentIndexChanged.connect(lambda _i: self._fill_ab())
        self.ab_view = ABView()
        self.ab_slider = QSlider(Qt.Orientation.Horizontal)
        self.ab_slider.setRange(0, 100)
        self.ab_slider.setValue(50)
        self.ab_slider.setToolTip("Move the split between A (left) and B (right).")
        self.ab_slider.valueChanged.connect(lambda v: self.ab_view.set_split(v / 100))
        self.ab_label = QLabel()
        self.ab_panel = QWidget()
        ab = QVBoxLayout(self.ab_panel)
        ab.setContentsMargins(0, 0, 0, 0)
        head = QHBoxLayout()
        head.addWidget(self.ab_label, 1)
        head.addWidget(self.ab_prompt)
        ab.addLayout(head)
        ab.addWidget(self.ab_view, 1)
        ab.addWidget(self.ab_slider)
        self.ab_panel.hide()

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.fill_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.addButton(self.stop_fill_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.addButton(self.ab_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.addButton(self.use_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.intro)
        layout.addWidget(self.status)
        layout.addWidget(self.route_label)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(self.ab_panel)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setChildrenCollapsible(False)
        layout.addWidget(self.splitter, 1)
        layout.addWidget(buttons)
        self.set_route(can_fill, fill_route)
        self._update_buttons()

    def set_route(self, can_fill: str, fill_route: str) -> None:
        """How "Make the missing pictures" renders now: ``fill_route`` (e.g. ComfyUI on which
        server, with which sampling settings), or ``can_fill``: why nothing can."""
        self.route_label.setText(fill_route or can_fill)
        self.route_label.setVisible(bool(fill_route or can_fill))
        if can_fill:
            self.fill_button.setToolTip(can_fill)
        elif fill_route:
            self.fill_button.setToolTip(f"Render the sample prompts (same seeds) for the saved "
                                        f"steps that have no picture. {fill_route}")
        else:
            self.fill_button.setToolTip("Render the sample prompts (same seeds) for the saved "
                                        "steps that have no picture, with the trainer's own "
                                        "sampler.")
        self._can_fill = not can_fill
        if not self.stop_fill_button.isVisibleTo(self):       # not while a run is going
            self.fill_button.setEnabled(self._can_fill and bool(self.grid.gaps))

    # -- content ---------------------------------------------------------------------------
    def set_grid(self, grid: CheckpointGrid) -> None:
        """Show ``grid`` (pictures load in the background; scores are asked for)."""
        self.grid = grid
        self._fill()
        self.stop_fill_button.hide()
        self.fill_button.setEnabled(self._can_fill and bool(grid.gaps))
        self.ab_prompt.clear()
        self.ab_prompt.addItems([self._short(p) for p in grid.prompts])
        notes = list(grid.missing)
        if not grid.rows:
            notes.insert(0, "This job saved no steps to compare yet.")
        self.status.setText(" ".join(notes) if notes else "Loading the pictures…")
        images = grid.images()
        if images:
            BackgroundOp(parent=self, op=lambda: _load(images, 1024)) \
                .success(self._on_loaded).supersede("pictures").run()
            if self._scorer is not None:
                self.status.setText("Scoring the faces…")
                self._scorer(images, self._on_scores)
            elif not notes:
                self.status.setText("Identity scores need the face analysis (Dataset → "
                                    "Check faces); pictures are shown without them.")

    def set_filling(self, done: int, total: int) -> None:
        """"Fill the gaps" is running: ``done`` of ``total`` pictures."""
        self.fill_button.setEnabled(False)
        self.stop_fill_button.show()
        self.stop_fill_button.setEnabled(True)
        self.status.setText(f"Making the missing pictures: {done} of {total}…")

    def set_fill_ended(self, message: str) -> None:
        """"Fill the gaps" ended (``message``: why it stopped early, "" when complete)."""
        self.stop_fill_button.hide()
        if message:
            self.route_label.setText(message)
            self.route_label.show()

    def set_scores(self, scores: Mapping[Path, float | None]) -> None:
        self.grid = with_scores(self.grid, scores)
        self._fill()
        best = self.grid.recommended
        if best is None:
            self.status.setText("No face was found in the sample pictures, so no step is "
                                "recommended.")
        else:
            self.status.setText(f"Step {best.step} looks most like the character (score "
                                f"{best.score:.2f}).")

    def _on_scores(self, scores: Mapping[Path, float | None]) -> None:
        if alive(self):          # the scores may arrive after the dialog was closed
            self.set_scores(scores)

    def _on_loaded(self, images: dict[Path, QImage]) -> None:
        self._full = images
        self._fill()
        if self.status.text() == "Loading the pictures…":
            self.status.setText("")

    @staticmethod
    def _short(prompt: str) -> str:
        return prompt if len(prompt) <= 48 else prompt[:47] + "…"

    def _fill(self) -> None:
        grid, best = self.grid, self.grid.recommended
        selected = self.selected_steps()
        self.table.blockSignals(True)
        self.table.clear()
        self.table.setColumnCount(len(grid.prompts) + 1)
        self.table.setRowCount(len(grid.rows))
        self.table.setHorizontalHeaderLabels([self._short(p) for p in grid.prompts]
                                             + ["Identity score"])
        for column, prompt in enumerate(grid.prompts):
            header = self.table.horizontalHeaderItem(column)
            if header is not None:
                header.setToolTip(prompt)
        self.table.horizontalHeader().setSectionResizeMode(
            len(grid.prompts), QHeaderView.ResizeMode.ResizeToContents)
        for r, row in enumerate(grid.rows):
            label = f"Step {row.step}" + (f" of {self._total}" if self._total else "")
            if not row.can_use:
                label += "\n(LoRA removed)"
            self.table.setVerticalHeaderItem(r, QTableWidgetItem(label))
            for c, path in enumerate(row.cells):
                item = QTableWidgetItem()
                if path is None:
                    item.setText("—")
                    item.setToolTip("No sample picture at this step.")
                else:
                    image = self._full.get(path)
                    if image is not None:
                        item.setIcon(QIcon(QPixmap.fromImage(image.scaled(
                            CELL, CELL, Qt.AspectRatioMode.KeepAspectRatio,
                            Qt.TransformationMode.SmoothTransformation))))
                    score = row.scores[c] if c < len(row.scores) else None
                    item.setToolTip(f"{path.name}\nIdentity score: {_score_text(score)}\n"
                                    "Double-click to zoom.")
                    item.setData(Qt.ItemDataRole.UserRole, str(path))
                self.table.setItem(r, c, item)
            score = row.score
            text = "—" if score is None else f"{score:.2f}"
            if best is not None and row.step == best.step:
                text = f"{text}\n{RECOMMENDED}"
            score_item = QTableWidgetItem(text)
            score_item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
            if best is not None and row.step == best.step:
                score_item.setBackground(QColor("#24402b"))
            self.table.setItem(r, len(grid.prompts), score_item)
        self.table.blockSignals(False)
        for r, row in enumerate(grid.rows):
            if row.step in selected:
                self.table.selectRow(r)
        self._update_buttons()

    # -- selection and actions ---------------------------------------------------------------
    def selected_steps(self) -> list[int]:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()}) \
            if self.table.selectionModel() is not None else []
        return [self.grid.rows[r].step for r in rows if r < len(self.grid.rows)]

    def select_step(self, step: int) -> None:
        for r, row in enumerate(self.grid.rows):
            if row.step == step:
                self.table.selectRow(r)

    def _selected_rows(self) -> list[GridRow]:
        return [row for step in self.selected_steps() if (row := self.grid.row(step))]

    def _update_buttons(self) -> None:
        rows = self._selected_rows()
        self.use_button.setEnabled(len(rows) == 1 and rows[0].can_use)
        self.ab_button.setEnabled(len(rows) == 2 and bool(self.grid.prompts))
        if len(rows) == 1 and not rows[0].can_use:
            self.use_button.setToolTip("This step's LoRA was removed: only the newest "
                                       "checkpoints are kept.")

    def _use(self) -> None:
        rows = self._selected_rows()
        if len(rows) == 1 and rows[0].can_use:
            self.use_requested.emit(rows[0].step)

    def _show_ab(self) -> None:
        if len(self._selected_rows()) == 2:
            self.ab_panel.show()
            self._fill_ab()

    def _fill_ab(self) -> None:
        rows = self._selected_rows()
        column = self.ab_prompt.currentIndex()
        if len(rows) != 2 or column < 0:
            return
        a, b = (row.cells[column] if column < len(row.cells) else None for row in rows)
        self.ab_label.setText(f"A: step {rows[0].step}    B: step {rows[1].step}")
        self.ab_view.set_images(self._full.get(a, QImage()) if a else QImage(),
                                self._full.get(b, QImage()) if b else QImage())

    def ab_images(self) -> tuple[Any, Any]:
        return self.ab_view.a, self.ab_view.b

    def _zoom(self, r: int, c: int) -> None:
        item = self.table.item(r, c)
        path = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        image = self._full.get(Path(path)) if path else None
        if image is None:
            return
        zoom = ZoomDialog(image, f"Step {self.grid.rows[r].step} — "
                                 f"{self.grid.prompts[c]}", self)
        zoom.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        zoom.open()
