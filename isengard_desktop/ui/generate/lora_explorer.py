"""LoRA explorer (issue 17, item 6): a grid of LoRAs × strengths (rows) × prompts (columns),
every picture with the same fixed seed, so what changes between cells is only the LoRA and its
strength; an A/B view of any two cells with a split slider; any cell → the gallery, where its
parameters can be reused.

The model, size, quality tier and negative prompt come from the Generate form; each cell is
one ordinary generation job (``GenerationService.submit``), so its picture lands in the
gallery with its metadata like any other. The LoRAs offered are every LoRA the library holds
for characters of the form's family (a character's older LoRAs and checkpoints made the
character's LoRA included), each with its character's trigger word inserted in the prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QDialog, QDialogButtonBox, QFormLayout,
                               QHBoxLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem,
                               QPlainTextEdit, QPushButton, QSlider, QSpinBox, QSplitter,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from ...core.comfy.jobs import GalleryItem, GenerationRequest, LoraChoice
from ...services.background import BackgroundOp
from ..widgets.ab_view import ABView
from .form import insert_trigger

__all__ = ["ExplorerCell", "LoraEntry", "LoraExplorerDialog", "parse_strengths"]

CELL = 150
DEFAULT_STRENGTHS = "0.4, 0.6, 0.8, 1.0, 1.2"
MAX_CELLS = 120


@dataclass(frozen=True)
class LoraEntry:
    """A LoRA the explorer can use: its character, file and trigger."""

    character_id: int
    character: str
    trigger: str
    path: str
    family: str
    steps: int

    @property
    def label(self) -> str:
        steps = f", {self.steps} steps" if self.steps else ""
        return f"{self.character} · {Path(self.path).stem}{steps}"


@dataclass
class ExplorerCell:
    row: int
    column: int
    lora: LoraEntry
    strength: float
    prompt: str
    job_id: str = ""
    item: GalleryItem | None = None
    error: str = ""


def parse_strengths(text: str) -> list[float]:
    """"0.4, 0.8 1.2" → [0.4, 0.8, 1.2]. ValueError naming the bad value (strengths are
    0–2, as the Generate form's slider allows)."""
    out: list[float] = []
    for part in text.replace(";", ",").replace(" ", ",").split(","):
        if not part.strip():
            continue
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"Strengths: {part.strip()!r} is not a number.") from None
        if not 0.0 <= value <= 2.0:
            raise ValueError(f"Strengths: {value:g} is outside 0–2.")
        if value not in out:
            out.append(value)
    if not out:
        raise ValueError("Strengths: give at least one, e.g. 0.6, 0.8, 1.0.")
    return out


def lora_entries(library: Any, family: str) -> list[LoraEntry]:
    """Every LoRA of the library for ``family``, newest first per character."""
    entries = []
    for ch in library.characters():
        for lora in sorted(library.loras(ch.id), key=lambda r: (r.created, r.id), reverse=True):
            if lora.family == family:
                entries.append(LoraEntry(ch.id, ch.name, ch.trigger_word, lora.path,
                                         lora.family, lora.steps))
    return entries


def _load(path: str) -> QImage:
    image = QImage(path)
    return image if image.isNull() else image.scaled(
        768, 768, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)


class LoraExplorerDialog(QDialog):
    """Signals: ``show_in_gallery(int item_id)``: the user opened a cell's picture."""

    show_in_gallery = Signal(int)

    def __init__(self, service: Any, library: Any, base: GenerationRequest,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("LoRA explorer")
        self.resize(1100, 780)
        self._service = service
        self._base = base
        self.cells: list[ExplorerCell] = []
        self._by_job: dict[str, ExplorerCell] = {}
        self._images: dict[int, QImage] = {}

        self.loras = QListWidget()
        self.loras.setToolTip("The LoRAs to compare (every LoRA of this family in the "
                              "library). Tick two or more, or one to try its strengths.")
        for entry in lora_entries(library, base.family):
            item = QListWidgetItem(entry.label)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)
            item.setData(Qt.ItemDataRole.UserRole, entry)
            item.setToolTip(entry.path)
            self.loras.addItem(item)
        self.loras.setMaximumHeight(200)
        self.strengths = QLineEdit(DEFAULT_STRENGTHS)
        self.strengths.setToolTip("LoRA strengths to try, separated by commas (0–2). 1.0 is "
                                  "the LoRA as trained; lower blends in less of it.")
        self.prompts = QPlainTextEdit(base.prompt)
        self.prompts.setToolTip("One prompt per line: one column each. The trigger word of "
                                "each LoRA's character is added where it is missing.")
        self.prompts.setMaximumHeight(90)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(base.seed if base.seed is not None else 1234)
        self.seed.setToolTip("Every picture uses this seed, so the cells differ only by LoRA, "
                             "strength and prompt.")
        self.render_button = QPushButton("Render grid")
        self.render_button.setToolTip("Queue one picture per LoRA × strength × prompt.")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.status = QLabel(f"{base.family} · {base.model or 'the form’s model'} · "
                             f"{base.aspect} · {base.tier} quality")
        self.status.setProperty("subtle", True)
        self.status.setWordWrap(True)
        self.error = QLabel()
        self.error.setProperty("error", True)
        self.error.setWordWrap(True)
        self.error.hide()

        settings = QFormLayout()
        settings.addRow("LoRAs", self.loras)
        settings.addRow("Strengths", self.strengths)
        settings.addRow("Prompts", self.prompts)
        settings.addRow("Seed", self.seed)
        buttons_row = QHBoxLayout()
        buttons_row.addWidget(self.render_button)
        buttons_row.addWidget(self.cancel_button)
        buttons_row.addStretch(1)
        settings.addRow(buttons_row)
        settings_box = QWidget()
        settings_box.setLayout(settings)
        settings_box.setMaximumWidth(380)

        self.table = QTableWidget()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.MultiSelection)
        self.table.setIconSize(QSize(CELL, CELL))
        self.table.verticalHeader().setDefaultSectionSize(CELL + 8)
        self.table.horizontalHeader().setDefaultSectionSize(CELL + 8)
        self.table.horizontalHeader().setDefaultAlignment(
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.table.cellDoubleClicked.connect(self._open_cell)
        self.ab_view = ABView()
        self.ab_label = QLabel("Select two pictures to compare them here.")
        self.ab_label.setProperty("subtle", True)
        self.ab_slider = QSlider(Qt.Orientation.Horizontal)
        self.ab_slider.setRange(0, 100)
        self.ab_slider.setValue(50)
        self.ab_slider.setToolTip("Move the split between A (left) and B (right).")
        self.ab_slider.valueChanged.connect(lambda v: self.ab_view.set_split(v / 100))
        ab_box = QWidget()
        ab = QVBoxLayout(ab_box)
        ab.setContentsMargins(0, 0, 0, 0)
        ab.addWidget(self.ab_label)
        ab.addWidget(self.ab_view, 1)
        ab.addWidget(self.ab_slider)
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.table)
        right.addWidget(ab_box)
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 2)
        right.setChildrenCollapsible(False)
        body = QHBoxLayout()
        body.addWidget(settings_box)
        body.addWidget(right, 1)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addWidget(self.error)
        layout.addLayout(body, 1)
        layout.addWidget(close)

        self.render_button.clicked.connect(self.render_grid)
        self.cancel_button.clicked.connect(self.cancel)
        service.job_finished.connect(self._on_finished)
        service.job_failed.connect(self._on_failed)
        if not self.loras.count():
            self.render_button.setEnabled(False)
            self.render_button.setToolTip(f"No trained {base.family} LoRA in the library yet.")

    # -- choices ---------------------------------------------------------------------------
    def check(self, paths: Sequence[str]) -> None:
        for i in range(self.loras.count()):
            item = self.loras.item(i)
            entry = item.data(Qt.ItemDataRole.UserRole)
            item.setCheckState(Qt.CheckState.Checked if entry.path in paths
                               else Qt.CheckState.Unchecked)

    def chosen(self) -> list[LoraEntry]:
        return [self.loras.item(i).data(Qt.ItemDataRole.UserRole)
                for i in range(self.loras.count())
                if self.loras.item(i).checkState() == Qt.CheckState.Checked]

    def _fail(self, message: str) -> None:
        self.error.setText(message)
        self.error.show()

    # -- rendering -------------------------------------------------------------------------
    def render_grid(self) -> None:
        """Build the grid and queue one job per cell."""
        self.error.hide()
        loras = self.chosen()
        if not loras:
            self._fail("Tick at least one LoRA.")
            return
        try:
            strengths = parse_strengths(self.strengths.text())
        except ValueError as exc:
            self._fail(str(exc))
            return
        prompts = [p.strip() for p in self.prompts.toPlainText().splitlines() if p.strip()]
        if not prompts:
            self._fail("Prompts: write at least one line.")
            return
        count = len(loras) * len(strengths) * len(prompts)
        if count > MAX_CELLS:
            self._fail(f"That is {count} pictures; the explorer renders at most {MAX_CELLS} "
                       "at once. Tick fewer LoRAs, strengths or prompts.")
            return
        self.cancel()
        self.cells, self._by_job, self._images = [], {}, {}
        rows = [(lora, s) for lora in loras for s in strengths]
        self.table.clear()
        self.table.setRowCount(len(rows))
        self.table.setColumnCount(len(prompts))
        self.table.setHorizontalHeaderLabels([p if len(p) <= 40 else p[:39] + "…"
                                              for p in prompts])
        for r, (lora, strength) in enumerate(rows):
            self.table.setVerticalHeaderItem(
                r, QTableWidgetItem(f"{lora.character} · {Path(lora.path).stem}\n"
                                    f"strength {strength:g}"))
            for c, prompt in enumerate(prompts):
                cell = ExplorerCell(r, c, lora, strength, insert_trigger(prompt, lora.trigger)
                                    .strip().rstrip(",").strip())
                self.cells.append(cell)
                item = QTableWidgetItem("Queued…")
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.table.setItem(r, c, item)
        seed = self.seed.value()
        for cell in self.cells:
            request = replace(self._base, prompt=cell.prompt, seed=seed, batch=1,
                              target="gallery", character_id=cell.lora.character_id,
                              lora=LoraChoice(cell.lora.character_id, cell.lora.path,
                                              cell.strength, cell.lora.trigger))
            cell.job_id = self._service.submit(request)
            self._by_job[cell.job_id] = cell
        self.cancel_button.setEnabled(True)
        self._update_status()

    def cancel(self) -> None:
        for cell in self.cells:
            if cell.item is None and not cell.error and cell.job_id:
                self._service.cancel(cell.job_id)
        self.cancel_button.setEnabled(False)

    def _update_status(self) -> None:
        done = sum(1 for c in self.cells if c.item is not None or c.error)
        failed = sum(1 for c in self.cells if c.error)
        text = f"{done} of {len(self.cells)} pictures"
        if failed:
            text += f" ({failed} failed)"
        self.status.setText(text + (" — done. Double-click a picture to open it in the "
                                    "gallery." if done == len(self.cells) else "…"))
        if done == len(self.cells):
            self.cancel_button.setEnabled(False)

    def _on_finished(self, job_id: str, items: tuple[GalleryItem, ...]) -> None:
        cell = self._by_job.get(job_id)
        if cell is None or not items:
            return
        cell.item = items[0]
        self._update_status()
        path, target = items[0].path, cell
        BackgroundOp(parent=self, op=lambda: _load(path)) \
            .success(lambda image: self._show(target, image)).run()

    def _on_failed(self, job_id: str, message: str) -> None:
        cell = self._by_job.get(job_id)
        if cell is None:
            return
        cell.error = message
        item = self.table.item(cell.row, cell.column)
        if item is not None:
            item.setText("Failed")
            item.setToolTip(message)
        self._update_status()

    def _show(self, cell: ExplorerCell, image: QImage) -> None:
        if cell.item is None or image.isNull():
            return
        self._images[cell.item.id] = image
        item = self.table.item(cell.row, cell.column)
        if item is None:
            return
        item.setText("")
        item.setIcon(QIcon(QPixmap.fromImage(image.scaled(
            CELL, CELL, Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation))))
        item.setToolTip(f"{cell.lora.label}\nstrength {cell.strength:g} · seed "
                        f"{cell.item.seed}\n{cell.prompt}\nDouble-click: open in the gallery.")

    # -- A/B and gallery ---------------------------------------------------------------------
    def cell_at(self, row: int, column: int) -> ExplorerCell | None:
        return next((c for c in self.cells if c.row == row and c.column == column), None)

    def _selected_cells(self) -> list[ExplorerCell]:
        out = []
        for index in sorted(self.table.selectedIndexes(), key=lambda i: (i.row(), i.column())):
            cell = self.cell_at(index.row(), index.column())
            if cell is not None:
                out.append(cell)
        return out

    def _selection_changed(self) -> None:
        cells = self._selected_cells()
        ready = [c for c in cells if c.item is not None and c.item.id in self._images]
        if len(cells) == 2 and len(ready) == 2:
            a, b = ready
            assert a.item is not None and b.item is not None
            self.ab_view.set_images(self._images[a.item.id], self._images[b.item.id])
            self.ab_label.setText(f"A: {Path(a.lora.path).stem} at {a.strength:g}    "
                                  f"B: {Path(b.lora.path).stem} at {b.strength:g}")
        elif len(cells) == 2:
            self.ab_label.setText("Both pictures must be rendered first.")
        else:
            self.ab_label.setText("Select two pictures to compare them here.")

    def _open_cell(self, row: int, column: int) -> None:
        cell = self.cell_at(row, column)
        if cell is not None and cell.item is not None:
            self.show_in_gallery.emit(cell.item.id)
