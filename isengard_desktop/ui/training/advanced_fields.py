"""The Advanced section of the Training tab's setup form (:class:`AdvancedSettingsWidget`):
one input per TrainingJob training parameter, each with a plain-language tooltip.

Signals:
    edited(): the user changed a value (not emitted while values are set in code).
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable, Iterable, Sequence

from PySide6.QtCore import Signal
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QLabel,
                               QSpinBox, QWidget)

from ...core.training.spec import DEVICES, OPTIMIZERS, PRECISIONS, QUANTIZE, SCHEDULERS

RESOLUTIONS = (256, 384, 512, 640, 768, 896, 1024, 1152, 1280, 1536)
SCHEDULER_WORDS = {"constant": "Constant", "cosine": "Cosine (eases off)",
                   "linear": "Linear (falls to zero)"}
PRECISION_WORDS = {"auto": "Automatic", "bf16": "bf16", "fp16": "fp16", "no": "Full (fp32)"}
OPTIMIZER_WORDS = {"adamw": "AdamW", "adamw8bit": "AdamW 8-bit"}
QUANTIZE_WORDS = {"none": "Off (full precision)", "int8": "int8", "float8": "float8",
                  "nf4": "NF4 (4-bit)"}
DEVICE_WORDS = {"auto": "Automatic (GPU if there is one)", "cpu": "CPU only", "cuda": "GPU (CUDA)"}

# (TrainingJob field, label, tooltip), in the order shown
FIELD_ROWS: tuple[tuple[str, str, str], ...] = (
    ("steps", "Steps",
     "How many training steps to run. More steps learn the face better but take "
     "longer and can over-fit (the LoRA starts copying the photos)."),
    ("rank", "Rank (LoRA size)",
     "How much the LoRA can hold. 16 is plenty for one face; 32 keeps more detail "
     "and makes a bigger file."),
    ("alpha", "Alpha",
     "Scales the LoRA's strength while training. Usually equal to the rank or half "
     "of it; a lower alpha trains more gently."),
    ("learning_rate", "Learning rate",
     "How big each learning step is. Too high and the pictures break up or the loss "
     "turns NaN; too low and the face never appears. 1e-4 is a safe start."),
    ("lr_scheduler", "Schedule",
     "How the learning rate changes over the run. Cosine eases off towards the end, "
     "which often gives a cleaner result."),
    ("warmup_steps", "Warm-up steps",
     "Steps at the start where the learning rate rises slowly from zero, so the first "
     "updates don't shock the model."),
    ("batch_size", "Batch size",
     "Photos per step. Larger batches use more GPU memory and give smoother "
     "learning; each step takes longer."),
    ("grad_accum", "Gradient accumulation",
     "Adds up this many steps before updating: acts like a bigger batch without "
     "the extra memory, at the cost of time."),
    ("resolution", "Resolution",
     "The size photos are trained at (the long side of each bucket). Use the "
     "model's native size: 512 for SD 1.5, 1024 for SDXL, Flux and Chroma."),
    ("repeats", "Repeats per photo",
     "How many times each photo is shown per pass through the dataset. Useful to "
     "balance a small dataset; the step count still decides when training ends."),
    ("caption_dropout", "Caption dropout",
     "The share of steps where the caption is left out, so the trigger word alone "
     "learns the person. 0.05 means one step in twenty. kohya (SDXL, Flux, Chroma): "
     "used only with \"Text encoder outputs: dropout\"; the default cache turns it off."),
    ("seed", "Seed",
     "Makes a run repeatable: the same seed and settings shuffle and sample the "
     "same way."),
    ("mixed_precision", "Precision",
     "Number format while training. Automatic uses bf16 or fp16 on a GPU and full "
     "precision on a CPU."),
    ("optimizer", "Optimizer",
     "The update rule. AdamW 8-bit saves GPU memory (needs an NVIDIA GPU); elsewhere "
     "it falls back to AdamW."),
    ("gradient_checkpointing", "Gradient checkpointing",
     "Saves a lot of GPU memory by recomputing parts of the model during training, "
     "at roughly 20–30 % more time. Keep it on unless memory is plentiful."),
    ("quantize_base", "Low-precision base model",
     "Keeps the frozen Flux or Chroma model in 8-bit (int8/float8: fits 16–24 GB cards) or "
     "4-bit NF4 (as QLoRA does: fits 12 GB, slightly coarser). The LoRA itself still trains "
     "in full quality. Not used for SD 1.5 and SDXL."),
    ("checkpoint_every", "Checkpoint every",
     "Saves a resumable checkpoint every this many steps, so Stop, a crash or a "
     "restart loses little work."),
    ("keep_checkpoints", "Keep checkpoints",
     "How many of the newest checkpoints to keep on disk; older ones are deleted to "
     "save space."),
    ("sample_every", "Sample every",
     "Makes sample pictures from your prompts every this many steps, to watch the "
     "likeness appear. Each round adds a little time."),
    ("sample_steps", "Sample quality steps",
     "Denoising steps for each sample picture. More steps look cleaner and take "
     "longer."),
    ("device", "Device",
     "Where to train. Automatic uses the GPU when there is one; CPU only works but is "
     "very slow."),
)


class ScientificSpinBox(QDoubleSpinBox):
    """A spin box for small numbers such as learning rates: shows 1e-04, accepts 0.0001 or
    1e-4, and the arrows halve or double the value."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setDecimals(12)
        self.setRange(1e-8, 0.5)

    def textFromValue(self, value: float) -> str:
        return f"{value:.2e}".replace("e-0", "e-")

    def valueFromText(self, text: str) -> float:
        try:
            return float(text.strip())
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int) -> tuple[QValidator.State, str, int]:
        stripped = text.strip()
        try:
            value = float(stripped)
        except ValueError:
            ok = all(c in "0123456789.eE-+" for c in stripped)
            state = QValidator.State.Intermediate if ok else QValidator.State.Invalid
            return state, text, pos
        state = (QValidator.State.Acceptable if self.minimum() <= value <= self.maximum()
                 else QValidator.State.Intermediate)
        return state, text, pos

    def stepBy(self, steps: int) -> None:
        self.setValue(self.value() * (2.0 ** steps))


def _combo(words: dict[str, str], keys: Sequence[Any]) -> QComboBox:
    box = QComboBox()
    for key in keys:
        box.addItem(words.get(key, str(key)), key)
    return box


def _spin(lo: int, hi: int, step: int = 1, special: str = "", suffix: str = "") -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setAccelerated(True)
    if special:
        box.setSpecialValueText(special)
    if suffix:
        box.setSuffix(suffix)
    return box


def _dspin(lo: float, hi: float, step: float, decimals: int) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setDecimals(decimals)
    return box


def shrinkable(combo: QComboBox, chars: int) -> None:
    """Let a combo box narrow with the panel instead of widening it to its longest item."""
    combo.setMinimumContentsLength(chars)
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)


class AdvancedSettingsWidget(QWidget):
    edited = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("AdvancedSection")
        self._applying = False
        self.fields: dict[str, QWidget] = {}
        f = self.fields
        f["steps"] = _spin(1, 100_000, 50)
        f["rank"] = _spin(1, 1024, 4)
        f["alpha"] = _dspin(0.5, 1024, 1, 1)
        f["learning_rate"] = ScientificSpinBox()
        f["lr_scheduler"] = _combo(SCHEDULER_WORDS, SCHEDULERS)
        f["warmup_steps"] = _spin(0, 10_000, 10)
        f["batch_size"] = _spin(1, 64)
        f["grad_accum"] = _spin(1, 64)
        res = QComboBox()
        for r in RESOLUTIONS:
            res.addItem(f"{r} px", r)
        f["resolution"] = res
        f["repeats"] = _spin(1, 100)
        f["caption_dropout"] = _dspin(0.0, 0.9, 0.05, 2)
        f["seed"] = _spin(0, 2_147_483_647)
        f["mixed_precision"] = _combo(PRECISION_WORDS, PRECISIONS)
        f["optimizer"] = _combo(OPTIMIZER_WORDS, OPTIMIZERS)
        f["gradient_checkpointing"] = QCheckBox("On")
        f["quantize_base"] = _combo(QUANTIZE_WORDS, QUANTIZE)
        f["checkpoint_every"] = _spin(0, 100_000, 50, special="only at the end",
                                      suffix=" steps")
        f["keep_checkpoints"] = _spin(1, 50)
        f["sample_every"] = _spin(0, 100_000, 50, special="never", suffix=" steps")
        f["sample_steps"] = _spin(1, 150)
        f["device"] = _combo(DEVICE_WORDS, DEVICES)
        form = QFormLayout(self)
        form.setContentsMargins(14, 2, 0, 6)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.tooltips: dict[str, str] = {}
        self.labels: dict[str, QLabel] = {}
        self.unused: frozenset[str] = frozenset()
        for name, label, tip in FIELD_ROWS:
            widget = f[name]
            widget.setToolTip(tip)
            widget.setObjectName(f"field_{name}")
            lab = QLabel(label)
            lab.setToolTip(tip)
            form.addRow(lab, widget)
            self.tooltips[name] = tip
            self.labels[name] = lab
            _on_change(widget, self._on_changed)
            if isinstance(widget, QComboBox):
                shrinkable(widget, 8)
        missing = set(f) - set(self.tooltips)
        assert not missing, missing

    def set_unused(self, names: Iterable[str], why: str = "") -> None:
        """Grey out the fields ``names`` (the chosen trainer does not use them), with ``why``
        in front of their tooltips; every other field is enabled with its own tooltip.
        (The form may disable a field for other reasons afterwards.)"""
        self.unused = frozenset(n for n in names if n in self.fields)
        for name, widget in self.fields.items():
            off = name in self.unused
            tip = f"{why}\n\n{self.tooltips[name]}" if off and why else self.tooltips[name]
            for part in (widget, self.labels[name]):
                part.setEnabled(not off)
                part.setToolTip(tip)

    def value(self, name: str) -> Any:
        return _get(self.fields[name])

    def values(self) -> dict[str, Any]:
        return {name: self.value(name) for name in self.fields}

    def set_value(self, name: str, value: Any) -> None:
        """Set a field from code (no ``edited`` signal)."""
        self._applying = True
        try:
            _set(self.fields[name], value)
        finally:
            self._applying = False

    def _on_changed(self) -> None:
        if not self._applying:
            self.edited.emit()


def _get(widget: QWidget) -> Any:
    if isinstance(widget, QCheckBox):
        return widget.isChecked()
    if isinstance(widget, QComboBox):
        return widget.currentData()
    if isinstance(widget, QDoubleSpinBox):
        return float(widget.value())
    if isinstance(widget, QSpinBox):
        return int(widget.value())
    raise TypeError(widget)


def _set(widget: QWidget, value: Any) -> None:
    if isinstance(widget, QCheckBox):
        widget.setChecked(bool(value))
    elif isinstance(widget, QComboBox):
        idx = widget.findData(value)
        if idx < 0 and isinstance(value, int):   # a resolution not in the list
            widget.addItem(f"{value} px", value)
            idx = widget.count() - 1
        widget.setCurrentIndex(max(idx, 0))
    elif isinstance(widget, (QDoubleSpinBox, QSpinBox)):
        widget.setValue(value)
    else:
        raise TypeError(widget)


def _on_change(widget: QWidget, slot: Callable[[], None]) -> None:
    if isinstance(widget, QCheckBox):
        widget.toggled.connect(lambda _: slot())
    elif isinstance(widget, QComboBox):
        widget.currentIndexChanged.connect(lambda _: slot())
    elif isinstance(widget, (QDoubleSpinBox, QSpinBox)):
        widget.valueChanged.connect(lambda _: slot())
    else:
        raise TypeError(widget)
