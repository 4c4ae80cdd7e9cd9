"""The list of every training job (:class:`HistoryWidget`), newest first.

A plain widget: it emits requests and the Training tab turns those into calls on the training
service. Nothing here touches the disk or a service.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QPushButton,
                               QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget)

from ...core.training.job_warnings import warning_lines
from ...core.training.presets import format_clock
from .job_panel import (ACTIVE, STATE_COLORS, STATE_WORDS, describe_error, family_label,
                           fmt_loss, fmt_when, job_duration, recovery_lines)

COLUMNS = ("State", "Character", "Model · preset", "Started", "Duration", "Final loss", "LoRA",
           "Trainer")
JobIdRole = Qt.ItemDataRole.UserRole + 1
# The LoRA column takes the width left over (its name elided in the middle, whole in the
# tooltip); when even its minimum does not fit, columns are hidden in this order (all shown
# again when the table is wider). Every hidden value is still in the row's tooltip.
LORA_COLUMN = COLUMNS.index("LoRA")
LORA_MIN_WIDTH = 130
HIDE_ORDER = tuple(COLUMNS.index(name) for name in
                   ("Trainer", "Final loss", "Duration", "Model · preset", "Started"))
CHARACTER_MAX_WIDTH = 150   # a long name is elided rather than pushing the others out


class HistoryWidget(QWidget):
    """Every training job, newest first, with actions on the selected one.

    Signals:
        job_selected(str job_id)
        open_folder_requested(str), rerun_requested(str), resume_requested(str),
        export_requested(str)
    """

    job_selected = Signal(str)
    open_folder_requested = Signal(str)
    rerun_requested = Signal(str)
    resume_requested = Signal(str)
    export_requested = Signal(str)
    compare_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._records: dict[str, Any] = {}
        self._backend_labels: dict[str, str] = {}
        self.tree = QTreeWidget()
        self.tree.setObjectName("JobHistory")
        self.tree.setColumnCount(len(COLUMNS))
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(False)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)   # file names keep their end
        self.tree.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        header.setSectionResizeMode(LORA_COLUMN, QHeaderView.ResizeMode.Stretch)
        self._natural: dict[int, int] = {}   # each column's width for its content
        # at least four rows stay visible however small the window (the splitter gives the
        # job panel the rest)
        row = self.tree.fontMetrics().height() + 4
        self.tree.setMinimumHeight(header.sizeHint().height() + 4 * row + 6)
        self.tree.viewport().installEventFilter(self)
        self.empty_label = QLabel("No jobs yet. Every job you start is listed here with its "
                                  "settings, duration, final loss and LoRA.")
        self.empty_label.setProperty("subtle", True)
        self.empty_label.setWordWrap(True)

        title = QLabel("History")
        title.setStyleSheet("font-weight: 600;")
        self.open_button = QPushButton("Open folder")
        self.open_button.setToolTip("Open the job's folder: LoRA, samples, checkpoints, logs.")
        self.rerun_button = QPushButton("Re-run")
        self.rerun_button.setToolTip("Start a new job with exactly the same settings.")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue a stopped or interrupted job from its newest "
                                      "checkpoint.")
        self.compare_button = QPushButton("Compare checkpoints…")
        self.compare_button.setToolTip("The steps the job saved side by side with their "
                                       "sample pictures and how much each looks like the "
                                       "person; make the best one the character's LoRA.")
        self.export_button = QPushButton("Export debug bundle…")
        self.export_button.setToolTip("Save a zip with the job's settings, events, logs, "
                                      "environment and samples (secrets removed) to share "
                                      "when asking for help.")
        top = QHBoxLayout()
        top.addWidget(title)
        top.addStretch(1)
        for b in (self.open_button, self.compare_button, self.rerun_button, self.resume_button,
                  self.export_button):
            top.addWidget(b)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.empty_label)
        layout.addWidget(self.tree, 1)

        self.tree.itemSelectionChanged.connect(self._on_selection)
        self.open_button.clicked.connect(lambda: self._request(self.open_folder_requested))
        self.rerun_button.clicked.connect(lambda: self._request(self.rerun_requested))
        self.resume_button.clicked.connect(lambda: self._request(self.resume_requested))
        self.export_button.clicked.connect(lambda: self._request(self.export_requested))
        self.compare_button.clicked.connect(lambda: self._request(self.compare_requested))
        self._update_buttons()

    # -- content ---------------------------------------------------------------------------
    def set_backend_labels(self, labels: dict[str, str]) -> None:
        """Names of the trainer backends (key -> label) for the Trainer column."""
        self._backend_labels = dict(labels)
        for job_id, record in self._records.items():
            item = self._item(job_id)
            if item is not None:
                self._fill(item, record)

    def backend_label(self, key: str) -> str:
        return self._backend_labels.get(key, key)

    def set_jobs(self, records: list[Any]) -> None:
        """Show ``records`` (newest first), keeping the selection."""
        selected = self.selected_job_id()
        self.tree.blockSignals(True)
        self.tree.clear()
        self._records = {}
        for record in records:
            item = QTreeWidgetItem()
            item.setData(0, JobIdRole, record.job_id)
            self._fill(item, record)
            self.tree.addTopLevelItem(item)
            self._records[record.job_id] = record
        self.tree.blockSignals(False)
        self._measure_columns()   # once per rebuild, not on every progress tick
        self.empty_label.setVisible(not records)
        if selected:
            self.select_job(selected, emit=False)
        self._update_buttons()

    # -- fitting the width ------------------------------------------------------------------
    def _measure_columns(self) -> None:
        """Each column's width for its header and content (the LoRA column: its minimum)."""
        header = self.tree.header()
        metrics = self.tree.fontMetrics()
        for col in range(len(COLUMNS)):
            if col == LORA_COLUMN:
                continue
            title = header.fontMetrics().horizontalAdvance(COLUMNS[col]) + 28  # + padding
            width = max(header.sectionSizeHint(col) + 12, title,
                        self.tree.sizeHintForColumn(col) + 12)
            if col == 0:
                width = max(width, metrics.horizontalAdvance("Running 100%") + 24)
            if col == COLUMNS.index("Character"):
                width = min(width, CHARACTER_MAX_WIDTH)
            self._natural[col] = width
        self._fit_columns()

    def _fit_columns(self) -> None:
        """Show the columns that fit the viewport beside the LoRA column's minimum; never a
        sideways scroll bar."""
        if not self._natural:
            return
        available = self.tree.viewport().width()
        hidden: set[int] = set()
        for col in (None, *HIDE_ORDER):
            if col is not None:
                hidden.add(col)
            used = sum(w for c, w in self._natural.items() if c not in hidden)
            if used + LORA_MIN_WIDTH <= available:
                break
        for col in range(len(COLUMNS)):
            if col == LORA_COLUMN:
                continue
            if self.tree.isColumnHidden(col) != (col in hidden):
                self.tree.setColumnHidden(col, col in hidden)
            if col not in hidden and self.tree.columnWidth(col) != self._natural[col]:
                self.tree.setColumnWidth(col, self._natural[col])

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.tree.viewport() and event.type() == QEvent.Type.Resize:
            self._fit_columns()
        return super().eventFilter(watched, event)

    def update_job(self, record: Any) -> None:
        item = self._item(record.job_id)
        if item is None:
            return
        self._records[record.job_id] = record
        self._fill(item, record)
        self._update_buttons()

    def record(self, job_id: str) -> Any:
        return self._records.get(job_id)

    def job_ids(self) -> list[str]:
        items = (self.tree.topLevelItem(i) for i in range(self.tree.topLevelItemCount()))
        return [item.data(0, JobIdRole) for item in items if item is not None]

    def row_text(self, job_id: str) -> list[str]:
        item = self._item(job_id)
        return [item.text(c) for c in range(len(COLUMNS))] if item else []

    def selected_job_id(self) -> str | None:
        items = self.tree.selectedItems()
        return items[0].data(0, JobIdRole) if items else None

    def select_job(self, job_id: str, emit: bool = True) -> None:
        item = self._item(job_id)
        if item is None:
            return
        if not emit:
            self.tree.blockSignals(True)
        self.tree.setCurrentItem(item)
        item.setSelected(True)
        if not emit:
            self.tree.blockSignals(False)
            self._update_buttons()

    def _item(self, job_id: str) -> QTreeWidgetItem | None:
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            if item is not None and item.data(0, JobIdRole) == job_id:
                return item
        return None

    def _fill(self, item: QTreeWidgetItem, record: Any) -> None:
        state = STATE_WORDS.get(record.state, record.state)
        if record.state == "running" and record.total_steps:
            state = f"Running {100 * record.step // max(1, record.total_steps)}%"
        elif record.state == "stopped" and record.lora_path:
            state = f"Stopped at step {record.step}"      # its LoRA is that step's weights
        recoveries = len(getattr(record, "oom_notes", ()) or ())
        if recoveries:
            state += " · OOM recovered" + (f" ×{recoveries}" if recoveries > 1 else "")
        warnings = tuple(getattr(record, "resource_warnings", ()) or ())
        if warnings:     # disk / VRAM / heat warnings met while it ran: details in the tooltip
            state += f" · ⚠ {len(warnings)}"
        duration = job_duration(record)
        lora = Path(record.lora_path).name if record.lora_path else "—"
        values = (state, record.character_name,
                  f"{family_label(record.family)} · {record.preset or 'custom'}",
                  fmt_when(record.started or record.created),
                  format_clock(duration) if duration is not None else "—",
                  fmt_loss(record.last_loss) if record.state not in ("queued",) else "—",
                  lora, self.backend_label(record.backend))
        # progress arrives ~10 times a second: touch only what changed (each change repaints)
        for col, value in enumerate(values):
            if item.text(col) != value:
                item.setText(col, value)
        color = QColor(STATE_COLORS.get(record.state, "#aab2c0"))
        if item.foreground(0).color() != color:
            item.setForeground(0, QBrush(color))
        tip = [f"{record.character_name} · {family_label(record.family)} · "
               f"{record.preset or 'custom'} · trained with {self.backend_label(record.backend)}",
               f"{record.total_steps} steps"]
        spec = getattr(record, "spec", None)
        if spec is not None:
            tip.append(f"{spec.resolution} px, rank {spec.rank}, alpha {spec.alpha:g}, "
                       f"lr {spec.learning_rate:g}, batch {spec.batch_size}, "
                       f"{spec.lr_scheduler}")
        if recoveries:
            tip.append(recovery_lines(record))
        if record.error_kind or record.state == "failed":
            headline, hint = describe_error(record.error_kind, record.error_message)
            tip += [headline, hint] if hint else [headline]
        if warnings:
            tip.append(f"Resource warning{'s' if len(warnings) > 1 else ''} while it ran:")
            tip += warning_lines(warnings)
        if record.lora_path:
            tip.append(str(record.lora_path))
        text = "\n".join(tip)
        if item.toolTip(0) != text:
            for col in range(len(COLUMNS)):
                item.setToolTip(col, text)

    # -- actions ---------------------------------------------------------------------------
    def _request(self, signal: Any) -> None:
        job_id = self.selected_job_id()
        if job_id:
            signal.emit(job_id)

    def _on_selection(self) -> None:
        self._update_buttons()
        job_id = self.selected_job_id()
        if job_id:
            self.job_selected.emit(job_id)

    def _update_buttons(self) -> None:
        record = self._records.get(self.selected_job_id() or "")
        state = getattr(record, "state", None)
        self.open_button.setEnabled(record is not None)
        self.export_button.setEnabled(record is not None)
        self.compare_button.setEnabled(record is not None
                                       and getattr(record, "checkpoint_step", None) is not None
                                       or bool(getattr(record, "lora_path", None)))
        self.rerun_button.setEnabled(record is not None and state not in ACTIVE)
        self.resume_button.setEnabled(record is not None and state not in ACTIVE
                                      and bool(getattr(record, "resumable", False)))
