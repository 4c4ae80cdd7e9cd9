"""What the Training tab's setup form decides, and profiles on the form
(:class:`FormValuesMixin`, mixed into :class:`~.setup_form.SetupFormWidget`, which it sees
only through the :class:`SetupForm` protocol).

Split out of ``training_setup.py`` (which builds the form): turning the form into
TrainingJob fields (backend, model type and backend fields in ``extra``), why Start cannot
run, loading an earlier job, applying a profile and making one from the current settings.
"""

from __future__ import annotations

import copy
from datetime import date
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QButtonGroup, QComboBox, QLabel, QPlainTextEdit, QPushButton, QWidget

from ...core.dataset.captions import TRIGGER_PLACEHOLDER
from ...core.models import FAMILY_LABELS
from ...core.training.presets import (DEFAULT_PRESET, FLOW_FAMILIES, PRESET_NOTES, apply_preset,
                                      preset)
from ...core.training.profiles import KNOWN_BACKENDS, TRAIN_KEYS, Profile, validate
from ...core.training.profile_fields import PATH_KINDS
from ...core.training.spec import TrainingJob
from ...core.db.records import Character
from ...core.models import ModelInfo
from .advanced_fields import AdvancedSettingsWidget
from .backend_fields import BackendChoice
from .backend_picker import BackendPickerWidget

if TYPE_CHECKING:
    from ...services.library import LibraryService

TRIGGER = TRIGGER_PLACEHOLDER
_FLOAT_FIELDS = {name for name, f in TrainingJob.__dataclass_fields__.items()
                 if str(f.type) == "float"}
_SPEC_KEYS = ("label", "kind", "tooltip", "required", "choices", "model_types", "placeholder")


class SetupForm(Protocol):
    """What :class:`FormValuesMixin` needs of the form it is mixed into (the setup form's
    widgets and its own methods); ``self`` of the mixin's methods. The form module imports
    this one, never the other way round."""

    profile: Profile | None
    edited: bool
    preset_name: str
    _library: LibraryService
    _models: list[ModelInfo]
    _models_loading: bool
    _vram_gb: float | None
    advanced: AdvancedSettingsWidget
    fields: dict[str, QWidget]
    backend_picker: BackendPickerWidget
    model_combo: QComboBox
    profile_combo: QComboBox
    prompts_edit: QPlainTextEdit
    preset_buttons: dict[str, QPushButton]
    preset_group: QButtonGroup
    preset_note: QLabel
    start_button: QPushButton
    start_hint: QLabel
    tier_note: str
    def set_field(self, name: str, value: Any) -> None: ...
    def field_value(self, name: str) -> Any: ...
    def selected_character(self) -> Character | None: ...
    def select_character(self, character_id: int) -> None: ...
    def selected_model(self) -> ModelInfo | None: ...
    def family(self) -> str | None: ...
    def sample_prompts(self) -> list[str]: ...
    def show_error(self, text: str) -> None: ...
    def apply_preset(self, name: str) -> None: ...
    def update_estimate(self) -> None: ...
    def _update_family_fields(self) -> None: ...
    def _update_prompts_note(self) -> None: ...
    def _update_warnings(self) -> None: ...
    def processes(self) -> int: ...
    def set_processes(self, n: int) -> None: ...

    # the mixin's own methods that call each other
    def backend(self) -> BackendChoice | None: ...
    def apply_profile(self, profile: Profile) -> None: ...
    def preset_label(self) -> str: ...
    def problem(self) -> str | None: ...
    def _profile_index(self, name: str | None) -> int: ...
    def _check_preset_button(self, name: str | None) -> None: ...
    def _update_preset_note(self) -> None: ...
    def _update_start(self) -> None: ...


class FormValuesMixin:
    """Values, problems and profiles of the setup form (``self`` is the form)."""

    profile: Profile | None = None

    # -- backend ---------------------------------------------------------------------------
    def backend(self: SetupForm) -> BackendChoice | None:
        return self.backend_picker.backend()

    def _apply_backend_capabilities(self: SetupForm) -> None:
        """Grey out what the chosen trainer does not use: its ``unused_job_fields`` in
        Advanced (the tooltip says so) and the sample prompts when it makes no samples (a
        one-line reason under the box)."""
        backend = self.backend()
        unused = backend.unused_fields if backend is not None else ()
        why = f"{backend.label} does not use this setting." if backend is not None else ""
        self.advanced.set_unused(unused, why)
        self._update_family_fields()
        self._update_prompts_note()

    def no_samples_reason(self: SetupForm) -> str:
        """Why the sample prompts are not used by the chosen trainer ("" when they are)."""
        backend = self.backend()
        if backend is None:
            return ""
        if not backend.samples:
            return f"{backend.label} does not make samples during training."
        if "sample_prompts" in backend.unused_fields:
            return f"{backend.label} does not use sample prompts."
        return ""

    # -- profiles ------------------------------------------------------------------------------
    def set_profiles(self: SetupForm, profiles: Sequence[Profile],
                     backends: Sequence[str] | None = None) -> None:
        """The profiles the quick picker lists (shipped first). A profile whose trainer is
        not registered is listed disabled, with the reason."""
        known = set(backends) if backends is not None else \
            {c.key for c in self.backend_picker.choices()}
        combo = self.profile_combo
        combo.blockSignals(True)
        combo.clear()
        combo.addItem("None — use a preset", None)
        combo.setItemData(0, "Use the Quick / Balanced / High Quality presets below.",
                          Qt.ItemDataRole.ToolTipRole)
        model = combo.model()
        for profile in profiles:
            combo.addItem(profile.name + ("" if profile.shipped else "  (yours)"), profile)
            i = combo.count() - 1
            tier = f" · {profile.vram_gb:g} GB" if isinstance(profile.vram_gb, (int, float)) \
                else ""
            tip = f"{profile.description}\n\nTrainer: {profile.backend}{tier}"
            errors = validate(profile, [*known, *KNOWN_BACKENDS])
            if errors:
                tip = (f"This profile has problems ({errors[0]}"
                       + (f" and {len(errors) - 1} more" if len(errors) > 1 else "")
                       + "): open Manage… to see them.\n\n" + tip)
            elif profile.backend not in known:
                tip = (f"Needs the {profile.backend} trainer, which is not set up here "
                       "(Settings → Trainers).\n\n" + tip)
            if errors or profile.backend not in known:
                item = model.item(i) if hasattr(model, "item") else None
                if item is not None:
                    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEnabled)
            combo.setItemData(i, tip.strip(), Qt.ItemDataRole.ToolTipRole)
        current = self.profile.name if self.profile else None
        combo.setCurrentIndex(max(0, self._profile_index(current)))
        combo.blockSignals(False)

    def _profile_index(self: SetupForm, name: str | None) -> int:
        if name is None:
            return 0
        for i in range(1, self.profile_combo.count()):
            data = self.profile_combo.itemData(i)
            if data is not None and data.name == name:
                return i
        return -1

    def _on_profile_chosen(self: SetupForm) -> None:
        profile = self.profile_combo.currentData()
        if profile is None:
            self.apply_preset(self.preset_name)
        else:
            self.apply_profile(profile)

    def apply_profile(self: SetupForm, profile: Profile) -> None:
        """Fill the form from ``profile``: trainer, model type, its fields, every training
        value (the family's Balanced preset for values it does not set), sample prompts, and
        a base model of its family when there is one."""
        self.profile = profile
        self.show_error("")
        if not self.backend_picker.select_backend(profile.backend):
            self.show_error(f"The profile “{profile.name}” needs the {profile.backend} "
                            "trainer, which is not set up here (Settings → Trainers).")
        self.backend_picker.set_profile_fields(profile.backend, profile.field_specs(),
                                               profile.model_type or None)
        if profile.model_type:
            self.backend_picker.set_model_type(profile.model_type)
        # the profile's options that are also the trainer's own fields are shown there
        # (and reach the trainer in extra["fields"], where it reads them)
        own = self.backend_picker.backend_field_keys()
        shown = {k: v for k, v in profile.options.items()
                 if k in own and not isinstance(v, (dict, list))}
        if shown:
            self.backend_picker.set_values(shown)
        if self.family() != profile.family:
            idx = next((i for i, m in enumerate(self._models) if m.family == profile.family),
                       -1)
            if idx >= 0:
                self.model_combo.setCurrentIndex(idx)
        try:
            values = apply_preset({}, profile.family, DEFAULT_PRESET,
                                  vram_gb=profile.vram_gb or self._vram_gb)
        except ValueError:   # an unknown family: the profile's own values only
            values = {}
        values.update(profile.train)
        for key, value in values.items():
            if key in self.fields:
                self.set_field(key, float(value) if key in _FLOAT_FIELDS else value)
        if profile.train.get("sample_prompts"):
            self.prompts_edit.setPlainText("\n".join(profile.train["sample_prompts"]))
        self.edited = False
        self._check_preset_button(None)
        combo = self.profile_combo
        combo.blockSignals(True)
        combo.setCurrentIndex(max(0, self._profile_index(profile.name)))
        combo.blockSignals(False)
        self._update_family_fields()
        self._update_preset_note()
        self._update_warnings()
        self.update_estimate()
        self._update_start()

    def clear_profile(self: SetupForm) -> None:
        """Back to the built-in presets (the trainer stays as it is)."""
        if self.profile is None:
            return
        self.profile = None
        self.backend_picker.set_profile_fields(None, [])
        combo = self.profile_combo
        combo.blockSignals(True)
        combo.setCurrentIndex(0)
        combo.blockSignals(False)

    def _check_preset_button(self: SetupForm, name: str | None) -> None:
        """Check preset ``name``'s button, or none (while a profile is in use)."""
        self.preset_group.setExclusive(False)
        for key, button in self.preset_buttons.items():
            button.setChecked(key == name)
        self.preset_group.setExclusive(True)

    def profile_from_form(self: SetupForm, name: str, description: str = "") -> Profile:
        """The current settings as a profile (not saved). Paths the user filled in are not
        part of it: file and folder fields are kept as fields to fill in."""
        backend = self.backend()
        family = self.family() or (self.profile.family if self.profile else "sdxl")
        train = {k: v for k, v in self.advanced.values().items() if k in TRAIN_KEYS}
        if family not in FLOW_FAMILIES:
            train["quantize_base"] = "none"
        prompts = [line.strip() for line in self.prompts_edit.toPlainText().splitlines()
                   if line.strip()]
        if prompts:
            train["sample_prompts"] = prompts
        # the profile's own options and fields carry over only to the same backend
        same = self.profile if (self.profile is not None and backend is not None
                                and self.profile.backend == backend.key) else None
        options = copy.deepcopy(same.options) if same else {}
        declared = {s["key"] for s in same.field_specs()} if same else set()
        own = self.backend_picker.backend_field_keys()
        values = self.backend_picker.values()
        fields: dict[str, dict[str, Any]] = {}
        for spec in self.backend_picker.specs():
            key, kind = spec["key"], spec.get("kind", "text")
            value = values.get(key)
            has_value = kind not in PATH_KINDS and value is not None
            if key in declared:          # the profile's own field: kept, with its value
                table = {k: copy.deepcopy(spec[k]) for k in _SPEC_KEYS if k in spec}
                table.setdefault("label", key)
                table.setdefault("kind", kind)
                table.pop("default", None)
                if has_value:
                    table["default"] = value
                fields[key] = table
            elif key in own:             # the trainer declares it: remember the value only
                if has_value:
                    options[key] = value
                else:
                    options.pop(key, None)
        vram = self.profile.vram_gb if self.profile is not None else (
            round(self._vram_gb) if self._vram_gb else None)
        return Profile(
            name=name.strip(),
            description=description.strip() or f"Saved from the Training tab on "
                                                f"{date.today().isoformat()}.",
            backend=backend.key if backend else "builtin", family=family, vram_gb=vram,
            model_type=self.backend_picker.model_type() or "", train=train, options=options,
            fields=fields)

    # -- what the form decides -------------------------------------------------------------
    def preset_label(self: SetupForm) -> str:
        name = self.profile.name if self.profile is not None else self.preset_name
        return f"{name} (edited)" if self.edited else name

    def _update_preset_note(self: SetupForm) -> None:
        if self.profile is not None:
            p = self.profile
            tier = f", {p.vram_gb:g} GB" if isinstance(p.vram_gb, (int, float)) else ""
            note = (f"Using the profile “{p.name}” ({p.backend}{tier})"
                    + (", edited in Advanced settings" if self.edited else "")
                    + f": {p.train.get('steps', '?')} steps at "
                      f"{p.train.get('resolution', '?')} px, rank {p.train.get('rank', '?')}."
                      " Click a preset to go back to the built-in presets.")
            self.preset_note.setText(note)
            return
        note = PRESET_NOTES[self.preset_name]
        family = self.family()
        if family:
            values = preset(family, self.preset_name)
            resolution = self.field_value("resolution") or values.resolution   # the card's
            note += (f" {values.steps} steps at {resolution} px, rank {values.rank}, "
                     f"lr {values.learning_rate:g}.")
            if self.tier_note and not self.edited:
                note += " " + self.tier_note
        if self.edited:
            note = (f"{self.preset_name}, edited in Advanced settings. Click a preset to go "
                    "back to its values.")
        self.preset_note.setText(note)

    def problem(self: SetupForm) -> str | None:
        """Why Start cannot run now, in plain words (None when it can)."""
        ch = self.selected_character()
        if ch is None:
            return "Pick a character (create one in the Characters tab)."
        if self._library.image_count(ch.id) == 0:
            return f"{ch.name} has no photos yet: add some in the Dataset tab."
        model = self.selected_model()
        if model is None:
            return ("Looking for base models…" if self._models_loading
                    else "Pick a base model (model folders are set in Settings).")
        if model.family is None:
            return "This base model's family is unknown; pick an SD 1.5, SDXL, Flux or Chroma model."
        backend = self.backend()
        if backend is None or not backend.available:
            return (backend.why if backend and backend.why
                    else "This trainer is not available here.")
        family_words = FAMILY_LABELS.get(model.family, model.family)
        if self.profile is not None and self.profile.backend == backend.key \
                and self.profile.family != model.family:
            wanted = FAMILY_LABELS.get(self.profile.family, self.profile.family)
            return (f"The profile “{self.profile.name}” is for {wanted}: pick a {wanted} "
                    f"base model (this one is {family_words}).")
        if backend.families and model.family not in backend.families:
            return (f"{backend.label} does not train {family_words} models: pick another "
                    "trainer or base model.")
        errors = self.backend_picker.problems()
        if errors:
            more = f" ({len(errors) - 1} more below)" if len(errors) > 1 else ""
            return f"Trainer options: {errors[0].message}{more}."
        return None

    def _update_start(self: SetupForm) -> None:
        problem = self.problem()
        self.start_button.setEnabled(problem is None)
        self.start_hint.setText(problem or "The job runs in the background; you can keep "
                                           "using the app.")

    def job_fields(self: SetupForm) -> dict[str, Any]:
        """The TrainingJob fields the form decides (everything but ids, names and paths):
        the backend, and in ``extra`` the profile's backend options, the model type and the
        trainer fields (``extra["fields"]``)."""
        values = self.advanced.values()
        backend = self.backend()
        model = self.selected_model()
        values.update(family=self.family(), base_model=str(model.path) if model else "",
                      backend=backend.key if backend else "builtin",
                      sample_prompts=self.sample_prompts(), preset=self.preset_label())
        if values["family"] not in FLOW_FAMILIES:
            values["quantize_base"] = "none"
        extra: dict[str, Any] = {}
        if self.profile is not None and backend is not None \
                and self.profile.backend == backend.key:
            extra.update(copy.deepcopy(self.profile.options))
            extra["profile"] = self.profile.name
        extra.update(self.backend_picker.extra())
        if "fields" in extra:
            ch = self.selected_character()
            trigger = ch.trigger_word if ch else ""
            kinds = {s["key"]: s.get("kind", "text") for s in self.backend_picker.specs()}
            extra["fields"] = {k: (v.replace(TRIGGER, trigger)
                                   if kinds.get(k) == "text" and isinstance(v, str) else v)
                               for k, v in extra["fields"].items()}
        n = self.processes()
        if n > 1:       # several GPUs: the trainer's own engine (core/training/parallel.py)
            extra["num_processes"] = n
        if extra:
            values["extra"] = extra
        known = set(TrainingJob.__dataclass_fields__)
        return {k: v for k, v in values.items() if k in known}

    def load_job(self: SetupForm, job: TrainingJob) -> None:
        """Fill the form from an earlier job's settings (character, model, trainer and its
        fields, every value)."""
        self.select_character(job.character_id)
        idx = self.model_combo.findData(job.base_model)
        if idx >= 0:
            self.model_combo.setCurrentIndex(idx)
        extra = job.extra or {}
        profile_idx = self._profile_index(extra.get("profile")) if extra.get("profile") else -1
        self.profile = self.profile_combo.itemData(profile_idx) if profile_idx > 0 else None
        if self.profile is not None:
            self.backend_picker.set_profile_fields(self.profile.backend,
                                                   self.profile.field_specs(),
                                                   self.profile.model_type or None)
        else:
            self.backend_picker.set_profile_fields(None, [])
        self.profile_combo.blockSignals(True)
        self.profile_combo.setCurrentIndex(max(0, profile_idx))
        self.profile_combo.blockSignals(False)
        self.backend_picker.select_backend(job.backend)
        if extra.get("model_type"):
            self.backend_picker.set_model_type(extra["model_type"])
        if extra.get("fields"):
            self.backend_picker.set_values(extra["fields"])
        n = extra.get("num_processes")
        self.set_processes(n if isinstance(n, int) and not isinstance(n, bool) else 1)
        for name in self.fields:
            self.set_field(name, getattr(job, name))
        base = job.preset.replace(" (edited)", "")
        if base in self.preset_buttons:
            self.preset_name = base
        self._check_preset_button(None if self.profile is not None else self.preset_name)
        self.edited = True
        self.prompts_edit.setPlainText("\n".join(job.sample_prompts))
        self._update_preset_note()
        self._update_warnings()
        self.update_estimate()
        self._update_start()
