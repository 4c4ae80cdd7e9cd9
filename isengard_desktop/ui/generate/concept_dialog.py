"""The concept builder (issue 17, item 5): a picture described field by field (character,
action, outfit, setting, lighting, camera, composition, style, mood), each field lockable;
"Shuffle" fills the unlocked ones from the curated lists (``resources/concepts/lists.toml``),
"Shuffle with LLM" has a local LLM invent them (the refinement's expand and structure stages;
the locked fields are kept word for word); concepts are saved by name and reused. The prompt
is composed live in the family's style; "Use as prompt" puts it in the Generate form and
"Explore" sends it to the draft funnel when the tab has one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QGridLayout, QHBoxLayout,
                               QLabel, QLineEdit, QPushButton, QToolButton, QVBoxLayout,
                               QWidget)

from ...core.concepts import (SHUFFLED, Concept, ConceptError, ConceptStore, compose_prompt,
                              idea_from, load_lists, merge_locked, shuffle)
from ...core.prompt_refine import CONCEPT_FIELDS, validate_concept
from ...services.background import BackgroundOp

__all__ = ["ConceptDialog"]

LABELS = {"action": "Action", "outfit": "Outfit", "setting": "Setting", "lighting": "Lighting",
          "camera": "Camera / lens", "composition": "Composition", "style": "Style",
          "mood": "Mood"}


class ConceptDialog(QDialog):
    """Signals: ``prompt_chosen(str prompt, object character_id)``; ``explore_requested(str
    prompt, object character_id)`` (only when ``can_explore``)."""

    prompt_chosen = Signal(str, object)
    explore_requested = Signal(str, object)

    def __init__(self, library: Any, store: ConceptStore, family: str, *,
                 refine: Any | None = None, refine_available: bool = False,
                 can_explore: bool = False, lists_path: Path | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Concept builder")
        self.resize(760, 560)
        self._library, self._store, self._family = library, store, family
        self._refine = refine
        self._lists: dict[str, list[str]] = {}
        self._llm_running = False

        self.character = QComboBox()
        self.character.setToolTip("Who the picture shows. A character's trigger word is put "
                                  "in the prompt and its newest LoRA is picked in the form.")
        self.character.addItem("Nobody in particular", None)
        for ch in library.characters():
            self.character.addItem(f"{ch.name} ({ch.trigger_word})", ch.id)
        self.edits: dict[str, QLineEdit] = {}
        self.locks: dict[str, QToolButton] = {}
        grid = QGridLayout()
        grid.addWidget(QLabel("Character"), 0, 0)
        grid.addWidget(self.character, 0, 1, 1, 2)
        for row, name in enumerate(SHUFFLED, start=1):
            edit = QLineEdit()
            edit.setPlaceholderText(CONCEPT_FIELDS[name])
            edit.setToolTip(f"{LABELS[name]}: {CONCEPT_FIELDS[name]}.")
            edit.textChanged.connect(self._update_preview)
            lock = QToolButton()
            lock.setCheckable(True)
            lock.setText("Unlocked")
            lock.setToolTip("Locked fields keep their text when you shuffle.")
            lock.toggled.connect(lambda on, b=lock: b.setText("Locked" if on else "Unlocked"))
            grid.addWidget(QLabel(LABELS[name]), row, 0)
            grid.addWidget(edit, row, 1)
            grid.addWidget(lock, row, 2)
            self.edits[name], self.locks[name] = edit, lock
        self.character.currentIndexChanged.connect(lambda _i: self._update_preview())

        self.shuffle_button = QPushButton("Shuffle unlocked")
        self.shuffle_button.setToolTip("Pick new choices for every unlocked field from the "
                                       "curated lists.")
        self.llm_button = QPushButton("Shuffle with LLM")
        self.llm_button.setEnabled(refine is not None and refine_available)
        self.llm_button.setToolTip(
            "A local LLM (Ollama) invents the unlocked fields around the locked ones."
            if refine is not None and refine_available else
            "Needs a local Ollama server (Settings → ComfyUI → Local LLM).")
        self.shuffle_button.clicked.connect(self.shuffle_unlocked)
        self.llm_button.clicked.connect(self.shuffle_with_llm)
        actions = QHBoxLayout()
        actions.addWidget(self.shuffle_button)
        actions.addWidget(self.llm_button)
        actions.addStretch(1)

        self.saved = QComboBox()
        self.saved.setToolTip("Concepts you saved; pick one and press Load.")
        self.saved.setMinimumWidth(200)
        self.load_button = QPushButton("Load")
        self.load_button.setToolTip("Fill the fields from the chosen saved concept.")
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("Name to save as")
        self.name_edit.setToolTip("Saving under an existing name replaces that concept.")
        self.save_button = QPushButton("Save")
        self.save_button.setToolTip("Save these fields and locks under the name.")
        self.delete_button = QPushButton("Delete")
        self.delete_button.setToolTip("Delete the chosen saved concept.")
        self.load_button.clicked.connect(self.load_selected)
        self.save_button.clicked.connect(self.save_current)
        self.delete_button.clicked.connect(self.delete_selected)
        store_row = QHBoxLayout()
        store_row.addWidget(self.saved, 1)
        store_row.addWidget(self.load_button)
        store_row.addWidget(self.delete_button)
        store_row.addSpacing(16)
        store_row.addWidget(self.name_edit, 1)
        store_row.addWidget(self.save_button)

        self.preview = QLabel()
        self.preview.setWordWrap(True)
        self.preview.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.preview.setToolTip("The prompt these fields make, in the style of the chosen "
                                "model family.")
        self.status = QLabel()
        self.status.setProperty("subtle", True)
        self.status.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.use_button = buttons.addButton("Use as prompt",
                                            QDialogButtonBox.ButtonRole.ActionRole)
        self.use_button.setToolTip("Put this prompt (and the character's LoRA) in the form.")
        self.explore_button = buttons.addButton("Explore drafts",
                                                QDialogButtonBox.ButtonRole.ActionRole)
        self.explore_button.setToolTip("Render drafts of this concept in the draft funnel.")
        self.explore_button.setVisible(can_explore)
        self.use_button.clicked.connect(self._use)
        self.explore_button.clicked.connect(self._explore)
        buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addLayout(grid)
        layout.addLayout(actions)
        layout.addWidget(QLabel("Saved concepts"))
        layout.addLayout(store_row)
        layout.addWidget(QLabel("Prompt"))
        layout.addWidget(self.preview)
        layout.addWidget(self.status)
        layout.addStretch(1)
        layout.addWidget(buttons)
        if refine is not None:
            refine.stage_done.connect(self._on_stage_done)
            refine.failed.connect(self._on_llm_failed)
            refine.finished.connect(self._on_llm_finished)
        self._update_preview()
        self._io(lambda: (load_lists(lists_path), store.load()), self._on_loaded)

    # -- the concept -------------------------------------------------------------------------
    def concept(self) -> Concept:
        fields = {name: self.edits[name].text().strip() for name in SHUFFLED}
        fields["character"] = self._trigger()
        locked = frozenset(n for n, b in self.locks.items() if b.isChecked())
        return Concept(fields, locked, self.name_edit.text().strip(), self.character_id())

    def set_concept(self, concept: Concept) -> None:
        for name in SHUFFLED:
            self.edits[name].setText(concept.fields.get(name, ""))
            self.locks[name].setChecked(name in concept.locked)
        index = self.character.findData(concept.character_id)
        self.character.setCurrentIndex(max(index, 0))
        self.name_edit.setText(concept.name)
        self._update_preview()

    def character_id(self) -> int | None:
        value = self.character.currentData()
        return int(value) if value is not None else None

    def _trigger(self) -> str:
        cid = self.character_id()
        ch = self._library.character(cid) if cid is not None else None
        return ch.trigger_word if ch is not None else ""

    def prompt(self) -> str:
        return compose_prompt(self.concept(), self._family, self._trigger())

    def _update_preview(self) -> None:
        self.preview.setText(self.prompt() or "—")
        has_text = any(self.edits[n].text().strip() for n in SHUFFLED)
        self.use_button.setEnabled(has_text)
        self.explore_button.setEnabled(has_text)

    # -- shuffling ---------------------------------------------------------------------------
    def shuffle_unlocked(self) -> None:
        if not self._lists:
            self.status.setText("The curated lists are not loaded.")
            return
        self.set_concept(shuffle(self.concept(), self._lists))

    def shuffle_with_llm(self) -> None:
        if self._refine is None or self._llm_running:
            return
        self._llm_running = True
        self.llm_button.setEnabled(False)
        self.status.setText("The local LLM is inventing the unlocked fields…")
        self._refine.start(idea_from(self.concept()), family=self._family,
                           trigger=self._trigger())

    def _on_stage_done(self, stage: str, result: str) -> None:
        if not self._llm_running or stage != "structure" or self._refine is None:
            return
        self._refine.cancel()           # the concept is all this needs (not the final prompt)
        try:
            filled = validate_concept(result)
        except ValueError as exc:
            self.status.setText(f"The LLM's fields could not be read: {exc}.")
            return
        self.set_concept(merge_locked(self.concept(), filled))
        self.status.setText("Filled in by the local LLM; locked fields kept.")

    def _on_llm_failed(self, message: str) -> None:
        if self._llm_running:
            self.status.setText(message)

    def _on_llm_finished(self, _ok: bool) -> None:
        if self._llm_running:
            self._llm_running = False
            self.llm_button.setEnabled(True)

    # -- saved concepts ----------------------------------------------------------------------
    def _io(self, op: Callable[[], Any], done: Callable[[Any], None]) -> None:
        BackgroundOp(parent=self, op=op).success(done).failure(self._io_failed).run()

    def _io_failed(self, exc: BaseException) -> None:
        self.status.setText(str(exc) if isinstance(exc, ConceptError)
                            else f"Could not read or write the concepts: {exc}")

    def _on_loaded(self, result: tuple[dict[str, list[str]], list[Concept]]) -> None:
        self._lists, concepts = result
        self._set_saved(concepts)

    def _set_saved(self, concepts: list[Concept]) -> None:
        self.saved.clear()
        for concept in concepts:
            self.saved.addItem(concept.name, json.dumps(concept.to_dict()))
        has = bool(concepts)
        self.load_button.setEnabled(has)
        self.delete_button.setEnabled(has)

    def saved_names(self) -> list[str]:
        return [self.saved.itemText(i) for i in range(self.saved.count())]

    def save_current(self) -> None:
        concept = self.concept()
        if not concept.name:
            self.status.setText("Give the concept a name to save it.")
            self.name_edit.setFocus()
            return
        self._io(lambda: self._store.save(concept), self._saved)

    def _saved(self, concepts: list[Concept]) -> None:
        self._set_saved(concepts)
        self.saved.setCurrentIndex(self.saved.findText(self.name_edit.text().strip()))
        self.status.setText(f"Saved “{self.name_edit.text().strip()}”.")

    def load_selected(self) -> None:
        data = self.saved.currentData()
        if data:
            self.set_concept(Concept.from_dict(json.loads(data)))
            self.status.setText(f"Loaded “{self.saved.currentText()}”.")

    def delete_selected(self) -> None:
        name = self.saved.currentText()
        if name:
            self._io(lambda: self._store.delete(name), self._set_saved)

    def done(self, result: int) -> None:  # noqa: D102  (closing stops the LLM and lets go)
        refine, self._refine = self._refine, None
        if refine is not None:
            if self._llm_running:
                refine.cancel()
            for signal, slot in ((refine.stage_done, self._on_stage_done),
                                 (refine.failed, self._on_llm_failed),
                                 (refine.finished, self._on_llm_finished)):
                signal.disconnect(slot)
        super().done(result)

    # -- out ---------------------------------------------------------------------------------
    def _use(self) -> None:
        self.prompt_chosen.emit(self.prompt(), self.character_id())
        self.accept()

    def _explore(self) -> None:
        self.explore_requested.emit(self.prompt(), self.character_id())
        self.accept()
