"""The Training tab's setup form (:class:`SetupFormWidget`): character, base model, profile,
trainer backend (with its model type and fields), preset, the time estimate, the collapsed
Advanced section and the sample prompts.

It reads the library snapshot (memory only) and a step-time callable; it never touches the
disk and never calls the training service: Start emits ``start_requested`` and the tab builds
and submits the job from :meth:`SetupFormWidget.job_fields`. The profile list comes from the
tab (:meth:`set_profiles`); what the form decides and profiles on the form are in
``training_values.py``.

Signals:
    start_requested(): the user pressed Start (the form is complete).
    models_refresh_requested(): the user asked to look for base models again.
    manage_profiles_requested(): the user asked for the profile manager.
"""

from __future__ import annotations

import os
import re
from typing import Any
from collections.abc import Callable, Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QFormLayout, QHBoxLayout,
                               QLabel, QPlainTextEdit, QPushButton, QSpinBox, QToolButton,
                               QVBoxLayout, QWidget)

from ...core.dataset.captions import with_trigger
from ...core.db.records import Character
from ...core.models import FAMILY_LABELS, ModelInfo
from ...core.training.memory_fit import Fix, MemoryModelError, fit, predict
from ...core.training.parallel import effective_batch
from ...core.training.presets import (CPU_HINT, DEFAULT_PRESET, FLOW_FAMILIES, PRESET_NAMES, PRESET_NOTES,
                                      apply_preset, dataset_warnings, estimate_seconds,
                                      format_duration, min_short_side, tier_values)
from ...services.library import LibraryService
from ..widgets.run_shortcut import add_run_shortcut
from .backend_fields import BackendChoice
from .backend_picker import BackendPickerWidget
from .advanced_fields import AdvancedSettingsWidget, shrinkable
from .form_values import TRIGGER, FormValuesMixin

__all__ = ["SetupFormWidget", "resolve_prompts"]
DEFAULT_PROMPTS = (f"a photo of {TRIGGER}, portrait, natural light",
                   f"{TRIGGER} smiling, outdoors, upper body",
                   f"close-up photo of {TRIGGER}, studio lighting")


def resolve_prompts(text: str, trigger: str) -> list[str]:
    """One prompt per non-empty line, with the trigger word put in: at ``[trigger]``, or at
    the start of a line that doesn't contain the trigger word."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if TRIGGER in line:
            line = " ".join(line.replace(TRIGGER, trigger).split())
        else:
            line = with_trigger(line, trigger)
        if line:
            out.append(line)
    return out


class SetupFormWidget(FormValuesMixin, QWidget):
    start_requested = Signal()
    models_refresh_requested = Signal()
    manage_profiles_requested = Signal()

    def __init__(self, library: LibraryService,
                 measured_sec_per_step: Callable[..., float | None],
                 backends: Sequence[BackendChoice], gpu_hint: str | None = None,
                 vram_gb: float | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._library = library
        self._measured = measured_sec_per_step
        self._gpu_hint = gpu_hint
        self._vram_gb = vram_gb
        self._models: list[ModelInfo] = []
        self._models_loading = False
        self.edited = False
        self.preset_name = DEFAULT_PRESET
        self.tier_note = ""      # what the card changed in the preset (tier_values)
        self.profile = None

        title = QLabel("New training job")
        title.setObjectName("Title")
        self.setStyleSheet(
            "QPushButton#PresetButton { padding: 6px 4px; }"
            "QPushButton#PresetButton:checked { background: #223152; border-color: #5b8def;"
            " color: #eef1f6; font-weight: 600; }"
            "QToolButton#AdvancedToggle { border: none; padding: 2px 0; color: #aab2c0;"
            " font-weight: 600; }"
            "QToolButton#AdvancedToggle:hover { color: #dfe3ea; }")

        # character ---------------------------------------------------------------------------
        self.character_combo = QComboBox()
        self.character_combo.setToolTip("The person to train. Their photos and captions from "
                                        "the Dataset tab are the training data.")
        self.character_info = QLabel("")
        self.character_info.setProperty("subtle", True)
        self.character_info.setWordWrap(True)
        self.warnings_label = QLabel("")
        self.warnings_label.setObjectName("Banner")
        self.warnings_label.setWordWrap(True)
        self.warnings_label.setVisible(False)

        # model ---------------------------------------------------------------------------------
        self.model_combo = QComboBox()
        self.model_combo.setToolTip("The base model the LoRA is trained for. It will work with "
                                    "this model and others of the same family.")
        for combo in (self.character_combo, self.model_combo):
            shrinkable(combo, 12)
        self.refresh_models_button = QToolButton()
        self.refresh_models_button.setText("↻")
        self.refresh_models_button.setToolTip("Look for base models in the model folders again.")
        self.model_info = QLabel("")
        self.model_info.setProperty("subtle", True)
        self.model_info.setWordWrap(True)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(self.refresh_models_button)

        # profile -------------------------------------------------------------------------------
        self.profile_combo = QComboBox()
        self.profile_combo.setObjectName("ProfilePicker")
        self.profile_combo.setToolTip("A saved set of settings for one use (model family, "
                                      "GPU memory, trainer). Picking one fills the trainer, "
                                      "its files and every setting below.")
        self.profile_combo.addItem("None — use a preset", None)
        shrinkable(self.profile_combo, 12)
        self.manage_profiles_button = QPushButton("Manage…")
        self.manage_profiles_button.setToolTip("Profiles: preview, apply, save the current "
                                               "settings, import/export .toml, compare two, "
                                               "change history.")
        profile_row = QHBoxLayout()
        profile_row.addWidget(self.profile_combo, 1)
        profile_row.addWidget(self.manage_profiles_button)

        # backend -------------------------------------------------------------------------------
        self.backend_picker = BackendPickerWidget(backends)
        self.backend_combo = self.backend_picker.combo
        shrinkable(self.backend_combo, 12)
        shrinkable(self.backend_picker.model_type_combo, 12)

        # presets -------------------------------------------------------------------------------
        self.preset_buttons: dict[str, QPushButton] = {}
        self.preset_group = QButtonGroup(self)
        self.preset_group.setExclusive(True)
        presets_row = QHBoxLayout()
        presets_row.setSpacing(6)
        for name in PRESET_NAMES:
            button = QPushButton(name)
            button.setCheckable(True)
            button.setObjectName("PresetButton")
            button.setToolTip(PRESET_NOTES[name])
            self.preset_group.addButton(button)
            self.preset_buttons[name] = button
            presets_row.addWidget(button, 1)
        self.preset_buttons[DEFAULT_PRESET].setChecked(True)
        self.preset_note = QLabel("")
        self.preset_note.setProperty("subtle", True)
        self.preset_note.setWordWrap(True)
        # pre-flight: will the settings fit the GPU's memory? (hidden while no GPU is known)
        self.fit_label = QLabel("")
        self.fit_label.setObjectName("FitLine")
        self.fit_label.setWordWrap(True)
        self.fit_button = QPushButton("")
        self.fit_button.setObjectName("FitFix")
        self.fit_button.setVisible(False)
        self.fit_row = QWidget()
        fit_layout = QHBoxLayout(self.fit_row)
        fit_layout.setContentsMargins(0, 0, 0, 0)
        fit_layout.addWidget(self.fit_label, 1)
        fit_layout.addWidget(self.fit_button)
        self.fit_row.setVisible(False)
        self.fit: Fix | None = None
        # several GPUs: offered when the probe saw more than one and the trainer has an
        # engine for them (accelerate / DeepSpeed); per-GPU and effective batch shown
        self._gpu_count = 1
        self.multi_gpu_check = QCheckBox("Train on")
        self.multi_gpu_check.setObjectName("MultiGpu")
        self.multi_gpu_spin = QSpinBox()
        self.multi_gpu_spin.setRange(2, 2)
        self.multi_gpu_spin.setSuffix(" GPUs")
        self.multi_gpu_spin.setEnabled(False)
        tip = ("Train on several GPUs at once through the trainer's own engine (accelerate "
               "for the built-in trainer and sd-scripts, DeepSpeed for diffusion-pipe). Each "
               "GPU trains 'Batch size' images per step, so a step sees that many times more "
               "images (the effective batch); the step count, progress, stop and resume stay "
               "the same. Each GPU needs the memory of a one-GPU job.")
        for w in (self.multi_gpu_check, self.multi_gpu_spin):
            w.setToolTip(tip)
        self.multi_gpu_note = QLabel("")
        self.multi_gpu_note.setObjectName("MultiGpuNote")
        self.multi_gpu_note.setProperty("subtle", True)
        self.multi_gpu_row = QWidget()
        multi_layout = QHBoxLayout(self.multi_gpu_row)
        multi_layout.setContentsMargins(0, 0, 0, 0)
        multi_layout.addWidget(self.multi_gpu_check)
        multi_layout.addWidget(self.multi_gpu_spin)
        multi_layout.addWidget(self.multi_gpu_note, 1)
        self.multi_gpu_row.setVisible(False)
        self.estimate_label = QLabel("")
        self.estimate_label.setObjectName("Estimate")
        self.estimate_label.setWordWrap(True)
        self.estimate_label.setStyleSheet("font-weight: 600; color: #dfe3ea;")
        self.estimate_basis = QLabel("")
        self.estimate_basis.setProperty("subtle", True)
        self.estimate_basis.setWordWrap(True)

        # advanced ------------------------------------------------------------------------------
        self.advanced_button = QToolButton()
        self.advanced_button.setObjectName("AdvancedToggle")
        self.advanced_button.setText("Advanced settings")
        self.advanced_button.setCheckable(True)
        self.advanced_button.setChecked(False)
        self.advanced_button.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_button.setAutoRaise(True)
        self.advanced_button.setToolTip("Every training setting. The preset fills them in; "
                                        "change any of them here.")
        self.advanced = AdvancedSettingsWidget()
        self.fields = self.advanced.fields
        self.tooltips = self.advanced.tooltips
        self.advanced.setVisible(False)

        # prompts -------------------------------------------------------------------------------
        self.prompts_edit = QPlainTextEdit("\n".join(DEFAULT_PROMPTS))
        self.prompts_edit.setToolTip("Prompts for the samples made during training, one per "
                                     "line.")
        self.prompts_edit.setFixedHeight(78)
        self.prompts_note = QLabel("")
        self.prompts_note.setProperty("subtle", True)
        self.prompts_note.setWordWrap(True)

        # start -----------------------------------------------------------------------------------
        self.start_button = QPushButton("Start training")
        self.start_button.setProperty("primary", True)
        self.start_button.setMinimumHeight(34)
        self.start_hint = QLabel("")
        self.start_hint.setProperty("subtle", True)
        self.start_hint.setWordWrap(True)
        self.error_label = QLabel("")
        self.error_label.setObjectName("ErrorText")
        self.error_label.setWordWrap(True)
        self.error_label.setVisible(False)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Character", self.character_combo)
        form.addRow("", self.character_info)
        form.addRow("Base model", model_row)
        form.addRow("", self.model_info)
        form.addRow(_label("Profile", self.profile_combo.toolTip()), profile_row)
        form.addRow(_label("Trainer", self.backend_combo.toolTip()), self.backend_combo)
        form.addRow(_label("Model type", self.backend_picker.model_type_combo.toolTip()),
                    self.backend_picker.model_type_combo)
        self._form = form

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 0, 8, 0)
        layout.addWidget(title)
        layout.addLayout(form)
        layout.addWidget(self.backend_picker)
        layout.addWidget(self.warnings_label)
        layout.addSpacing(6)
        layout.addWidget(_section("Preset"))
        layout.addLayout(presets_row)
        layout.addWidget(self.fit_row)
        layout.addWidget(self.multi_gpu_row)
        layout.addWidget(self.preset_note)
        layout.addWidget(self.estimate_label)
        layout.addWidget(self.estimate_basis)
        layout.addSpacing(4)
        layout.addWidget(self.advanced_button)
        layout.addWidget(self.advanced)
        layout.addWidget(_section("Sample prompts"))
        layout.addWidget(self.prompts_edit)
        layout.addWidget(self.prompts_note)
        layout.addSpacing(6)
        layout.addWidget(self.start_button)
        layout.addWidget(self.start_hint)
        layout.addWidget(self.error_label)
        layout.addStretch(1)

        self.character_combo.currentIndexChanged.connect(lambda _: self._on_character())
        self.model_combo.currentIndexChanged.connect(lambda _: self._on_model())
        self.backend_picker.changed.connect(self._on_backend_changed)
        self.profile_combo.currentIndexChanged.connect(lambda _: self._on_profile_chosen())
        self.manage_profiles_button.clicked.connect(self.manage_profiles_requested)
        self.refresh_models_button.clicked.connect(self.models_refresh_requested)
        self.preset_group.buttonClicked.connect(self._on_preset_clicked)
        self.advanced_button.toggled.connect(self.set_advanced_visible)
        self.start_button.clicked.connect(self._on_start)
        self.fit_button.clicked.connect(self.apply_fit_fix)
        self.multi_gpu_check.toggled.connect(lambda _: self.update_estimate())
        self.multi_gpu_spin.valueChanged.connect(lambda _: self.update_estimate())
        add_run_shortcut(self, self.start_button)
        self.advanced.edited.connect(self._on_field_edited)
        self.apply_preset(DEFAULT_PRESET)
        self.set_models_loading()
        self.refresh_characters()
        self._on_backend_changed()

    def _on_backend_changed(self) -> None:
        self._form.setRowVisible(self.backend_picker.model_type_combo,
                                 self.backend_picker.has_model_types())
        self._apply_backend_capabilities()
        backend = self.backend()
        if self.family() and not self.edited and self.profile is None:
            self.apply_preset(self.preset_name)   # the preset as this trainer fits the card
        elif backend is not None and backend.key != "builtin" \
                and self.field_value("quantize_base") == "nf4":
            # only the built-in trainer has a 4-bit base; the others all load fp8
            self.set_field("quantize_base", "float8")
        self.update_fit()
        self.update_multi_gpu()
        self._update_start()

    # -- advanced fields -----------------------------------------------------------------------
    def set_advanced_visible(self, visible: bool) -> None:
        self.advanced_button.blockSignals(True)
        self.advanced_button.setChecked(visible)
        self.advanced_button.blockSignals(False)
        self.advanced_button.setArrowType(Qt.ArrowType.DownArrow if visible
                                          else Qt.ArrowType.RightArrow)
        self.advanced.setVisible(visible)

    def field_value(self, name: str) -> Any:
        return self.advanced.value(name)

    def set_field(self, name: str, value: Any) -> None:
        self.advanced.set_value(name, value)

    # -- characters --------------------------------------------------------------------------
    def refresh_characters(self) -> None:
        """Re-read characters from the library snapshot, keeping the selection."""
        current = self.character_combo.currentData()
        self.character_combo.blockSignals(True)
        self.character_combo.clear()
        for ch in self._library.characters():
            n = self._library.image_count(ch.id)
            self.character_combo.addItem(f"{ch.name} — {n} photo{'s' if n != 1 else ''}", ch.id)
        idx = self.character_combo.findData(current) if current is not None else -1
        self.character_combo.setCurrentIndex(idx if idx >= 0 else
                                             (0 if self.character_combo.count() else -1))
        self.character_combo.blockSignals(False)
        self._on_character()

    def selected_character(self) -> Character | None:
        cid = self.character_combo.currentData()
        return self._library.character(cid) if cid is not None else None

    def select_character(self, character_id: int) -> None:
        idx = self.character_combo.findData(character_id)
        if idx >= 0:
            self.character_combo.setCurrentIndex(idx)

    def _on_character(self) -> None:
        ch = self.selected_character()
        if ch is None:
            self.character_info.setText("No characters yet: create one in the Characters tab "
                                        "and add photos.")
            self.warnings_label.setVisible(False)
        else:
            self.character_info.setText(f"Trigger word: {ch.trigger_word}")
            self._update_warnings()
        self._update_prompts_note()
        self._update_start()

    def _update_warnings(self) -> None:
        ch = self.selected_character()
        if ch is None:
            self.warnings_label.setVisible(False)
            return
        limit = min_short_side(self.family(), int(self.field_value("resolution")))
        warnings = dataset_warnings(self._library.images(ch.id), resolution=limit)
        self.warnings_label.setText("\n".join(f"• {w}" for w in warnings))
        self.warnings_label.setVisible(bool(warnings))

    def dataset_warnings(self) -> list[str]:
        text = self.warnings_label.text()
        return [w[2:] for w in text.splitlines()] if self.warnings_label.isVisible() else []

    # -- models ------------------------------------------------------------------------------
    def set_models_loading(self) -> None:
        self._models_loading = True
        if not self._models:
            self.model_combo.clear()
            self.model_combo.setPlaceholderText("Looking for models…")
            self.model_info.setText("Looking for base models in your model folders…")
        self._update_start()

    def set_models(self, models: Sequence[ModelInfo]) -> None:
        current = self.selected_model()
        self._models_loading = False
        self._models = list(models)
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for m in self._models:
            self.model_combo.addItem(m.display_name, str(m.path))
            self.model_combo.setItemData(self.model_combo.count() - 1, str(m.path),
                                         Qt.ItemDataRole.ToolTipRole)
        keep = self.model_combo.findData(str(current.path)) if current else -1
        if keep < 0:
            keep = next((i for i, m in enumerate(self._models) if m.family), 0)
        self.model_combo.setCurrentIndex(keep if self._models else -1)
        self.model_combo.setPlaceholderText("No base models found")
        self.model_combo.blockSignals(False)
        self._on_model()

    def selected_model(self) -> ModelInfo | None:
        idx = self.model_combo.currentIndex()
        return self._models[idx] if 0 <= idx < len(self._models) else None

    def family(self) -> str | None:
        model = self.selected_model()
        return model.family if model else None

    def _on_model(self) -> None:
        model = self.selected_model()
        if model is None:
            if not self._models_loading:
                self.model_info.setText("No base models found. Model folders are set in "
                                        "Settings (File → Settings); put a .safetensors model "
                                        "or a diffusers folder there, then press ↻.")
        elif model.family is None:
            self.model_info.setText(f"{model.label.capitalize()} — this file is not a model "
                                    "family we can train (SD 1.5, SDXL, Flux, Chroma).")
        else:
            self.model_info.setText(f"{FAMILY_LABELS[model.family]} · {_size(model.size)}")
        family = self.family()
        self.backend_picker.set_family(family)
        if family and not self.edited and self.profile is None:
            self.apply_preset(self.preset_name)
        elif family:
            self._update_family_fields()
            self.update_estimate()
        self._update_start()

    def _update_family_fields(self) -> None:
        family = self.family()
        quantize = self.fields["quantize_base"]
        quantize.setEnabled((family is None or family in FLOW_FAMILIES)
                            and "quantize_base" not in self.advanced.unused)

    # -- presets -----------------------------------------------------------------------------
    def _on_preset_clicked(self, button: QPushButton) -> None:
        self.apply_preset(button.text())

    def apply_preset(self, name: str) -> None:
        """Fill every Advanced field from preset ``name`` for the selected model's family
        (Balanced SDXL values while no model is chosen). Leaves a profile in use."""
        self.clear_profile()
        self.preset_name = name
        self._check_preset_button(name)
        backend = self.backend()
        family, key = self.family() or "sdxl", backend.key if backend else "builtin"
        values = apply_preset({}, family, name, vram_gb=self.gpu_vram_gb(), backend=key)
        self.tier_note = tier_values(family, name, self.gpu_vram_gb(), key)[1] \
            if self.family() else ""
        for key, value in values.items():
            if key in self.fields:
                self.set_field(key, value)
        self.edited = False
        self._update_family_fields()
        self._update_preset_note()
        self._update_warnings()
        self.update_estimate()

    def _on_field_edited(self) -> None:
        self.edited = True
        self._update_preset_note()
        self._update_warnings()
        self.update_estimate()

    # -- estimate ------------------------------------------------------------------------------
    def estimate(self) -> tuple[float, str] | None:
        family = self.family()
        if not family:
            return None
        resolution = int(self.field_value("resolution"))
        batch = int(self.field_value("batch_size")) * int(self.field_value("grad_accum"))
        device = str(self.field_value("device") or "auto")
        on_cpu = device == "cpu" or (device == "auto" and self._gpu_hint == CPU_HINT)
        if on_cpu:
            # only step times of earlier CPU jobs here count; else the family's CPU figure
            measured = self._measured(family, resolution, cpu=True,
                                      auto_on_cpu=self._gpu_hint == CPU_HINT)
            return estimate_seconds(family, resolution, int(self.field_value("steps")), batch,
                                    measured, CPU_HINT, cpu_cores=os.cpu_count())
        hint = None if self._gpu_hint == CPU_HINT else self._gpu_hint
        return estimate_seconds(family, resolution, int(self.field_value("steps")), batch,
                                self._measured(family, resolution), hint)

    def set_gpu_hint(self, hint: str | None) -> None:
        """What the GPU probe found ("NVIDIA RTX 4090, 24 GB", "cpu" for none usable)."""
        self._gpu_hint = hint
        if self.family() and not self.edited and self.profile is None:
            self.apply_preset(self.preset_name)     # the card decides the memory savers
        else:
            self.update_estimate()

    def gpu_vram_gb(self) -> float | None:
        """The GPU's memory in GB from the probe's hint ("NVIDIA RTX 3060, 12 GB"), else the
        figure the form was made with; None when no GPU is known or training is on the CPU."""
        if self._gpu_hint == CPU_HINT or str(self.field_value("device") or "auto") == "cpu":
            return None
        match = re.search(r"(\d+(?:\.\d+)?)\s*(?:GB|GiB)\b", self._gpu_hint or "",
                          re.IGNORECASE)
        return float(match.group(1)) if match else self._vram_gb

    # -- several GPUs ---------------------------------------------------------------------------
    def set_gpu_count(self, n: int) -> None:
        """How many CUDA GPUs the probe saw; with more than one the form offers to train on
        several (all of them by default once ticked)."""
        first = self._gpu_count < 2
        self._gpu_count = max(1, int(n))
        self.multi_gpu_spin.setRange(2, max(2, self._gpu_count))
        if first:
            self.multi_gpu_spin.setValue(max(2, self._gpu_count))
        self.update_multi_gpu()

    def multi_gpu_offered(self) -> bool:
        backend = self.backend()
        return (self._gpu_count > 1 and backend is not None and bool(backend.multi_gpu)
                and str(self.field_value("device") or "auto") != "cpu")

    def processes(self) -> int:
        """GPUs the job trains on (1 unless several are offered and ticked)."""
        if self.multi_gpu_offered() and self.multi_gpu_check.isChecked():
            return int(self.multi_gpu_spin.value())
        return 1

    def set_processes(self, n: int) -> None:
        """Tick "Train on N GPUs" for an earlier job's N (N = 1: untick)."""
        if n > 1:
            self.multi_gpu_spin.setValue(min(n, self.multi_gpu_spin.maximum()))
        self.multi_gpu_check.setChecked(n > 1)
        self.update_multi_gpu()

    def _pipeline_stages(self) -> int:
        value = (self.backend_picker.extra().get("fields") or {}).get("pipeline_stages")
        if value is None:
            return 1
        try:
            return max(1, int(value))
        except (TypeError, ValueError):
            return 1

    def update_multi_gpu(self) -> None:
        """Show or hide the "Train on N GPUs" row and its batch line."""
        offered = self.multi_gpu_offered()
        self.multi_gpu_row.setVisible(offered)
        self.multi_gpu_spin.setEnabled(self.multi_gpu_check.isChecked())
        if not offered:
            return
        batch, accum = int(self.field_value("batch_size")), int(self.field_value("grad_accum"))
        n = self.processes()
        stages = self._pipeline_stages() if n > 1 else 1
        total = effective_batch(batch, n, accum, stages)
        if n == 1:
            text = f"({self._gpu_count} GPUs found; now one: batch {batch * accum} a step)"
        else:
            per = f"batch {batch} per GPU × {n // stages} GPUs"
            if stages > 1:
                per = (f"batch {batch} per model copy × {n // stages} copies "
                       f"({stages} GPUs each)")
            more = f" × {accum} accumulated" if accum > 1 else ""
            text = f"{per}{more} = effective batch {total}"
        self.multi_gpu_note.setText(text)

    def update_fit(self) -> None:
        """The pre-flight line under the presets: whether the settings fit the GPU, and the
        smallest change that makes them fit (a button) when they do not."""
        family, vram = self.family(), self.gpu_vram_gb()
        backend = self.backend()
        self.fit = None
        if not family or not vram:
            self.fit_row.setVisible(False)
            return
        key = backend.key if backend else "builtin"
        job = self.job_fields()
        try:
            estimate = predict(job, family, key)
            verdict = fit(estimate, vram, job_settings=job, family=family, backend=key)
        except (MemoryModelError, ValueError) as exc:
            self.fit_label.setText(f"GPU memory: no estimate ({exc})")
            self.fit_button.setVisible(False)
            self.fit_row.setVisible(True)
            return
        self.fit = verdict
        n = self.processes()      # data parallel: every GPU holds the whole job
        card = f"each of the {n} GPUs" if n > 1 else "this GPU"
        if verdict.fits:
            text = f"Fits {card} (est. {estimate.vram_gb:.1f} of {vram:.0f} GB)"
            color = "#8fd19e"
        else:
            text = (f"Will not fit {'each' if n > 1 else 'this'} {vram:.0f} GB GPU (est. "
                    f"{estimate.vram_gb:.1f} GB)")
            if verdict.fix is None and " — " in verdict.text:
                text += " — " + verdict.text.split(" — ", 1)[1]     # why nothing fits
            color = "#f0a35e"
        self.fit_label.setText(text)
        self.fit_label.setStyleSheet(f"color: {color};")
        self.fit_label.setToolTip(
            "Predicted peak GPU memory while training, by part:\n" + estimate.describe()
            + (f"\nRAM: about {estimate.ram_gb * n:.0f} GB while loading ({n} training "
               f"processes, each loads the model)" if n > 1 else
               f"\nRAM: about {estimate.ram_gb:.0f} GB while loading") + ".\nEstimates from "
            "resources/training/memory_model.toml, not measured on this GPU.")
        fixable = verdict.fix is not None and all(k in self.fields or k in
                                                  self.backend_picker.rows()
                                                  for k in verdict.fix)
        self.fit_button.setVisible(fixable)
        if fixable and verdict.fixed_estimate is not None:
            self.fit_button.setText(verdict.fix_text)
            self.fit_button.setToolTip(
                f"Change the settings so the job fits (est. "
                f"{verdict.fixed_estimate.vram_gb:.1f} of {vram:.0f} GB):\n"
                + verdict.fixed_estimate.describe())
        self.fit_row.setVisible(True)

    def apply_fit_fix(self) -> None:
        """Apply the pre-flight's fix to the form (Advanced fields, or the trainer's own)."""
        if self.fit is None or not self.fit.fix:
            return
        rows = self.backend_picker.rows()
        for key, value in self.fit.fix.items():
            if key in self.fields:
                self.set_field(key, value)
            elif key in rows:
                rows[key].set(value)
        self._on_field_edited()

    def update_estimate(self) -> None:
        self.update_fit()
        self.update_multi_gpu()
        result = self.estimate()
        if result is None:
            self.estimate_label.setText("Estimated time: pick a base model first")
            self.estimate_basis.setText("")
            return
        seconds, basis = result
        self.estimate_label.setText(f"Estimated time: {format_duration(seconds)}")
        self.estimate_basis.setText(f"Based on {basis}, including loading and caching.")

    # -- prompts and start -------------------------------------------------------------------
    def _update_prompts_note(self) -> None:
        why = self.no_samples_reason()
        self.prompts_edit.setEnabled(not why)
        self.prompts_edit.setToolTip(why or "Prompts for the samples made during training, "
                                            "one per line.")
        if why:
            self.prompts_note.setText(why)
            return
        ch = self.selected_character()
        word = f"The trigger word ({ch.trigger_word})" if ch else "The character's trigger word"
        self.prompts_note.setText(f"One per line. {word} is inserted "
                                  f"automatically: where you write {TRIGGER}, or at the start "
                                  "of a line that doesn't mention it.")

    def sample_prompts(self) -> list[str]:
        ch = self.selected_character()
        return resolve_prompts(self.prompts_edit.toPlainText(), ch.trigger_word if ch else "")

    def show_error(self, text: str) -> None:
        self.error_label.setText(text)
        self.error_label.setVisible(bool(text))

    def _on_start(self) -> None:
        self.show_error("")
        if self.problem() is None:
            self.start_requested.emit()


def _label(text: str, tip: str) -> QLabel:
    label = QLabel(text)
    label.setToolTip(tip)
    return label


def _section(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("SectionLabel")
    label.setStyleSheet("font-weight: 600; color: #aab2c0; padding-top: 4px;")
    return label


def _size(n: int) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):.1f} GB"
    return f"{n / (1 << 20):.0f} MB"
