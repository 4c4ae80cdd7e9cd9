"""The "Refine with local LLM…" dialog: three stages streaming from the local Ollama (expand,
concept fields, final prompt), each editable; "Redo from here" runs the stages after an edit,
Cancel stops the stream, "Use this prompt" hands the final text back to the form."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QGroupBox, QHBoxLayout, QLabel,
                               QPlainTextEdit, QPushButton, QVBoxLayout, QWidget)

from ...core.prompt_refine import STAGES
from ...services.prompt_refine import PromptRefineService

__all__ = ["RefineDialog"]

TITLES = {"expand": "1 · Expanded idea", "structure": "2 · Concept fields (JSON)",
          "final": "3 · Final prompt"}
TIPS = {"expand": "The LLM's richer description of your idea. Edit it, then Redo from here.",
        "structure": "The description split into concept fields (character, action, outfit, "
                     "setting, lighting, camera, composition, style, mood) as JSON. Edit the "
                     "values, then Redo from here.",
        "final": "The prompt in the style the model family wants (tags for SD 1.5/SDXL, "
                 "sentences for Flux/Chroma), with the trigger word kept. Editable."}


class RefineDialog(QDialog):
    prompt_chosen = Signal(str)

    def __init__(self, service: PromptRefineService, idea: str, *, family: str,
                 trigger: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Refine the prompt with a local LLM")
        self.setObjectName("RefineDialog")
        self._service = service
        self._idea, self._family, self._trigger = idea, family, trigger
        self.edits: dict[str, QPlainTextEdit] = {}
        self.redo: dict[str, QPushButton] = {}
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"Idea: {idea}"))
        for stage in STAGES:
            box = QGroupBox(TITLES[stage])
            box.setToolTip(TIPS[stage])
            bv = QVBoxLayout(box)
            edit = QPlainTextEdit()
            edit.setObjectName(f"refine_{stage}")
            edit.setToolTip(TIPS[stage])
            bv.addWidget(edit)
            if stage != "expand":
                row = QHBoxLayout()
                redo = QPushButton("Redo from here")
                redo.setObjectName(f"refine_redo_{stage}")
                redo.setToolTip("Run this stage and the next again from the (edited) text "
                                "above it.")
                redo.setAutoDefault(False)
                redo.clicked.connect(lambda _=False, s=stage: self.run(s))
                row.addStretch(1)
                row.addWidget(redo)
                bv.addLayout(row)
                self.redo[stage] = redo
            self.edits[stage] = edit
            layout.addWidget(box)
        self.status = QLabel("")
        self.status.setObjectName("refine_status")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.buttons = QDialogButtonBox()
        self.use_button = self.buttons.addButton("Use this prompt",
                                                 QDialogButtonBox.ButtonRole.AcceptRole)
        self.use_button.setObjectName("refine_use")
        self.stop_button = self.buttons.addButton("Cancel", QDialogButtonBox.ButtonRole.RejectRole)
        self.stop_button.setObjectName("refine_cancel")
        self.use_button.clicked.connect(self._use)
        self.stop_button.clicked.connect(self._cancel_or_close)
        layout.addWidget(self.buttons)
        self.resize(640, 620)
        service.chunk.connect(self._on_chunk)
        service.stage_done.connect(self._on_done)
        service.retrying.connect(self._on_retry)
        service.failed.connect(self._on_failed)
        service.finished.connect(self._on_finished)
        self._running_stage = ""
        self._closed = False
        self._update_buttons(False)

    # -- running -----------------------------------------------------------------------------
    def run(self, first: str = "expand") -> None:
        index = STAGES.index(first)
        for stage in STAGES[index:]:
            self.edits[stage].clear()
        inputs = {s: self.edits[s].toPlainText() for s in STAGES[:index]}
        self._running_stage = first
        self.status.setStyleSheet("")
        self.status.setText(f"Asking the LLM: {TITLES[first]}…")
        self._update_buttons(True)
        self._service.start(self._idea, family=self._family, trigger=self._trigger,
                            first=first, inputs=inputs)

    def _update_buttons(self, running: bool) -> None:
        self.stop_button.setText("Cancel" if running else "Close")
        self.use_button.setEnabled(not running and bool(self.edits["final"].toPlainText()))
        for button in self.redo.values():
            button.setEnabled(not running)

    def _on_chunk(self, stage: str, text: str) -> None:
        if stage == "structure" and self._running_stage != stage:
            self._running_stage = stage
        edit = self.edits[stage]
        edit.moveCursor(QTextCursor.MoveOperation.End)
        edit.insertPlainText(text)

    def _on_done(self, stage: str, result: str) -> None:
        self.edits[stage].setPlainText(result)
        following = STAGES.index(stage) + 1
        if following < len(STAGES):
            self.status.setText(f"Asking the LLM: {TITLES[STAGES[following]]}…")

    def _on_retry(self, error: str) -> None:
        self.edits["structure"].clear()
        self.status.setText(f"The concept fields were not usable ({error}); asking once more…")

    def _on_failed(self, message: str) -> None:
        self.status.setStyleSheet("color: #f0a3a3;")
        self.status.setText(message)

    def _on_finished(self, ok: bool) -> None:
        if ok:
            self.status.setText("Done. Edit any stage, or use the prompt.")
        elif not self.status.text() or self.status.text().startswith("Asking"):
            self.status.setText("Stopped.")
        self._update_buttons(False)

    def _cancel_or_close(self) -> None:
        if self._service.running:
            self._service.cancel()
        else:
            self.reject()

    def _use(self) -> None:
        text = self.edits["final"].toPlainText().strip()
        if text:
            self.prompt_chosen.emit(text)
            self.accept()

    def done(self, result: int) -> None:  # noqa: D102  (closing stops a stream still running)
        if self._closed:
            super().done(result)
            return
        self._closed = True
        self._service.cancel()
        for signal, slot in ((self._service.chunk, self._on_chunk),
                             (self._service.stage_done, self._on_done),
                             (self._service.retrying, self._on_retry),
                             (self._service.failed, self._on_failed),
                             (self._service.finished, self._on_finished)):
            signal.disconnect(slot)
        super().done(result)
