"""The pieces of the trainer picker (``training_backend.py``): a backend as the picker shows
it (:class:`BackendChoice`, read from ``available()`` and ``capabilities()``), and one
rendered backend field (:class:`FieldRow`: a file/folder picker, text, number, choice or
on/off input with its label and the error line under it). No disk access.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from collections.abc import Mapping

from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QLineEdit, QToolButton,
                               QVBoxLayout, QWidget)

from ...core.training.profile_fields import FIELD_KINDS

__all__ = ["MODEL_FILTER", "BackendChoice", "FieldRow", "choice_for"]

MODEL_FILTER = ("Model files (*.safetensors *.ckpt *.pt *.pth *.bin *.gguf *.sft);;"
                "All files (*)")


@dataclass(frozen=True)
class BackendChoice:
    """A trainer backend as the picker shows it (from ``available()`` and
    ``capabilities()``)."""

    key: str
    label: str
    available: bool = True
    why: str = ""
    fields: tuple[Mapping[str, Any], ...] = ()
    model_types: tuple[Mapping[str, Any], ...] = ()
    families: tuple[str, ...] = ()
    samples: bool = True                 # makes sample images during training
    unused_fields: tuple[str, ...] = ()  # TrainingJob fields it does not use
    multi_gpu: str = ""                  # its engine for several GPUs ("" = one GPU only)


def choice_for(key: str, label: str, backend: Any) -> BackendChoice:
    """A :class:`BackendChoice` from a backend object; a backend that fails while describing
    itself is listed as unavailable with the error."""
    try:
        ok, why = backend.available()
    except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the tab
        return BackendChoice(key, label, False, f"{label} could not be checked: {exc}")
    try:
        caps = dict(backend.capabilities() or {})
    except Exception as exc:  # noqa: BLE001
        return BackendChoice(key, label, False, f"{label} could not describe itself: {exc}")
    specs = tuple(dict(f) for f in caps.get("fields") or ()
                  if isinstance(f, Mapping) and f.get("key") and f.get("kind", "text")
                  in FIELD_KINDS)
    types = tuple(dict(t) for t in caps.get("model_types") or ()
                  if isinstance(t, Mapping) and t.get("key"))
    return BackendChoice(key, label, bool(ok), str(why or ""), specs, types,
                         tuple(caps.get("families") or ()),
                         samples=caps.get("samples", True) is not False,
                         unused_fields=tuple(str(f) for f in caps.get("unused_job_fields")
                                             or ()),
                         multi_gpu=str(caps.get("multi_gpu") or ""))


class FieldRow:
    """One rendered field: its editor and the error line under it."""

    def __init__(self, spec: Mapping[str, Any], on_change: Any, browse: Any) -> None:
        self.spec = dict(spec)
        kind = self.spec.get("kind", "text")
        label = self.spec.get("label") or self.spec["key"]
        tip = self.spec.get("tooltip") or label
        tip = f"{tip}\n\nSetting: {self.spec['key']}" + (" (required)"
                                                         if self.spec.get("required") else "")
        self.label = QLabel(label + (" *" if self.spec.get("required") else ""))
        self.label.setToolTip(tip)
        self.label.setWordWrap(True)
        self.container = QWidget()
        self.container.setObjectName(f"backend_field_{self.spec['key']}")
        box = QVBoxLayout(self.container)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(2)
        self.browse_button: QToolButton | None = None
        if kind in ("bool", "choice"):
            # not "off" but "the trainer's own default" until the user picks a value
            combo = QComboBox()
            if not self.spec.get("required") and "default" not in self.spec:
                combo.addItem("Trainer default", None)
            if kind == "bool":
                combo.addItem("On", True)
                combo.addItem("Off", False)
            for choice in self.spec.get("choices") or []:
                combo.addItem(str(choice), choice)
            combo.currentIndexChanged.connect(lambda _: on_change())
            self.editor: QComboBox | QLineEdit = combo
        else:
            edit = QLineEdit()
            placeholder = self.spec.get("placeholder") or {
                "file": "Required: choose the file…" if self.spec.get("required")
                else "Optional: choose a file…",
                "folder": "Required: choose the folder…" if self.spec.get("required")
                else "Optional: choose a folder…",
                "int": "a whole number", "float": "a number, e.g. 1e-4",
                "text": "Required" if self.spec.get("required") else ""}.get(kind, "")
            edit.setPlaceholderText(placeholder)
            edit.textChanged.connect(lambda _: on_change())
            self.editor = edit
        self.editor.setToolTip(tip)
        self.editor.setObjectName(f"field_{self.spec['key']}")
        if kind in ("file", "folder"):
            row = QHBoxLayout()
            row.setContentsMargins(0, 0, 0, 0)
            row.addWidget(self.editor, 1)
            self.browse_button = QToolButton()
            self.browse_button.setText("…")
            self.browse_button.setToolTip(f"Choose the {'folder' if kind == 'folder' else 'file'}"
                                          f": {label}")
            self.browse_button.clicked.connect(lambda: browse(self))
            row.addWidget(self.browse_button)
            box.addLayout(row)
        else:
            box.addWidget(self.editor)
        self.error = QLabel("")
        self.error.setObjectName("ErrorText")
        self.error.setWordWrap(True)
        self.error.setVisible(False)
        box.addWidget(self.error)

    @property
    def key(self) -> str:
        return self.spec["key"]

    def raw(self) -> Any:
        if isinstance(self.editor, QComboBox):
            return self.editor.currentData()
        text = self.editor.text()
        return text if self.spec.get("kind", "text") == "text" else text.strip()

    def set(self, value: Any) -> None:
        self.editor.blockSignals(True)
        try:
            if isinstance(self.editor, QComboBox):
                idx = self.editor.findData(value)
                if idx < 0 and isinstance(value, str) and self.spec.get("kind") == "bool":
                    idx = self.editor.findData(value.strip().lower() in ("true", "1", "on"))
                self.editor.setCurrentIndex(max(idx, 0))
            else:
                self.editor.setText("" if value is None else str(value))
        finally:
            self.editor.blockSignals(False)

    def show_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.setVisible(bool(text))


