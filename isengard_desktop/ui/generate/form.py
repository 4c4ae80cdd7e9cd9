"""The Generate tab's form (:class:`GenerateFormWidget`): prompt, the input image (img2img,
shown only when set), family and model, the aspect and quality presets, batch, the character
LoRA, the extras and Generate / Cancel, with the negative prompt and the seed in the collapsed
Advanced section.

The form never calls the generation service. The tab feeds it (models, feature support,
LoRAs, server readiness) and reads :meth:`GenerateFormWidget.request` on Generate.

Signals:
    generate_requested(): Generate was pressed and the form is complete.
    explore_requested(): Explore (the draft funnel) was pressed and the form is complete.
    cancel_requested(): Cancel was pressed.
    context_changed(): family or LoRA changed: models and extras need asking again.
    message_posted(str): a short result for the status bar ("Seed copied").

Generate, Cancel and the inline error live in :attr:`GenerateFormWidget.footer`, which the
owner places below the (scrolling) form so they are always in view.
"""

from __future__ import annotations

import re
from typing import Any
from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import (QButtonGroup, QComboBox, QGridLayout, QHBoxLayout, QLabel,
                               QPlainTextEdit, QPushButton, QVBoxLayout, QWidget)

from ...core.comfy.jobs import GalleryItem, GenerationRequest, LoraChoice
from ...core.comfy.model_family import UNKNOWN, classify_model
from ...core.dataset.captions import has_trigger, trigger_pattern
from .advanced import AdvancedWidget
from .input_image import InputImageWidget
from .options import ExtrasWidget, LoraOption, LoraPickerWidget, subtle
from .presets import (ASPECTS, BATCH_SIZES, DEFAULT_ASPECT, DEFAULT_TIER, FAMILIES,
                               TIERS, aspect_size, aspect_tooltip, family_label,
                               family_of_workflow, lora_fits, megapixels, tier_note)
from ..training.advanced_fields import shrinkable

__all__ = ["GenerateFormWidget", "insert_trigger"]


def insert_trigger(prompt: str, trigger: str, old: str = "") -> str:
    """The prompt with ``trigger`` in it. ``old`` (the previous LoRA's trigger) is replaced
    where it stands; otherwise ``trigger, `` goes at the start unless the prompt names it."""
    text = prompt
    if old and old != trigger:
        if trigger:
            text = trigger_pattern(old).sub(lambda _m: trigger, text)
        else:
            text = re.sub(rf"^\s*{trigger_pattern(old).pattern}\s*,?\s*", "", text)
    if trigger and not has_trigger(text, trigger):
        text = f"{trigger}, {text.lstrip()}"
    return text


def _section(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("SectionLabel")
    return label


class GenerateFormWidget(QWidget):
    generate_requested = Signal()
    explore_requested = Signal()
    cancel_requested = Signal()
    context_changed = Signal()
    message_posted = Signal(str)
    refine_requested = Signal()
    concept_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("GenerateForm")
        self._models: list[str] = []
        self._models_loading = True
        self._preferred_model: dict[str, str] = {}
        self._server_problem: str | None = "Looking for ComfyUI servers…"
        self._trigger_in_prompt = ""
        self._running = 0
        self.staging_character: LoraOption | None = None
        self.aspect = DEFAULT_ASPECT
        self.tier = DEFAULT_TIER
        self.batch = 1

        self.title = QLabel("New picture")
        self.title.setObjectName("Title")
        self.staging_banner = QLabel("")
        self.staging_banner.setObjectName("StagingBanner")
        self.staging_banner.setWordWrap(True)
        self.staging_banner.setVisible(False)

        self.prompt_edit = QPlainTextEdit()
        self.prompt_edit.setObjectName("PromptEdit")
        self.prompt_edit.setPlaceholderText("Describe the picture: who, where, light, mood…")
        self.prompt_edit.setToolTip("What the picture shows. With a character LoRA, its "
                                    "trigger word summons the person.")
        self.prompt_edit.setFixedHeight(92)
        # local LLM refinement: shown only when the app has the service (set_refine_state)
        self.refine_button = QPushButton("Refine with local LLM…")
        self.refine_button.setObjectName("RefineButton")
        self.refine_button.setAutoDefault(False)
        self.refine_button.setVisible(False)
        self.refine_button.clicked.connect(self.refine_requested)
        self.concept_button = QPushButton("Concept…")
        self.concept_button.setObjectName("ConceptButton")
        self.concept_button.setAutoDefault(False)
        self.concept_button.setToolTip("Build the prompt field by field (action, outfit, "
                                       "setting, light…), lock what you like, shuffle the "
                                       "rest; save concepts to reuse them.")
        self.concept_button.clicked.connect(self.concept_requested)
        prompt_header = QWidget()
        ph = QHBoxLayout(prompt_header)
        ph.setContentsMargins(0, 0, 0, 0)
        ph.addWidget(_section("Prompt"))
        ph.addStretch(1)
        ph.addWidget(self.concept_button)
        ph.addWidget(self.refine_button)

        self.family_combo = QComboBox()
        self.family_combo.setObjectName("FamilyCombo")
        for key, label in FAMILIES:
            self.family_combo.addItem(label, key)
        self.family_combo.setToolTip("The model family. It decides the workflow, the native "
                                     "picture size and the quality settings. A LoRA works "
                                     "only with the family it was trained for.")
        self.model_combo = QComboBox()
        self.model_combo.setObjectName("ModelCombo")
        self.model_combo.setToolTip("The base model file, as the ComfyUI servers list it (only "
                                    "files of the chosen family are shown).")
        shrinkable(self.model_combo, 14)
        shrinkable(self.family_combo, 8)
        self.model_hint = subtle()
        family_row = QHBoxLayout()
        family_row.addWidget(self.family_combo, 2)
        family_row.addWidget(self.model_combo, 3)

        self.aspect_group = QButtonGroup(self)
        self.aspect_buttons: dict[str, QPushButton] = {}
        aspect_grid = QGridLayout()
        aspect_grid.setSpacing(6)
        for n, name in enumerate(ASPECTS):
            button = QPushButton(name)
            button.setCheckable(True)
            button.setObjectName("AspectButton")
            button.setProperty("aspect", name)
            self.aspect_group.addButton(button)
            self.aspect_buttons[name] = button
            aspect_grid.addWidget(button, n // 4, n % 4)
        self.aspect_buttons[self.aspect].setChecked(True)
        self.size_label = subtle()
        self.size_label.setObjectName("SizeLabel")

        self.tier_group = QButtonGroup(self)
        self.tier_buttons: dict[str, QPushButton] = {}
        tier_row = QHBoxLayout()
        tier_row.setSpacing(6)
        for name in TIERS:
            button = QPushButton(name)
            button.setCheckable(True)
            button.setObjectName("PresetButton")
            self.tier_group.addButton(button)
            self.tier_buttons[name] = button
            tier_row.addWidget(button, 1)
        self.tier_buttons[self.tier].setChecked(True)
        self.tier_note = subtle()

        self.batch_group = QButtonGroup(self)
        self.batch_buttons: dict[int, QPushButton] = {}
        batch_tip = ("How many pictures one Generate makes, each with its own seed. More "
                     "pictures take proportionally longer.")
        batch_row = QHBoxLayout()
        batch_row.setSpacing(6)
        batch_label = QLabel("Pictures per click")
        batch_label.setToolTip(batch_tip)
        batch_row.addWidget(batch_label)
        batch_row.addStretch(1)
        for n in BATCH_SIZES:
            button = QPushButton(str(n))
            button.setCheckable(True)
            button.setObjectName("BatchButton")
            button.setToolTip(batch_tip)
            self.batch_group.addButton(button)
            self.batch_buttons[n] = button
            batch_row.addWidget(button)
        self.batch_buttons[1].setChecked(True)

        self.input_image = InputImageWidget()
        self.lora = LoraPickerWidget()
        self.extras = ExtrasWidget()
        self.advanced = AdvancedWidget()

        self.generate_button = QPushButton("Generate")
        self.generate_button.setObjectName("GenerateButton")
        self.generate_button.setProperty("primary", True)
        self.generate_button.setMinimumHeight(34)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("CancelButton")
        self.cancel_button.setMinimumHeight(34)
        self.explore_button = QPushButton("Explore")
        self.explore_button.setObjectName("ExploreButton")
        self.explore_button.setMinimumHeight(34)
        self.explore_drafts = 20
        go_row = QHBoxLayout()
        go_row.addWidget(self.generate_button, 3)
        go_row.addWidget(self.explore_button, 2)
        go_row.addWidget(self.cancel_button, 1)
        self.generate_hint = subtle()
        self.generate_hint.setObjectName("GenerateHint")
        self.error_label = QLabel("")
        self.error_label.setObjectName("ErrorText")
        self.error_label.setWordWrap(True)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.setVisible(False)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 0, 8, 0)
        layout.setSpacing(6)
        for widget in (self.title, self.staging_banner, prompt_header, self.prompt_edit,
                       self.input_image, _section("Model")):
            layout.addWidget(widget)
        layout.addLayout(family_row)
        layout.addWidget(self.model_hint)
        layout.addWidget(_section("Aspect ratio"))
        layout.addLayout(aspect_grid)
        layout.addWidget(self.size_label)
        layout.addWidget(_section("Quality"))
        layout.addLayout(tier_row)
        layout.addWidget(self.tier_note)
        layout.addLayout(batch_row)
        layout.addWidget(_section("Character LoRA"))
        layout.addWidget(self.lora)
        layout.addWidget(_section("Extras"))
        layout.addWidget(self.extras)
        layout.addWidget(self.advanced)
        layout.addStretch(1)
        # Generate, Cancel and what stops them stay in view: the tab pins this under the form
        self.footer = QWidget()
        self.footer.setObjectName("GenerateFooter")
        foot = QVBoxLayout(self.footer)
        foot.setContentsMargins(4, 6, 8, 0)
        foot.setSpacing(4)
        foot.addLayout(go_row)
        foot.addWidget(self.generate_hint)
        foot.addWidget(self.error_label)

        self.prompt_edit.textChanged.connect(self._update_generate)
        self.family_combo.currentIndexChanged.connect(lambda _: self._on_family())
        self.model_combo.currentIndexChanged.connect(lambda _: self._on_model())
        self.aspect_group.buttonClicked.connect(lambda b: self.set_aspect(b.property("aspect")))
        self.tier_group.buttonClicked.connect(lambda b: self.set_tier(b.text()))
        self.batch_group.buttonClicked.connect(lambda b: self.set_batch(int(b.text())))
        self.lora.changed.connect(self._on_lora)
        self.extras.changed.connect(self._update_generate)
        self.input_image.changed.connect(self._update_generate)
        self.advanced.changed.connect(self._update_generate)
        self.advanced.message_posted.connect(self.message_posted)
        self.generate_button.clicked.connect(self._on_generate)
        self.explore_button.clicked.connect(self._on_explore)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self._refresh_presets()
        self._on_model()

    # -- family, model, presets ------------------------------------------------------------------
    def family(self) -> str:
        return self.family_combo.currentData()

    def set_family(self, family: str) -> None:
        idx = self.family_combo.findData(family)
        if idx >= 0 and idx != self.family_combo.currentIndex():
            self.family_combo.setCurrentIndex(idx)

    def _on_family(self) -> None:
        self._models_loading = True
        self._refresh_presets()
        self._on_model()
        self.context_changed.emit()

    def set_models(self, names: Sequence[str]) -> None:
        """The model files the ready servers list for the current family."""
        if list(names) == self._models and not self._models_loading:
            self._on_model()      # same list (a server poll): leave the picker alone
            return
        keep = self.model() or self._preferred_model.get(self.family(), "")
        self._models = list(names)
        self._models_loading = False
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for name in self._models:   # a file whose family cannot be told says so
            unknown = classify_model(name) == UNKNOWN
            self.model_combo.addItem(f"{name} (family unknown)" if unknown else name, name)
        idx = self.model_combo.findData(keep) if keep else -1
        self.model_combo.setCurrentIndex(idx if idx >= 0 else (0 if self._models else -1))
        self.model_combo.setPlaceholderText("No server ready" if self._server_problem
                                            else "No models of this family")
        self.model_combo.blockSignals(False)
        self._on_model()

    def model(self) -> str:
        return self.model_combo.currentData() or ""

    def _on_model(self) -> None:
        if self.model():
            self._preferred_model[self.family()] = self.model()
        family = family_label(self.family())
        if self._server_problem:
            self.model_hint.setText("The models are listed once a ComfyUI server is ready.")
        elif self._models_loading:
            self.model_hint.setText("Asking the servers for their models…")
        elif not self._models:
            self.model_hint.setText(f"No {family} model on the ready servers. Put one in "
                                    "ComfyUI's models folder (checkpoints, or diffusion_models "
                                    "for Flux and Chroma), or pick another family.")
        else:
            n = len(self._models)
            self.model_hint.setText(f"{n} {family} model{'s' if n != 1 else ''} on the servers.")
        self.model_combo.setEnabled(bool(self._models))
        if not self._models:
            self.model_combo.setToolTip(self.model_hint.text())
        else:
            self.model_combo.setToolTip("The base model file, as the ComfyUI servers list it "
                                        "(only files of the chosen family are shown, and "
                                        "files whose family cannot be told, marked so).")
        self._update_generate()

    def set_aspect(self, name: str) -> None:
        if name in self.aspect_buttons:
            self.aspect = name
            self.aspect_buttons[name].setChecked(True)
            self._refresh_presets()

    def set_tier(self, name: str) -> None:
        if name in self.tier_buttons:
            self.tier = name
            self.tier_buttons[name].setChecked(True)
            self._refresh_presets()

    def set_batch(self, n: int) -> None:
        if n in self.batch_buttons:
            self.batch = n
            self.batch_buttons[n].setChecked(True)

    def _refresh_presets(self) -> None:
        family = self.family()
        for name, button in self.aspect_buttons.items():
            w, h = aspect_size(name, family)
            button.setText(f"{name}\n{w}×{h}")
            button.setToolTip(aspect_tooltip(name, family))
        w, h = aspect_size(self.aspect, family)
        self.size_label.setText(f"{w} × {h} px · {megapixels(w, h):.2f} MP, sized for "
                                f"{family_label(family)}")
        for name, button in self.tier_buttons.items():
            button.setToolTip(tier_note(name, family))
        self.tier_note.setText(tier_note(self.tier, family))

    # -- LoRA and trigger ------------------------------------------------------------------------
    def set_loras(self, options: Sequence[LoraOption]) -> None:
        self.lora.set_options(options)
        if self.staging_character is not None:
            fresh = next((o for o in options
                          if o.character_id == self.staging_character.character_id), None)
            if fresh is not None:
                self.staging_character = fresh
                self.lora.set_locked(fresh)
        self._on_lora()

    def _on_lora(self) -> None:
        opt = self.lora.option()
        if opt is not None and not lora_fits(opt.family, self.family()):
            self.family_combo.blockSignals(True)
            self.set_family(opt.family)
            self.family_combo.blockSignals(False)
            self._models_loading = True
            self._refresh_presets()
            self._on_model()
        trigger = opt.trigger if opt else ""
        if trigger != self._trigger_in_prompt:
            text = self.prompt_edit.toPlainText()
            updated = insert_trigger(text, trigger, self._trigger_in_prompt)
            if updated != text:
                self.set_prompt(updated)
            self._trigger_in_prompt = trigger
        self.context_changed.emit()
        self._update_generate()

    def set_refine_state(self, available: bool | None, message: str = "") -> None:
        """The refine button: None = checking, True = Ollama answered, False = not found
        (disabled, ``message`` says why in the tooltip)."""
        self.refine_button.setVisible(True)
        self.refine_button.setEnabled(bool(available))
        if available is None:
            self.refine_button.setText("Refine with local LLM…")
            self.refine_button.setToolTip("Looking for Ollama…")
        elif available:
            self.refine_button.setText("Refine with local LLM…")
            self.refine_button.setToolTip(
                "Expand, structure and rewrite this prompt with a local LLM (Ollama), in the "
                "style of the chosen model family, keeping the trigger word. " + message)
        else:
            self.refine_button.setText("Ollama not found")
            self.refine_button.setToolTip(message)

    def set_prompt(self, text: str) -> None:
        """Replace the prompt, with the cursor at the end (typing goes on after it)."""
        self.prompt_edit.setPlainText(text)
        self.prompt_edit.moveCursor(QTextCursor.MoveOperation.End)

    # -- staging -----------------------------------------------------------------------------
    def set_staging(self, option: LoraOption | None) -> None:
        """Generate for ``option``'s dataset (its LoRA fixed), or back to the gallery."""
        self.staging_character = option
        staging = option is not None
        self.staging_banner.setVisible(staging)
        if option is not None:
            self.title.setText(f"More pictures of {option.name}")
            self.staging_banner.setText(
                f"For {option.name}'s dataset. The pictures wait in the staging strip: keep "
                "the good ones (they join the dataset, captioned with the trigger word "
                f"{option.trigger}) and discard the rest.")
            if self.batch == 1:
                self.set_batch(4)
        else:
            self.title.setText("New picture")
        self.lora.set_locked(option)
        self._update_generate()

    # -- state from the tab ------------------------------------------------------------------
    def set_server_problem(self, problem: str | None) -> None:
        self._server_problem = problem
        self._on_model()

    def set_feature_support(self, support: dict[str, tuple[bool, str]]) -> None:
        self.extras.set_support(support)
        self._update_generate()

    def set_lora_visibility(self, rows: Sequence[tuple[str, bool, str]]) -> None:
        self.lora.set_visibility(rows)
        self._update_generate()

    def set_running(self, count: int) -> None:
        self._running = count
        self._update_generate()

    def set_last_seed(self, seed: int) -> None:
        self.advanced.set_last_seed(seed)

    def show_error(self, text: str) -> None:
        self.error_label.setText(text)
        self.error_label.setVisible(bool(text))

    # -- generate ----------------------------------------------------------------------------
    def problem(self) -> str | None:
        """Why Generate cannot run now, in plain words (None when it can)."""
        if self._server_problem:
            return self._server_problem
        if not self.prompt_edit.toPlainText().strip():
            return "Write a prompt first."
        if self._models_loading:
            return "Asking the servers for their models…"
        if not self.model():
            return (f"No {family_label(self.family())} model on the servers: add one to "
                    "ComfyUI or pick another family.")
        opt = self.lora.option()
        if opt is not None and not lora_fits(opt.family, self.family()):
            return (f"{opt.name}'s LoRA is for {family_label(opt.family)}, not "
                    f"{family_label(self.family())}.")
        if self.staging_character is not None and opt is None:
            return f"{self.staging_character.name}'s LoRA is missing."
        missing = self.lora.missing_everywhere()
        if opt is not None and missing:
            return f"No ready server has {opt.name}'s LoRA yet (see above)."
        return self.extras.problem() or self.advanced.problem()

    def _update_generate(self) -> None:
        problem = self.problem()
        self.generate_button.setEnabled(problem is None)
        self.generate_button.setToolTip(problem or "Make the pictures. You can queue more "
                                                   "while one runs.")
        where = "the staging strip" if self.staging_character else "the gallery"
        self.generate_hint.setText(problem or (
            f"{self._running} running. Generate again to queue more." if self._running
            else f"The pictures land in {where}."))
        self.explore_button.setText(f"Explore ({self.explore_drafts})")
        self.explore_button.setEnabled(problem is None and self.staging_character is None)
        self.explore_button.setToolTip(
            problem or ("Explore is for the gallery; leave staging mode first."
                        if self.staging_character is not None else
                        f"Make {self.explore_drafts} quick drafts of this prompt (Draft quality, "
                        "smaller, one fixed seed each), keep the best, and take them to "
                        "standard and final quality with the same seeds. Sizes: Settings → "
                        "ComfyUI."))
        self.cancel_button.setEnabled(self._running > 0)
        self.cancel_button.setToolTip("Stop the running and queued pictures." if self._running
                                      else "Nothing is running.")

    def _on_generate(self) -> None:
        self.show_error("")
        if self.problem() is None:
            self.generate_requested.emit()

    def _on_explore(self) -> None:
        self.show_error("")
        if self.problem() is None and self.staging_character is None:
            self.explore_requested.emit()

    def set_explore_drafts(self, n: int) -> None:
        """How many drafts Explore makes (shown on its button)."""
        self.explore_drafts = int(n)
        self._update_generate()

    def request(self) -> GenerationRequest:
        """The GenerationRequest the form describes (staging target in staging mode)."""
        opt = self.lora.option()
        prompt = self.prompt_edit.toPlainText().strip()
        lora = None
        if opt is not None:
            prompt = insert_trigger(prompt, opt.trigger).strip().rstrip(",").strip()
            lora = LoraChoice(opt.character_id, opt.path, self.lora.strength(), opt.trigger)
        staging = self.staging_character
        features, inputs, parent = self.extras.features(), self.extras.inputs(), ""
        if self.input_image.path():          # image to image from the input image
            parent = self.input_image.path()
            features = features | {"img2img"}
            inputs["denoise"] = f"{self.input_image.denoise():.2f}"
        return GenerationRequest(
            prompt=prompt, negative=self.advanced.negative(), family=self.family(),
            model=self.model(), aspect=self.aspect, tier=self.tier, seed=self.advanced.seed(),
            batch=self.batch, lora=lora, features=features, feature_inputs=inputs,
            target="staging" if staging else "gallery",
            character_id=(staging.character_id if staging
                          else opt.character_id if opt else None), parent_image=parent)

    def fill(self, item: GalleryItem) -> None:
        """Reuse parameters: fill the form from a gallery image."""
        p: dict[str, Any] = dict(item.params or {})
        family = str(p.get("family") or family_of_workflow(item.workflow) or self.family())
        if item.model:
            self._preferred_model[family] = item.model
        self.set_family(family)
        if self.staging_character is None:
            opts = self.lora.options()
            opt = next((o for o in opts if item.lora_path and o.path == item.lora_path), None)
            if opt is None and item.lora_path:
                opt = next((o for o in opts if o.character_id == item.character_id), None)
            self.lora.select(opt.character_id if opt else None)
        opt = self.lora.option()
        self._trigger_in_prompt = opt.trigger if opt else ""
        self.set_prompt(item.prompt)
        self.advanced.set_negative(item.negative)
        if item.lora_path:
            self.lora.set_strength(item.lora_strength)
        idx = self.model_combo.findData(item.model) if item.model else -1
        if idx >= 0:
            self.model_combo.setCurrentIndex(idx)
        self.set_aspect(str(p.get("aspect", self.aspect)))
        self.set_tier(str(p.get("tier", self.tier)))
        batch = p.get("batch", 1)
        self.set_batch(int(batch) if str(batch).isdigit() else 1)
        self.advanced.set_seed(item.seed)
        self.extras.set_features(p.get("features") or ())
        if "img2img" in (p.get("features") or ()) and item.parent_image:
            denoise = (p.get("feature_inputs") or {}).get("denoise")
            self.input_image.set_image(item.parent_image,
                                       float(denoise) if denoise is not None else None)
        else:
            self.input_image.clear()
        self._update_generate()
