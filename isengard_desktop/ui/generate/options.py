"""Parts of the Generate form: the character LoRA picker (:class:`LoraPickerWidget`) and the
extras toggles with their model and image pickers (:class:`ExtrasWidget`).

Each part holds its own state and emits ``changed()`` when the user edits it; the form reads
them. Nothing here calls a service.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterable, Mapping, Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QGridLayout,
                               QHBoxLayout, QLabel, QPushButton,
                               QSlider, QVBoxLayout, QWidget)

from .presets import FEATURES, family_label
from ..training.advanced_fields import shrinkable

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp);;All files (*)"
# feature -> (GenerationRequest.feature_inputs key, label, tooltip)
FEATURE_IMAGES = {"controlnet": ("controlnet_image", "Control image",
                                 "The picture whose pose and outlines the new picture follows."),
                  "ipadapter": ("ipadapter_image", "Reference image",
                                "The picture whose look (face, style) the new picture borrows.")}
# feature -> (feature_inputs key, label, tooltip) of the model file it needs picked
FEATURE_MODELS = {"controlnet": ("controlnet_model", "ControlNet model",
                                 "The ControlNet model file on the server: its kind (pose, "
                                 "depth, canny…) decides what it takes from the control image.")}
FEATURE_LABELS = {key: label for key, label, _tip in FEATURES}


@dataclass(frozen=True)
class LoraOption:
    """A character with a trained LoRA, as the LoRA picker lists it."""

    character_id: int
    name: str
    trigger: str
    path: str
    family: str


def subtle(text: str = "") -> QLabel:
    label = QLabel(text)
    label.setProperty("subtle", True)
    label.setWordWrap(True)
    return label


class LoraPickerWidget(QWidget):
    """Characters with a LoRA, the strength slider (0–1.5) and the trigger word.

    Signals:
        changed(): another character (or none) was picked.
    """

    changed = Signal()

    TIP = ("A character you trained: their LoRA is applied and their trigger word goes into "
           "the prompt.")
    STRENGTH_TIP = ("How strongly the LoRA pulls towards the person, 0 to 1.5. 0.8–1.0 is "
                    "usual; higher can over-bake the face.")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._options: list[LoraOption] = []
        self._locked: LoraOption | None = None
        self.visibility: list[tuple[str, bool, str]] = []
        self.combo = QComboBox()
        self.combo.setObjectName("LoraCombo")
        shrinkable(self.combo, 14)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("LoraStrength")
        self.slider.setRange(0, 150)
        self.slider.setSingleStep(5)
        self.slider.setPageStep(10)
        self.slider.setValue(100)
        self.value_label = QLabel("1.00")
        self.value_label.setMinimumWidth(34)
        self.value_label.setToolTip(self.STRENGTH_TIP)
        self.strength_label = QLabel("Strength")
        self.strength_label.setToolTip(self.STRENGTH_TIP)
        self.trigger_label = subtle()
        self.trigger_label.setObjectName("TriggerLabel")
        self.trigger_label.setTextFormat(Qt.TextFormat.RichText)
        self.hint = subtle()
        row = QHBoxLayout()
        row.addWidget(self.strength_label)
        row.addWidget(self.slider, 1)
        row.addWidget(self.value_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.combo)
        layout.addLayout(row)
        layout.addWidget(self.trigger_label)
        layout.addWidget(self.hint)
        self.combo.currentIndexChanged.connect(lambda _: self._on_changed())
        self.slider.valueChanged.connect(lambda v: self.value_label.setText(f"{v / 100:.2f}"))
        self.set_options([])

    def set_options(self, options: Sequence[LoraOption]) -> None:
        current = self.option()
        self._options = list(options)
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItem("None", None)
        for opt in self._options:
            self.combo.addItem(f"{opt.name} · {family_label(opt.family)}", opt.character_id)
            self.combo.setItemData(self.combo.count() - 1,
                                   f"{opt.path}\nTrigger word: {opt.trigger}",
                                   Qt.ItemDataRole.ToolTipRole)
        idx = self.combo.findData(current.character_id) if current else 0
        self.combo.setCurrentIndex(max(idx, 0))
        self.combo.blockSignals(False)
        self._refresh()
        if current != self.option():
            self.changed.emit()

    def options(self) -> list[LoraOption]:
        return list(self._options)

    def option(self) -> LoraOption | None:
        cid = self.combo.currentData()
        return next((o for o in self._options if o.character_id == cid), None)

    def select(self, character_id: int | None) -> None:
        idx = self.combo.findData(character_id) if character_id is not None else 0
        if idx >= 0:
            self.combo.setCurrentIndex(idx)

    def strength(self) -> float:
        return round(self.slider.value() / 100, 2)

    def set_strength(self, value: float) -> None:
        self.slider.setValue(round(max(0.0, min(1.5, value)) * 100))

    def set_visibility(self, rows: Sequence[tuple[str, bool, str]]) -> None:
        """Per server (label, lists the LoRA?, its name there or how to make it visible)."""
        self.visibility = list(rows)
        self._refresh()

    def missing_everywhere(self) -> str | None:
        """How to make the picked LoRA visible when no server lists it (None if one does)."""
        if self.option() is None or not self.visibility or any(v for _l, v, _h in
                                                                self.visibility):
            return None
        label, _visible, how = self.visibility[0]
        return f"{label}: {how}"

    def set_locked(self, option: LoraOption | None) -> None:
        """Staging mode: ``option``'s LoRA is fixed (None unlocks)."""
        self._locked = option
        if option is not None:
            self.select(option.character_id)
        self._refresh()

    def _on_changed(self) -> None:
        self._refresh()
        self.changed.emit()

    def _refresh(self) -> None:
        opt = self.option()
        locked = self._locked is not None
        self.combo.setEnabled(bool(self._options) and not locked)
        if self._locked is not None:
            self.combo.setToolTip(f"Generating for {self._locked.name}'s dataset: the LoRA is "
                                  "fixed. Press Back to the gallery to pick another.")
        elif not self._options:
            self.combo.setToolTip("No trained characters yet: train a LoRA in the Training tab "
                                  "and it appears here.")
        else:
            self.combo.setToolTip(self.TIP)
        on = opt is not None
        self.slider.setEnabled(on)
        self.slider.setToolTip(self.STRENGTH_TIP if on else
                               "Pick a character LoRA first; the strength applies to it.")
        self.value_label.setEnabled(on)
        self.strength_label.setEnabled(on)
        self.trigger_label.setText(
            f"Trigger word <b>{opt.trigger}</b> goes into the prompt." if opt
            else "No LoRA: the base model alone.")
        if opt is not None:
            text = f"Trained for {family_label(opt.family)}: {Path(opt.path).name}"
            shown = [label for label, visible, _how in self.visibility if visible]
            missing = [(label, how) for label, visible, how in self.visibility if not visible]
            if shown:
                text += f". On {', '.join(shown)}."
            for label, how in missing:
                text += f"\nNot on {label}: {how}."
            self.hint.setText(text)
        else:
            self.hint.setText("" if self._options else "Characters appear here once a LoRA is "
                                                       "trained for them (Training tab).")
        self.hint.setVisible(bool(self.hint.text()))


class ExtrasWidget(QWidget):
    """ControlNet, IP-Adapter, FaceDetailer and Upscale: each enabled only when the servers
    have what it needs, otherwise disabled with the exact reason (tooltip and hint line).

    Signals:
        changed(): a toggle or an image changed.
    """

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.checks: dict[str, QCheckBox] = {}
        self.tips: dict[str, str] = {}
        self.reasons: dict[str, str] = {}
        self._images: dict[str, str] = {}
        grid = QGridLayout()
        grid.setHorizontalSpacing(12)
        for n, (key, label, tip) in enumerate(FEATURES):
            check = QCheckBox(label)
            check.setObjectName(f"feature_{key}")
            check.setToolTip(tip)
            self.tips[key] = tip
            self.checks[key] = check
            grid.addWidget(check, n // 2, n % 2)
            check.toggled.connect(lambda on, k=key: self._on_toggled(k, on))
        self.image_rows: dict[str, QWidget] = {}
        self.image_labels: dict[str, QLabel] = {}
        self.image_buttons: dict[str, QPushButton] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(grid)
        self.model_combos: dict[str, QComboBox] = {}
        for key, (_input, label, tip) in FEATURE_IMAGES.items():
            row = QWidget()
            rows = QVBoxLayout(row)
            rows.setContentsMargins(12, 0, 0, 2)
            rows.setSpacing(4)
            if key in FEATURE_MODELS:
                _key, model_label, model_tip = FEATURE_MODELS[key]
                combo = QComboBox()
                combo.setObjectName(f"{key}_model")
                combo.setPlaceholderText(f"No {model_label} on the servers")
                combo.setToolTip(model_tip)
                shrinkable(combo, 14)
                combo.currentIndexChanged.connect(lambda _: self.changed.emit())
                self.model_combos[key] = combo
                rows.addWidget(combo)
            hl = QHBoxLayout()
            name = subtle(f"{label}: none chosen")
            name.setToolTip(tip)
            button = QPushButton("Choose…")
            button.setObjectName(f"choose_{key}_image")
            button.setToolTip(tip)
            button.clicked.connect(lambda _=False, k=key: self._choose(k))
            hl.addWidget(name, 1)
            hl.addWidget(button)
            rows.addLayout(hl)
            row.setVisible(False)
            self.image_rows[key] = row
            self.image_labels[key] = name
            self.image_buttons[key] = button
            layout.addWidget(row)
        self.hint = subtle()
        self.hint.setObjectName("ExtrasHint")
        layout.addWidget(self.hint)
        self.set_support({})

    def set_support(self, support: Mapping[str, tuple[bool, str]]) -> None:
        """``{feature: (ok, why)}``; a feature missing from the map is disabled because no
        server is ready to ask."""
        self.reasons = {}
        for key, label, _tip in FEATURES:
            ok, why = support.get(key, (False, "no ComfyUI server is ready to ask"))
            check = self.checks[key]
            check.setEnabled(ok)
            if ok:
                check.setToolTip(self.tips[key])
            else:
                check.setChecked(False)
                check.setToolTip(f"{label} is not available: {why}")
                self.reasons[key] = why
        if not support:
            text = "Extras become available when a ComfyUI server is ready."
        elif self.reasons:
            text = "\n".join(f"{FEATURE_LABELS[k]}: {why}" for k, why in self.reasons.items())
        else:
            text = ""
        self.hint.setText(text)
        self.hint.setVisible(bool(text))

    def set_models(self, key: str, names: Sequence[str]) -> None:
        """The model files a feature can use (e.g. ControlNet models), keeping the choice."""
        combo = self.model_combos[key]
        if [combo.itemData(i) for i in range(combo.count())] == list(names):
            return
        current = combo.currentData()
        combo.blockSignals(True)
        combo.clear()
        for name in names:
            combo.addItem(name, name)
        idx = combo.findData(current) if current else -1
        combo.setCurrentIndex(idx if idx >= 0 else (0 if names else -1))
        combo.blockSignals(False)

    def features(self) -> frozenset[str]:
        return frozenset(k for k, c in self.checks.items() if c.isChecked() and c.isEnabled())

    def set_features(self, features: Iterable[str]) -> None:
        wanted = set(features)
        for key, check in self.checks.items():
            check.setChecked(check.isEnabled() and key in wanted)

    def set_image(self, key: str, path: str) -> None:
        _input, label, tip = FEATURE_IMAGES[key]
        self._images[key] = path
        self.image_labels[key].setText(f"{label}: {Path(path).name}" if path
                                       else f"{label}: none chosen")
        self.image_labels[key].setToolTip(path or tip)
        self.changed.emit()

    def inputs(self) -> dict[str, str]:
        on = self.features()
        out = {FEATURE_IMAGES[k][0]: self._images[k] for k in on
               if k in FEATURE_IMAGES and self._images.get(k)}
        out.update({FEATURE_MODELS[k][0]: self.model_combos[k].currentData() for k in on
                    if k in FEATURE_MODELS and self.model_combos[k].currentData()})
        return out

    def problem(self) -> str | None:
        for key in sorted(self.features()):
            if key in FEATURE_MODELS and not self.model_combos[key].currentData():
                return f"Choose the {FEATURE_MODELS[key][1]} (or turn {FEATURE_LABELS[key]} off)."
            if key in FEATURE_IMAGES and not self._images.get(key):
                return (f"Choose the {FEATURE_IMAGES[key][1].lower()} for "
                        f"{FEATURE_LABELS[key]} (or turn it off).")
        return None

    def _on_toggled(self, key: str, on: bool) -> None:
        if key in self.image_rows:
            self.image_rows[key].setVisible(on)
        self.changed.emit()

    def _choose(self, key: str) -> None:
        path, _ = QFileDialog.getOpenFileName(self, FEATURE_IMAGES[key][1],
                                              self._images.get(key, ""), IMAGE_FILTER)
        if path:
            self.set_image(key, path)
