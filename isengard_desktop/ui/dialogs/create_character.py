"""Create a character: name, trigger word (suggested, editable, copyable), description, and a
drop zone so photos can come in with the character in one step."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (QApplication, QDialog, QDialogButtonBox, QFormLayout, QHBoxLayout,
                               QLabel, QLineEdit, QPlainTextEdit, QPushButton, QVBoxLayout,
                               QWidget)

from ...core.naming import MAX_CHARACTER_NAME_CHARS, validate_character_name
from ...services.library import LibraryService
from ..widgets.drop_zone import DropZoneWidget


class CreateCharacterDialog(QDialog):
    def __init__(self, library: LibraryService, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("New character")
        self.setMinimumWidth(520)
        self._library = library
        self.dropped: list[Path] = []
        self._trigger_edited = False

        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("e.g. Anna")
        self.name_edit.setMaxLength(MAX_CHARACTER_NAME_CHARS)
        self.name_edit.setToolTip("Shown in the app only; it does not reach the model.")
        self.trigger_edit = QLineEdit(library.suggest_trigger(""))
        self.trigger_edit.setToolTip(
            "A rare token the LoRA learns to tie to this person. Put it in a prompt to summon "
            "them. A made-up word is best: common words already mean something to the model.")
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the trigger word to the clipboard.")
        self.regen_button = QPushButton("New suggestion")
        self.regen_button.setToolTip("Suggest another rare token.")
        trig_row = QHBoxLayout()
        trig_row.addWidget(self.trigger_edit, 1)
        trig_row.addWidget(self.copy_button)
        trig_row.addWidget(self.regen_button)
        self.description_edit = QPlainTextEdit()
        self.description_edit.setPlaceholderText("Optional notes (who, which photos, style)")
        self.description_edit.setFixedHeight(64)

        self.drop_zone = DropZoneWidget("Drop photos or folders here — or click to choose files")
        self.drop_zone.setObjectName("DropZone")
        self.drop_summary = QLabel("No photos yet — you can also add them later.")
        self.drop_summary.setProperty("subtle", True)
        self.drop_summary.setWordWrap(True)
        self.error_label = QLabel("")
        self.error_label.setObjectName("ErrorText")
        self.error_label.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Name", self.name_edit)
        form.addRow("Trigger word", trig_row)
        form.addRow("Description", self.description_edit)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.create_button = self.buttons.addButton("Create", QDialogButtonBox.ButtonRole.AcceptRole)
        self.create_button.setProperty("primary", True)
        self.create_button.setDefault(True)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.drop_zone)
        layout.addWidget(self.drop_summary)
        layout.addWidget(self.error_label)
        layout.addWidget(self.buttons)

        self.name_edit.textChanged.connect(self._on_name_changed)
        self.trigger_edit.textEdited.connect(lambda _: setattr(self, "_trigger_edited", True))
        self.copy_button.clicked.connect(self._copy_trigger)
        self.regen_button.clicked.connect(self._regenerate)
        self.drop_zone.files_dropped.connect(self._on_files_dropped)
        self.buttons.rejected.connect(self.reject)
        self.create_button.clicked.connect(self._create)

    def _on_name_changed(self, name: str) -> None:
        if not self._trigger_edited:
            self.trigger_edit.setText(self._library.suggest_trigger(name))
        # An empty name is only refused on Create (not flagged while the field is new).
        problem = validate_character_name(name) if name.strip() else None
        self.error_label.setText(problem or "")
        self.create_button.setEnabled(problem is None)

    def _regenerate(self) -> None:
        self.trigger_edit.setText(self._library.suggest_trigger(self.name_edit.text()))
        self._trigger_edited = False

    def _copy_trigger(self) -> None:
        QApplication.clipboard().setText(self.trigger_edit.text().strip())
        self.copy_button.setText("Copied")

    def _on_files_dropped(self, paths: list[Path]) -> None:
        for p in paths:
            if p not in self.dropped:
                self.dropped.append(p)
        names = ", ".join(p.name + ("/" if p.is_dir() else "") for p in self.dropped[:4])
        more = f" and {len(self.dropped) - 4} more" if len(self.dropped) > 4 else ""
        self.drop_summary.setText(
            f"{len(self.dropped)} item(s) will be imported when you press Create: {names}{more}")

    def _create(self) -> None:
        paths = list(self.dropped)

        def created(character) -> None:  # noqa: ANN001
            if paths:
                self._library.import_photos(character.id, paths)

        problem = self._library.create_character(
            self.name_edit.text(), self.trigger_edit.text(),
            self.description_edit.toPlainText().strip(), on_created=created)
        if problem:
            self.error_label.setText(problem)
            return
        self.accept()
