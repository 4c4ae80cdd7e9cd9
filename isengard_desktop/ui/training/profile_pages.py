"""The pages of the profile manager (``training_profiles.py``): the preview of one profile
with its problems next to the settings, two profiles side by side, and a user profile's
earlier versions. Plain widgets: they show what they are given and touch no disk.

Signals (:class:`HistoryPage`):
    entry_picked(int): the row of the earlier version picked (-1: none).
    restore_requested(int): restore that row's version.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Iterable, Mapping, Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QHBoxLayout, QHeaderView, QLabel,
                               QListWidget, QListWidgetItem, QPushButton, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from ...core.models import FAMILY_LABELS
from ...core.training.profile_store import HistoryEntry
from ...core.training.profiles import DiffRow, Profile, diff, flatten
from ...core.training.profile_fields import FieldError

__all__ = ["ComparePage", "HistoryPage", "PreviewPage", "fmt_value", "preview_rows"]

PROBLEM = QColor("#f0a3a3")
SECTION_TIPS = {
    "version": "The profile file format version (migrated automatically when it is older).",
    "profile": "What the profile is for: its trainer, model family and VRAM tier.",
    "backend": "Passed as-is to the trainer (job.extra): options named as that tool names "
               "them.",
    "fields": "Filled in by you on this machine (files, folders, options) before a job can "
              "start.",
}
PROFILE_TIPS = {
    "profile.name": "The profile's name; unique among shipped and your profiles.",
    "profile.description": "What the profile is for, in words.",
    "profile.backend": "The trainer that runs the job: builtin, ai-toolkit, diffusion-pipe "
                       "or kohya.",
    "profile.family": "The base model family the LoRA is trained for.",
    "profile.vram_gb": "The GPU memory (GB) the profile was made for; it may not fit a "
                       "smaller card.",
    "profile.model_type": "The trainer's own name for the kind of model it trains.",
}


def fmt_value(value: Any) -> str:
    """A setting's value in a table cell."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(fmt_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {fmt_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def _cell(text: str, tip: str = "") -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
    item.setToolTip(tip or text)
    return item


def make_table(headers: Sequence[str]) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(list(headers))
    table.verticalHeader().setVisible(False)
    table.verticalHeader().setDefaultSectionSize(table.fontMetrics().height() + 10)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setWordWrap(False)
    header = table.horizontalHeader()
    header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
    for col in range(1, len(headers)):
        header.setSectionResizeMode(col, QHeaderView.ResizeMode.Stretch)
    return table


def fill_table(table: QTableWidget, rows: Iterable[Sequence[str]],
          tips: Mapping[str, str] | None = None, problem_col: int | None = None) -> None:
    rows = list(rows)
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            item = _cell(text, (tips or {}).get(row[0], "") if c == 0 else "")
            if problem_col is not None and c == problem_col and text:
                item.setForeground(QBrush(PROBLEM))
            table.setItem(r, c, item)



def table_rows(table: QTableWidget) -> list[list[str]]:
    """A table's cells as text, row by row."""
    return [[item.text() if (item := table.item(r, c)) else ""
             for c in range(table.columnCount())] for r in range(table.rowCount())]


def _diff_rows(rows: Iterable[DiffRow]) -> list[tuple[str, str, str]]:
    return [(r.field, fmt_value(r.a), fmt_value(r.b)) for r in rows]


class PreviewPage(QWidget):
    """One profile: what it is for, every setting, and each problem next to its setting."""

    def __init__(self, tips: Mapping[str, str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._tips = dict(tips)
        self.title_label = QLabel("")
        self.title_label.setObjectName("Title")
        self.meta_label = QLabel("")
        self.meta_label.setProperty("subtle", True)
        self.description_label = QLabel("")
        self.description_label.setWordWrap(True)
        self.table = make_table(("Setting", "Value", "Problem"))
        self.table.setObjectName("ProfilePreview")
        self.validation_label = QLabel("")
        self.validation_label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title_label)
        layout.addWidget(self.meta_label)
        layout.addWidget(self.description_label)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.validation_label)

    def show_profile(self, profile: Profile | None, errors: Sequence[FieldError] = (),
                     where: str = "") -> None:
        if profile is None:
            self.title_label.setText("No profile selected")
            self.meta_label.setText("")
            self.description_label.setText("Pick a profile on the left to see its settings.")
            self.table.setRowCount(0)
            self.validation_label.setText("")
            return
        tier = f" · {profile.vram_gb:g} GB" if isinstance(profile.vram_gb, (int, float)) \
            else ""
        self.title_label.setText(profile.name or "(no name)")
        self.meta_label.setText(f"{profile.backend} · "
                                f"{FAMILY_LABELS.get(profile.family, profile.family)}{tier}"
                                + (f" · model type {profile.model_type}"
                                   if profile.model_type else "") + f" · {where}")
        self.description_label.setText(profile.description)
        rows, tips = preview_rows(profile, errors)
        fill_table(self.table, rows, {**self._tips, **tips}, problem_col=2)
        if errors:
            self.validation_label.setText(
                f"{len(errors)} problem{'s' if len(errors) != 1 else ''}: see the Problem "
                "column next to each setting.")
            self.validation_label.setStyleSheet(f"color: {PROBLEM.name()};")
        else:
            self.validation_label.setText("No problems found. File and folder fields are "
                                          "filled in on the form before a job can start.")
            self.validation_label.setStyleSheet("color: #8fd6a8;")

    def rows(self) -> list[list[str]]:
        return table_rows(self.table)


class ComparePage(QWidget):
    """Two profiles side by side: only the settings that differ."""

    def __init__(self, tips: Mapping[str, str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._tips = dict(tips)
        self._profiles: list[Profile] = []
        self.combo_a = QComboBox()
        self.combo_b = QComboBox()
        for combo, side in ((self.combo_a, "left"), (self.combo_b, "right")):
            combo.setToolTip(f"The profile shown on the {side}.")
            combo.setMinimumContentsLength(16)
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.table = make_table(("Setting", "A", "B"))
        self.table.setObjectName("ProfileCompare")
        self.label = QLabel("")
        self.label.setProperty("subtle", True)
        picks = QHBoxLayout()
        picks.addWidget(QLabel("Compare"))
        picks.addWidget(self.combo_a, 1)
        picks.addWidget(QLabel("with"))
        picks.addWidget(self.combo_b, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(picks)
        layout.addWidget(self.label)
        layout.addWidget(self.table, 1)
        self.combo_a.currentIndexChanged.connect(lambda _: self.update_table())
        self.combo_b.currentIndexChanged.connect(lambda _: self.update_table())

    def set_profiles(self, profiles: Sequence[Profile]) -> None:
        """The profiles to pick from (the picks are kept by name)."""
        self._profiles = list(profiles)
        for combo in (self.combo_a, self.combo_b):
            current = combo.currentData()
            combo.blockSignals(True)
            combo.clear()
            for profile in self._profiles:
                combo.addItem(profile.name, profile.name)
            combo.setCurrentIndex(combo.findData(current) if current is not None else -1)
            combo.blockSignals(False)
        if self.combo_a.currentIndex() < 0 and self._profiles:
            self.combo_a.setCurrentIndex(0)
        if self.combo_b.currentIndex() < 0 and len(self._profiles) > 1:
            self.combo_b.setCurrentIndex(1)
        self.update_table()

    def compare(self, a: str, b: str) -> list[list[str]]:
        for combo, name in ((self.combo_a, a), (self.combo_b, b)):
            combo.blockSignals(True)
            combo.setCurrentIndex(combo.findData(name))
            combo.blockSignals(False)
        self.update_table()
        return self.rows()

    def _profile(self, name: Any) -> Profile | None:
        return next((p for p in self._profiles if p.name == name), None)

    def update_table(self) -> None:
        a, b = self._profile(self.combo_a.currentData()), self._profile(self.combo_b.currentData())
        self.table.setHorizontalHeaderLabels(["Setting", a.name if a else "A",
                                              b.name if b else "B"])
        if a is None or b is None:
            self.table.setRowCount(0)
            self.label.setText("Pick two profiles to compare.")
            return
        rows = diff(a, b)
        fill_table(self.table, _diff_rows(rows), self._tips)
        self.label.setText("The same profile." if a is b else
                           f"{len(rows)} setting{'s' if len(rows) != 1 else ''} differ; "
                           "settings that are the same are not listed.")

    def rows(self) -> list[list[str]]:
        return table_rows(self.table)


class HistoryPage(QWidget):
    """A user profile's earlier versions, newest first, and what changed since one."""

    entry_picked = Signal(int)
    restore_requested = Signal(int)

    def __init__(self, tips: Mapping[str, str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._tips = dict(tips)
        self.entries: list[HistoryEntry] = []
        self.list = QListWidget()
        self.list.setObjectName("ProfileHistory")
        self.list.setMaximumHeight(150)
        self.label = QLabel("")
        self.label.setProperty("subtle", True)
        self.label.setWordWrap(True)
        self.table = make_table(("Setting", "That version", "Now"))
        self.restore_button = QPushButton("Restore this version")
        self.restore_button.setToolTip("Make the selected earlier version the current one. "
                                       "The current version is kept in the history.")
        layout = QVBoxLayout(self)
        layout.addWidget(self.label)
        layout.addWidget(self.list)
        layout.addWidget(self.table, 1)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.restore_button)
        layout.addLayout(row)
        self.list.currentRowChanged.connect(self._on_row)
        self.restore_button.clicked.connect(
            lambda: self.restore_requested.emit(self.list.currentRow())
            if self.list.currentRow() >= 0 else None)
        self.restore_button.setEnabled(False)

    def clear(self, message: str) -> None:
        self.entries = []
        self.list.blockSignals(True)
        self.list.clear()
        self.list.blockSignals(False)
        self.table.setRowCount(0)
        self.label.setText(message)
        self.restore_button.setEnabled(False)

    def set_entries(self, name: str, entries: Sequence[HistoryEntry]) -> None:
        self.clear(f"{len(entries)} earlier version{'s' if len(entries) != 1 else ''} of "
                   f"“{name}”, newest first. Pick one to see what changed." if entries else
                   f"No earlier versions of “{name}” yet: each save keeps the one it "
                   "replaces.")
        self.entries = list(entries)
        self.list.blockSignals(True)
        for entry in entries:
            when = entry.when.astimezone().strftime("%Y-%m-%d %H:%M:%S")
            item = QListWidgetItem(f"{when} — the version replaced then")
            item.setToolTip(str(entry.path))
            self.list.addItem(item)
        self.list.blockSignals(False)

    def show_diff(self, rows: Iterable[DiffRow]) -> None:
        fill_table(self.table, _diff_rows(rows), self._tips)

    def _on_row(self, row: int) -> None:
        self.table.setRowCount(0)
        self.restore_button.setEnabled(row >= 0)
        self.entry_picked.emit(row)

    def rows(self) -> list[list[str]]:
        return table_rows(self.table)


def preview_rows(profile: Profile, errors: Sequence[FieldError]
                 ) -> tuple[list[tuple[str, str, str]], dict[str, str]]:
    """(setting, value, problem) rows of a profile, and tooltips for the settings. Every
    field declaration is one row; each problem sits on the row of the setting it names."""
    doc = profile.to_dict()
    fields = doc.pop("fields", {})
    rows: list[list[str]] = []
    tips: dict[str, str] = {}
    for key, value in flatten(doc).items():
        rows.append([key, fmt_value(value), ""])
        section = key.split(".")[0]
        if section in SECTION_TIPS and key not in tips:
            tips[key] = SECTION_TIPS[section]
    for key, spec in fields.items():
        name = f"fields.{key}"
        if isinstance(spec, dict):
            kind = spec.get("kind", "text")
            text = f"{spec.get('label', key)} ({kind}, " \
                   f"{'required' if spec.get('required') else 'optional'})"
            if "default" in spec:
                text += f", default {fmt_value(spec['default'])}"
            tips[name] = spec.get("tooltip") or SECTION_TIPS["fields"]
        else:
            text = fmt_value(spec)
        rows.append([name, text, ""])
    for error in errors:
        row = _row_for(rows, error.field)
        if row is None:
            rows.append([error.field, "—", error.message])
        else:
            extra = error.message if error.field == row[0] \
                else f"{error.field.removeprefix(row[0] + '.')}: {error.message}"
            row[2] = f"{row[2]}; {extra}" if row[2] else extra
    return [tuple(r) for r in rows], tips  # type: ignore[misc]


def _row_for(rows: list[list[str]], field: str) -> list[str] | None:
    best = None
    for row in rows:
        names_it = field == row[0] or field.startswith((row[0] + ".", row[0] + "["))
        if names_it and (best is None or len(row[0]) > len(best[0])):
            best = row
    return best
