"""The trainer backend picker of the Training tab and the backend's own fields, rendered
generically (:class:`BackendPickerWidget`).

Every registered backend is listed; one that cannot run here is disabled with its
``available()`` reason as the tooltip. A backend describes what the user fills in through
``capabilities()["fields"]`` (file/folder pickers, text, numbers, choices, switches; shown only
for the ``model_types`` they name) and, optionally, ``capabilities()["model_types"]``; a
profile may add fields of its own. The values go to ``job.extra["fields"]`` and the model type
to ``job.extra["model_type"]``.

The widget is the "Trainer options" section (required fields, files and folders at once; the
optional rest collapsed under "More options"); its :attr:`combo` and :attr:`model_type_combo`
are placed by the setup form in its own rows. One field's input is a
:class:`~.training_backend_fields.FieldRow`. It never touches the disk (only file dialogs).

Signals:
    changed(): the backend, the model type or a field value changed.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any
from collections.abc import Mapping, Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QHBoxLayout,
                               QLabel, QToolButton, QVBoxLayout, QWidget)

from ...core.training.profile_fields import (FieldError, applies_to, check_field_values,
                                             coerce_field_value)
from .backend_fields import MODEL_FILTER, BackendChoice, FieldRow

__all__ = ["BackendPickerWidget"]

class BackendPickerWidget(QWidget):
    """The backend picker, the model type picker and the backend's fields."""

    changed = Signal()

    def __init__(self, backends: Sequence[BackendChoice], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("TrainerOptions")
        self._choices = list(backends)
        self._values: dict[str, Any] = {}          # remembered across backend switches
        self._profile_specs: list[dict[str, Any]] = []
        self._profile_backend: str | None = None
        self._profile_model_type: str | None = None
        self._family: str | None = None
        self._rows: dict[str, FieldRow] = {}

        self.combo = QComboBox()
        self.combo.setObjectName("BackendPicker")
        self.combo.setToolTip("The program that trains. Built-in needs nothing else installed; "
                              "ai-toolkit, diffusion-pipe and kohya sd-scripts are used from "
                              "their folders set in Settings → Trainers.")
        self.model_type_combo = QComboBox()
        self.model_type_combo.setObjectName("ModelTypePicker")
        self.model_type_combo.setToolTip("The kind of model this trainer trains (its own "
                                         "name for it). It decides which files it needs "
                                         "below.")
        self.title = QLabel("Trainer options")
        self.title.setStyleSheet("font-weight: 600; color: #aab2c0; padding-top: 4px;")
        self.title.setToolTip("What this trainer needs from you: model files, folders and "
                              "its own options. Fields marked * are required.")
        self._form = QFormLayout()
        self._form.setContentsMargins(14, 2, 0, 2)
        self._form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self._form.setVerticalSpacing(6)
        # optional options (optimizer details, buckets, …) stay collapsed, like Advanced
        self.more_button = QToolButton()
        self.more_button.setObjectName("MoreTrainerOptions")
        self.more_button.setCheckable(True)
        self.more_button.setArrowType(Qt.ArrowType.RightArrow)
        self.more_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.more_button.setAutoRaise(True)
        self.more_button.setStyleSheet("QToolButton { border: none; padding: 2px 0; "
                                       "color: #aab2c0; } QToolButton:hover { color: #dfe3ea; }")
        self.more_button.setToolTip("The trainer's optional settings. Left empty (or on "
                                    "“Trainer default”), the trainer decides.")
        self.more = QWidget()
        self.more.setObjectName("MoreTrainerOptionsSection")
        self._more_form = QFormLayout(self.more)
        self._more_form.setContentsMargins(14, 0, 0, 2)
        self._more_form.setVerticalSpacing(4)
        self._more_form.setFieldGrowthPolicy(
            QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.more.setVisible(False)
        more_row = QHBoxLayout()
        more_row.setContentsMargins(10, 0, 0, 0)
        more_row.addWidget(self.more_button)
        more_row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addLayout(self._form)
        layout.addLayout(more_row)
        layout.addWidget(self.more)
        self.more_button.toggled.connect(self.set_more_visible)

        self._fill_combo()
        self.combo.currentIndexChanged.connect(lambda _: self._on_backend())
        self.model_type_combo.currentIndexChanged.connect(lambda _: self._on_model_type())
        self._on_backend(emit=False)

    # -- backends ----------------------------------------------------------------------------
    def _fill_combo(self) -> None:
        self.combo.blockSignals(True)
        self.combo.clear()
        model = self.combo.model()
        for i, choice in enumerate(self._choices):
            text = choice.label if choice.available else f"{choice.label} — not available"
            self.combo.addItem(text, choice)
            tip = choice.why or ("Ready." if choice.available else "Not available here.")
            self.combo.setItemData(i, tip, Qt.ItemDataRole.ToolTipRole)
            if not choice.available and isinstance(model, QStandardItemModel):
                item = model.item(i)
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEnabled)
        default = next((i for i, c in enumerate(self._choices)
                        if c.key == "builtin" and c.available), None)
        if default is None:
            default = next((i for i, c in enumerate(self._choices) if c.available), 0)
        self.combo.setCurrentIndex(default if self._choices else -1)
        self.combo.blockSignals(False)

    def choices(self) -> list[BackendChoice]:
        return list(self._choices)

    def set_backends(self, backends: Sequence[BackendChoice]) -> None:
        """List ``backends`` again (e.g. after the trainer installs changed in Settings),
        keeping the picked one when it is still there."""
        current = self.backend()
        self._save_values()
        self._choices = list(backends)
        self._fill_combo()
        if current is not None and self._index(current.key) >= 0:
            self.combo.blockSignals(True)
            self.combo.setCurrentIndex(self._index(current.key))
            self.combo.blockSignals(False)
        self._on_backend()

    def backend(self) -> BackendChoice | None:
        return self.combo.currentData()

    def is_enabled(self, key: str) -> bool:
        """Whether ``key``'s entry can be picked in the list (disabled when unavailable)."""
        idx = self._index(key)
        model = self.combo.model()
        return idx >= 0 and bool(model.flags(model.index(idx, 0)) & Qt.ItemFlag.ItemIsEnabled)

    def _index(self, key: str) -> int:
        return next((i for i, c in enumerate(self._choices) if c.key == key), -1)

    def select_backend(self, key: str) -> bool:
        """Pick ``key`` (even an unavailable one: Start then says why). False if unknown."""
        idx = self._index(key)
        if idx < 0:
            return False
        self.combo.setCurrentIndex(idx)
        return True

    def _on_backend(self, emit: bool = True) -> None:
        self._save_values()
        choice = self.backend()
        self.combo.setToolTip(
            choice.why if choice and not choice.available else
             "The program that trains. Built-in needs nothing else installed; ai-toolkit, "
             "diffusion-pipe and kohya sd-scripts are used from their folders set in "
             "Settings → Trainers.")
        self._fill_model_types()
        self._rebuild()
        if emit:
            self.changed.emit()

    # -- model types -------------------------------------------------------------------------
    def has_model_types(self) -> bool:
        choice = self.backend()
        return bool(choice and choice.model_types)

    def model_type(self) -> str | None:
        return self.model_type_combo.currentData() if self.has_model_types() else None

    def set_model_type(self, key: str | None) -> bool:
        idx = self.model_type_combo.findData(key) if key else -1
        if idx >= 0:
            self.model_type_combo.setCurrentIndex(idx)
        return idx >= 0

    def set_family(self, family: str | None) -> None:
        """The base model's family: picks the matching model type unless one was chosen."""
        if family == self._family:
            return
        self._family = family
        wanted = self._default_model_type()
        if wanted is not None and wanted != self.model_type():
            self.set_model_type(wanted)

    def _default_model_type(self) -> str | None:
        choice = self.backend()
        if choice is None or not choice.model_types:
            return None
        keys = [t["key"] for t in choice.model_types]
        if self._profile_backend == choice.key and self._profile_model_type in keys:
            return self._profile_model_type
        for t in choice.model_types:
            if self._family and self._family in (t.get("families") or ()):
                return t["key"]
        current = self.model_type_combo.currentData()
        return current if current in keys else keys[0]

    def _fill_model_types(self) -> None:
        choice = self.backend()
        self.model_type_combo.blockSignals(True)
        self.model_type_combo.clear()
        for t in (choice.model_types if choice else ()):
            self.model_type_combo.addItem(t.get("label") or t["key"], t["key"])
            tip = t.get("tooltip") or (f"Families: {', '.join(t['families'])}"
                                       if t.get("families") else t["key"])
            self.model_type_combo.setItemData(self.model_type_combo.count() - 1, tip,
                                              Qt.ItemDataRole.ToolTipRole)
        wanted = self._default_model_type()
        if wanted is not None:
            self.model_type_combo.setCurrentIndex(self.model_type_combo.findData(wanted))
        self.model_type_combo.blockSignals(False)

    def _on_model_type(self) -> None:
        self._save_values()
        self._rebuild()
        self.changed.emit()

    # -- fields --------------------------------------------------------------------------------
    def set_profile_fields(self, backend: str | None, specs: Sequence[Mapping[str, Any]],
                           model_type: str | None = None) -> None:
        """Fields a profile adds for ``backend`` (shown while that backend is picked);
        ``model_type`` is the profile's. ``None`` removes them."""
        self._save_values()
        self._profile_backend = backend
        self._profile_specs = [dict(s) for s in specs] if backend else []
        self._profile_model_type = model_type if backend else None
        for spec in self._profile_specs:   # a profile's defaults fill empty fields
            if "default" in spec and _empty(self._values.get(spec["key"])):
                self._values[spec["key"]] = copy.deepcopy(spec["default"])
        current = self.backend()
        if backend and current and current.key == backend:
            wanted = self._default_model_type()
            if wanted is not None and wanted != self.model_type():
                self.model_type_combo.blockSignals(True)
                self.set_model_type(wanted)
                self.model_type_combo.blockSignals(False)
        self._rebuild()
        self.changed.emit()

    def specs(self) -> list[dict[str, Any]]:
        """Every field of the picked backend (and of the applied profile for it)."""
        choice = self.backend()
        if choice is None:
            return []
        own = {s["key"]: dict(s) for s in choice.fields}
        if self._profile_backend != choice.key:
            return list(own.values())
        # the profile's fields first, in its order; its words are more specific
        merged = {s["key"]: {**own.get(s["key"], {}), **s} for s in self._profile_specs}
        merged.update({k: v for k, v in own.items() if k not in merged})
        return list(merged.values())

    def backend_field_keys(self) -> set[str]:
        """The keys of the fields the picked backend itself declares."""
        choice = self.backend()
        return {s["key"] for s in choice.fields} if choice is not None else set()

    def visible_specs(self) -> list[dict[str, Any]]:
        model_type = self.model_type()
        return [s for s in self.specs() if applies_to(s, model_type)]

    def _is_main(self, spec: Mapping[str, Any]) -> bool:
        """Shown at once: required fields, files and folders, and the applied profile's own
        fields; the other options wait under "More options"."""
        choice = self.backend()
        declared = {s["key"] for s in self._profile_specs} \
            if choice is not None and self._profile_backend == choice.key else set()
        return bool(spec.get("required")) or spec.get("kind") in ("file", "folder") \
            or spec["key"] in declared

    def _rebuild(self) -> None:
        for form in (self._form, self._more_form):
            while form.rowCount():
                form.removeRow(0)
        self._rows = {}
        more = 0
        for spec in self.visible_specs():
            row = FieldRow(spec, lambda key=spec["key"]: self._on_field(key), self._browse)
            key = spec["key"]
            if key not in self._values and "default" in spec:
                self._values[key] = copy.deepcopy(spec["default"])
            if key in self._values:
                row.set(self._values[key])
            if self._is_main(spec):
                # the label on its own line above a full-width input (files are named in
                # words, e.g. "Chroma transformer (chroma-unlocked-v47)")
                wrapper = QWidget()
                box = QVBoxLayout(wrapper)
                box.setContentsMargins(0, 0, 0, 0)
                box.setSpacing(2)
                box.addWidget(row.label)
                box.addWidget(row.container)
                self._form.addRow(wrapper)
            else:   # short option names: label and input side by side
                self._more_form.addRow(row.label, row.container)
                more += 1
            self._rows[key] = row
        self.more_button.setText(f"More options ({more})")
        self.more_button.setVisible(more > 0)
        self.more.setVisible(more > 0 and self.more_button.isChecked())
        self.setVisible(bool(self._rows))

    def set_more_visible(self, visible: bool) -> None:
        """Open or collapse the optional trainer options."""
        self.more_button.blockSignals(True)
        self.more_button.setChecked(visible)
        self.more_button.blockSignals(False)
        self.more_button.setArrowType(Qt.ArrowType.DownArrow if visible
                                      else Qt.ArrowType.RightArrow)
        self.more.setVisible(visible and self._more_form.rowCount() > 0)

    def is_main(self, key: str) -> bool:
        """Whether field ``key`` is shown at once (not under "More options")."""
        row = self._rows.get(key)
        return row is not None and self._is_main(row.spec)

    def rows(self) -> dict[str, FieldRow]:
        return dict(self._rows)

    def _save_values(self) -> None:
        for key, row in self._rows.items():
            self._values[key] = row.raw()

    def _on_field(self, key: str) -> None:
        row = self._rows.get(key)
        if row is not None:
            self._values[key] = row.raw()
            problems = [e for e in check_field_values([row.spec], {key: row.raw()},
                                                      self.model_type()) if e.field == key]
            # a wrong value is pointed out at once; an empty required one only names itself
            # in the Start hint
            row.show_error("" if not problems or _empty(row.raw()) else problems[0].message)
        self.changed.emit()

    def _browse(self, row: FieldRow) -> None:
        current = str(row.raw() or "")
        start = current if current else str(Path.home())
        label = row.spec.get("label") or row.key
        if row.spec.get("kind") == "folder":
            path = QFileDialog.getExistingDirectory(self, f"Choose {label}", start)
        else:
            path, _ = QFileDialog.getOpenFileName(self, f"Choose {label}", start, MODEL_FILTER)
        if path:
            row.set(path)
            self._on_field(row.key)

    def raw_values(self) -> dict[str, Any]:
        """What is filled in, by key (shown fields only, as typed)."""
        self._save_values()
        return {key: self._values.get(key) for key in self._rows}

    def values(self) -> dict[str, Any]:
        """The shown fields' values, converted to their kinds; empty ones left out."""
        out = {}
        for spec in self.visible_specs():
            value = self.raw_values().get(spec["key"])
            if _empty(value):
                continue
            try:
                out[spec["key"]] = coerce_field_value(spec, value)
            except ValueError:
                out[spec["key"]] = value
        return out

    def set_values(self, values: Mapping[str, Any]) -> None:
        """Fill fields from ``values`` (e.g. an earlier job's ``extra["fields"]``)."""
        self._values.update(copy.deepcopy(dict(values)))
        for key, row in self._rows.items():
            if key in values:
                row.set(values[key])
        self.changed.emit()

    def problems(self) -> list[FieldError]:
        """Required fields left empty and values of the wrong kind, each naming the field."""
        return check_field_values(self.visible_specs(), self.raw_values(), self.model_type())

    def show_problems(self, errors: Sequence[FieldError]) -> None:
        by_key = {e.field: e.message for e in errors}
        for key, row in self._rows.items():
            row.show_error(by_key.get(key, ""))

    def extra(self) -> dict[str, Any]:
        """``{"model_type": …, "fields": {…}}`` for ``job.extra`` (keys only when set)."""
        out: dict[str, Any] = {}
        if self.model_type():
            out["model_type"] = self.model_type()
        values = self.values()
        if values:
            out["fields"] = values
        return out


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())
