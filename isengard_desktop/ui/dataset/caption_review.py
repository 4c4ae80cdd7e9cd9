"""The auto-caption dialog: start a captioning run for one character, then review its
suggestions — photo, current caption, suggestion (editable) — and Accept, Edit, Skip or
Accept all. Nothing is written until the user accepts; "Accept all" leaves a caption the
user wrote alone unless "also replace my own captions" is ticked. A model that is not on disk
is offered for download from Hugging Face (:class:`~.model_download.ModelDownloadWidget`)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QFileDialog, QFormLayout,
                               QGroupBox, QHBoxLayout, QLabel, QLineEdit, QListWidget,
                               QListWidgetItem, QPlainTextEdit, QProgressBar, QPushButton,
                               QSpinBox, QSplitter, QVBoxLayout, QWidget)

from ...core.captioning.job import TASKS
from ...core.captioning.models import CaptionModel, load_models, model_dir, model_ready
from ...core.captioning.postprocess import CaptionMode, CaptionOptions, TriggerPlacement
from ...core.types import Progress
from ...services.captioning import CaptionOutcome, CaptionRun, CaptionService, Suggestion
from ...services.downloads import DownloadService
from ...services.library import LibraryService
from ...services.thumbnails import ThumbnailService
from .model_download import ModelDownloadWidget

__all__ = ["CaptionReviewDialog"]

THUMB = 96
_TASK_LABELS = {"<CAPTION>": "Short (one line)", "<DETAILED_CAPTION>": "Detailed (default)",
                "<MORE_DETAILED_CAPTION>": "Very detailed"}


class CaptionReviewDialog(QDialog):
    """Auto-captioning and the review of its suggestions for one character."""

    def __init__(self, service: CaptionService, library: LibraryService,
                 thumbnails: ThumbnailService, character_id: int, models_root: Path,
                 parent: QWidget | None = None, *,
                 downloads: DownloadService | None = None) -> None:
        super().__init__(parent)
        self._service = service
        self._library = library
        self._thumbs = thumbnails
        self.character_id = character_id
        self._models_root = Path(models_root)
        self._shown: list[Suggestion] = []
        self._models: tuple[CaptionModel, ...] = ()
        self._ready: dict[str, bool] = {}          # catalogue folders: downloaded or not
        self._current_key = ""
        character = library.character(character_id)
        self._trigger = character.trigger_word if character else ""
        self.setWindowTitle(f"Auto-caption — {character.name if character else ''}")
        self.resize(1000, 680)

        # -- the run ------------------------------------------------------------------------
        self.model_combo = QComboBox()
        self.model_combo.setToolTip("The captioning model (runs in the trainer runtime, "
                                    "offline). Florence-2 base suits any GPU and the CPU; "
                                    "large is better and wants a 12 GB+ card.")
        self.folder_button = QPushButton("Model folder…")
        self.folder_button.setToolTip("Use a Florence-2 model folder you already have "
                                      "(a transformers folder with config.json).")
        self.device_combo = QComboBox()
        for label, value in (("Automatic (GPU when there is one)", "auto"), ("GPU", "cuda"),
                             ("CPU", "cpu")):
            self.device_combo.addItem(label, value)
        self.device_combo.setToolTip("Where the model runs. The CPU works everywhere but is "
                                     "much slower.")
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 64)
        self.batch_spin.setValue(8)
        self.batch_spin.setToolTip("Photos captioned together on the GPU. More is faster "
                                   "and needs more GPU memory; it is halved by itself when "
                                   "the GPU runs out of memory.")
        self.tokens_spin = QSpinBox()
        self.tokens_spin.setRange(8, 1024)
        self.tokens_spin.setValue(256)
        self.tokens_spin.setToolTip("The longest description the model may write, in tokens "
                                    "(about ¾ of a word each). Longer is slower.")
        self.task_combo = QComboBox()
        for task in TASKS:
            self.task_combo.addItem(_TASK_LABELS[task], task)
        self.task_combo.setCurrentIndex(TASKS.index("<DETAILED_CAPTION>"))
        self.task_combo.setToolTip("How long the model's description is (Florence-2's "
                                   "caption task).")
        self.start_button = QPushButton("Caption photos")
        self.start_button.setProperty("primary", True)
        self.start_button.setToolTip("Suggest captions for this character's photos that have "
                                     "none yet (a stopped run goes on where it ended). "
                                     "Nothing is written until you accept.")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after the photos in hand; their suggestions are "
                                      "kept.")
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setProperty("subtle", True)
        run_form = QFormLayout()
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(self.folder_button)
        run_form.addRow("Model", model_row)
        self.download = ModelDownloadWidget(downloads)
        run_form.addRow(self.download)
        opts = QHBoxLayout()
        opts.addWidget(QLabel("Device"))
        opts.addWidget(self.device_combo)
        opts.addWidget(QLabel("Batch"))
        opts.addWidget(self.batch_spin)
        opts.addWidget(QLabel("Detail"))
        opts.addWidget(self.task_combo)
        opts.addWidget(QLabel("Max length"))
        opts.addWidget(self.tokens_spin)
        opts.addStretch(1)
        run_form.addRow(opts)
        run_row = QHBoxLayout()
        run_row.addWidget(self.start_button)
        run_row.addWidget(self.cancel_button)
        run_row.addWidget(self.progress, 1)
        run_form.addRow(run_row)
        run_form.addRow(self.status)
        run_box = QGroupBox("Suggest captions")
        run_box.setLayout(run_form)

        # -- how suggestions are written ------------------------------------------------------
        self.mode_combo = QComboBox()
        self.mode_combo.addItem("Identity LoRA: leave out the person's fixed traits",
                                CaptionMode.IDENTITY)
        self.mode_combo.addItem("General: keep everything", CaptionMode.GENERAL)
        self.mode_combo.setToolTip(
            "Identity LoRA captions describe what changes between photos (clothes, setting, "
            "light, expression, framing) and leave out hair colour and length, eye colour, "
            "skin, age, ethnicity and face shape, so the LoRA ties those to the trigger word.")
        self.placement_combo = QComboBox()
        self.placement_combo.addItem("Trigger word at the start", TriggerPlacement.START)
        self.placement_combo.addItem("Trigger word after the class word",
                                     TriggerPlacement.AFTER_CLASS)
        self.placement_combo.addItem("No trigger word", TriggerPlacement.NONE)
        self.placement_combo.setToolTip(
            f"Where the trigger word “{self._trigger}” goes: “{self._trigger}, a woman …”, "
            f"“a woman {self._trigger} …”, or not added.")
        self.class_edit = QLineEdit()
        self.class_edit.setPlaceholderText("class word (e.g. woman)")
        self.class_edit.setToolTip("The word the trigger follows with “after the class "
                                   "word”; empty: the first of woman, man, person, girl, boy…")
        self.class_edit.setMaximumWidth(180)
        style = QHBoxLayout()
        style.addWidget(self.mode_combo, 2)
        style.addWidget(self.placement_combo, 1)
        style.addWidget(self.class_edit)

        # -- review ---------------------------------------------------------------------------
        self.list = QListWidget()
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setMinimumWidth(260)
        self.list.setToolTip("Photos with a suggestion not yet accepted or skipped.")
        self.current_view = QPlainTextEdit()
        self.current_view.setReadOnly(True)
        self.current_view.setToolTip("The photo's caption now (what trainers read).")
        self.suggestion_edit = QPlainTextEdit()
        self.suggestion_edit.setReadOnly(True)
        self.suggestion_edit.setToolTip("The suggested caption. Press Edit to change it; "
                                        "Accept writes it as the photo's caption.")
        self.raw_label = QLabel("")
        self.raw_label.setWordWrap(True)
        self.raw_label.setProperty("subtle", True)
        self.accept_button = QPushButton("Accept")
        self.accept_button.setProperty("primary", True)
        self.accept_button.setToolTip("Write this suggestion as the photo's caption "
                                      "(its .txt file too).")
        self.edit_button = QPushButton("Edit")
        self.edit_button.setToolTip("Change the suggestion before accepting it.")
        self.skip_button = QPushButton("Skip")
        self.skip_button.setToolTip("Keep the photo's caption; the suggestion is put aside.")
        detail = QWidget()
        dl = QVBoxLayout(detail)
        dl.addWidget(QLabel("Current caption"))
        dl.addWidget(self.current_view, 1)
        dl.addWidget(QLabel("Suggestion"))
        dl.addWidget(self.suggestion_edit, 2)
        dl.addWidget(self.raw_label)
        buttons = QHBoxLayout()
        buttons.addWidget(self.accept_button)
        buttons.addWidget(self.edit_button)
        buttons.addWidget(self.skip_button)
        buttons.addStretch(1)
        dl.addLayout(buttons)
        split = QSplitter()
        split.addWidget(self.list)
        split.addWidget(detail)
        split.setStretchFactor(1, 2)

        self.replace_own_box = QCheckBox("Also replace my own captions")
        self.replace_own_box.setToolTip("Without this, Accept all leaves every caption you "
                                        "wrote as it is.")
        self.accept_all_button = QPushButton("Accept all")
        self.accept_all_button.setToolTip("Accept every suggestion in the list (photos with a "
                                          "caption you wrote keep it unless the box is ticked).")
        self.summary = QLabel("")
        self.summary.setProperty("subtle", True)
        self.close_button = QPushButton("Close")
        bottom = QHBoxLayout()
        bottom.addWidget(self.summary, 1)
        bottom.addWidget(self.replace_own_box)
        bottom.addWidget(self.accept_all_button)
        bottom.addWidget(self.close_button)

        layout = QVBoxLayout(self)
        layout.addWidget(run_box)
        layout.addLayout(style)
        layout.addWidget(split, 1)
        layout.addLayout(bottom)

        # service and library changes arrive in bursts: the list is rebuilt once, afterwards
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(0)
        self._refresh_timer.timeout.connect(self.refresh)
        self._fill_models()
        self.model_combo.currentIndexChanged.connect(lambda _: self._show_download())
        self.download.folder_ready.connect(self._on_folder_ready)
        self._show_download()
        self.folder_button.clicked.connect(self._choose_folder)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(service.cancel)
        self.mode_combo.currentIndexChanged.connect(lambda _: self.refresh())
        self.placement_combo.currentIndexChanged.connect(lambda _: self.refresh())
        self.class_edit.editingFinished.connect(self.refresh)
        self.list.currentItemChanged.connect(self._on_current_changed)
        self.accept_button.clicked.connect(self.accept_current)
        self.edit_button.clicked.connect(self.edit_current)
        self.skip_button.clicked.connect(self.skip_current)
        self.accept_all_button.clicked.connect(self.accept_all)
        self.close_button.clicked.connect(self.close)
        service.suggestions_changed.connect(self._on_changed)
        service.suggestion_added.connect(self._on_added)
        service.run_started.connect(self._on_run_started)
        thumbnails.thumbnail_ready.connect(self._on_thumbnail)
        library.data_changed.connect(self._on_data_changed)
        if service.current_run is not None:
            self._on_run_started(service.current_run)
        else:
            self._set_running(False)
        if service.is_loaded(character_id):
            self.refresh()
        else:
            self.summary.setText("Reading suggestions…")
            service.load(character_id)

    # -- options ---------------------------------------------------------------------------
    def options(self) -> CaptionOptions:
        return CaptionOptions(mode=CaptionMode(self.mode_combo.currentData()),
                              trigger=self._trigger,
                              placement=TriggerPlacement(self.placement_combo.currentData()),
                              class_word=self.class_edit.text().strip())

    def _fill_models(self) -> None:
        models: tuple[CaptionModel, ...] = ()
        try:
            models = load_models()
        except ValueError as exc:
            self.status.setText(str(exc))
        self._models = models
        for m in models:
            folder = model_dir(self._models_root, m)
            ready = model_ready(folder)
            self._ready[str(folder)] = ready
            self.model_combo.addItem(m.label + ("" if ready else " — not downloaded"),
                                     str(folder))
            self.model_combo.setItemData(self.model_combo.count() - 1, m.describe(),
                                         Qt.ItemDataRole.ToolTipRole)

    def _catalogue_model(self, folder: str) -> CaptionModel | None:
        return next((m for m in self._models
                     if str(model_dir(self._models_root, m)) == folder), None)

    def _show_download(self) -> None:
        folder = str(self.model_combo.currentData() or "")
        self.download.show_model(self._catalogue_model(folder), Path(folder),
                                 self._ready.get(folder, True))

    def _on_folder_ready(self, folder: str) -> None:
        """A download finished: the model shows as ready (the folder was checked)."""
        self._ready[folder] = True
        model = self._catalogue_model(folder)
        index = self.model_combo.findData(folder)
        if model is not None and index >= 0:
            self.model_combo.setItemText(index, model.label)
            self.status.setText(f"{model.label} is downloaded and ready.")
        self._show_download()

    def add_model_folder(self, folder: Path) -> None:
        """Offer ``folder`` as a model and choose it."""
        self.model_combo.addItem(f"Folder: {folder.name}", str(folder))
        self.model_combo.setCurrentIndex(self.model_combo.count() - 1)

    def _choose_folder(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Florence-2 model folder",
                                                  str(self._models_root))
        if chosen:
            self.add_model_folder(Path(chosen))

    # -- the run ----------------------------------------------------------------------------
    def start(self) -> None:
        folder = Path(str(self.model_combo.currentData() or ""))
        if not model_ready(folder):
            model = next((m for m in self._models if model_dir(self._models_root, m) == folder),
                         None)
            where = (f"Press “Download” to get {model.repo} ({model.approx_size}, "
                     f"{model.licence}) into {folder}" if model
                     else "Choose a complete model folder")
            self.status.setText(f"The model folder {folder} is not there or not complete "
                                f"(it needs config.json and a .safetensors file). {where}, "
                                f"or choose a folder you have with “Model folder…”.")
            return
        self._service.start(self.character_id, folder,
                            device=str(self.device_combo.currentData()),
                            batch_size=self.batch_spin.value(),
                            task=str(self.task_combo.currentData()),
                            max_new_tokens=self.tokens_spin.value())

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.progress.setVisible(running)

    def _on_run_started(self, run: CaptionRun) -> None:
        if run.character_id != self.character_id:
            return
        self._set_running(True)
        self.progress.setRange(0, 0)
        self.status.setText("Starting the captioning model…")
        run.progressed.connect(self._on_progress)
        run.finished.connect(self._on_run_finished)

    def _on_progress(self, progress: Progress) -> None:
        if progress.total:
            self.progress.setRange(0, progress.total)
            self.progress.setValue(progress.done)
            self.progress.setFormat(f"%v / %m  {progress.detail}".rstrip())
        elif progress.detail:
            self.status.setText(progress.detail[:1].upper() + progress.detail[1:] + "…")

    def _on_run_finished(self, outcome: CaptionOutcome) -> None:
        self._set_running(False)
        parts = [f"{outcome.captioned} photo{'s' if outcome.captioned != 1 else ''} captioned"]
        if outcome.skipped:
            parts.append(f"{outcome.skipped} already had a suggestion")
        if outcome.failed:
            parts.append(f"{outcome.failed} could not be read")
        text = ", ".join(parts) + "."
        if outcome.cancelled:
            text = "Cancelled: " + text + " Start again to go on."
        if outcome.error:
            text = outcome.error
        if outcome.image_errors:
            text += "\n" + "\n".join(outcome.image_errors[:5])
        self.status.setText(text)
        self.refresh()

    # -- review -------------------------------------------------------------------------------
    def _on_changed(self, character_id: int) -> None:
        if character_id == self.character_id:
            self._refresh_timer.start()

    def _on_added(self, character_id: int, _key: str) -> None:
        self._on_changed(character_id)

    def _on_data_changed(self, _change: object) -> None:
        self._refresh_timer.start()

    def shown_suggestions(self) -> list[Suggestion]:
        return list(self._shown)

    def refresh(self) -> None:
        """Rebuild the list from the service (pending suggestions, current options)."""
        keep = self._current_key
        self._shown = self._service.suggestions(self.character_id, self.options())
        self.list.blockSignals(True)
        self.list.clear()
        for s in self._shown:
            item = QListWidgetItem(s.path.name)
            item.setData(Qt.ItemDataRole.UserRole, s.key)
            item.setToolTip(s.text)
            pix = self._thumbs.pixmap(s.key, s.path)
            if pix is not None:
                item.setIcon(QIcon(pix))
            self.list.addItem(item)
        self.list.blockSignals(False)
        row = next((i for i, s in enumerate(self._shown) if s.key == keep), 0)
        if self._shown:
            self.list.setCurrentRow(row)
        self._show(self.list.currentItem())
        own = sum(1 for s in self._shown if self._service.is_own_caption(self.character_id, s))
        self.summary.setText(
            f"{len(self._shown)} suggestion{'s' if len(self._shown) != 1 else ''} to review"
            + (f" ({own} photo{'s' if own != 1 else ''} with a caption you wrote)" if own else ""))
        self.accept_all_button.setEnabled(bool(self._shown))

    def _suggestion(self, key: str) -> Suggestion | None:
        return next((s for s in self._shown if s.key == key), None)

    def _keep_edit(self) -> None:
        """An edit in progress is kept when the user moves to another photo."""
        old = self._suggestion(self._current_key)
        if old is not None and not self.suggestion_edit.isReadOnly():
            text = self.suggestion_edit.toPlainText().strip()
            if text != old.text:
                self._service.edit(self.character_id, old.key, text)

    def _show(self, item: QListWidgetItem | None) -> None:
        s = self._suggestion(item.data(Qt.ItemDataRole.UserRole)) if item else None
        self._current_key = s.key if s else ""
        self.current_view.setPlainText(s.caption if s else "")
        self.suggestion_edit.setPlainText(s.text if s else "")
        self.suggestion_edit.setReadOnly(True)
        self.raw_label.setText(f"Model said: {s.raw}" if s else "")
        for w in (self.accept_button, self.edit_button, self.skip_button):
            w.setEnabled(s is not None)

    def _on_current_changed(self, current: QListWidgetItem | None,
                            _previous: QListWidgetItem | None) -> None:
        self._keep_edit()
        self._show(current)

    def edit_current(self) -> None:
        self.suggestion_edit.setReadOnly(False)
        self.suggestion_edit.setFocus()

    def accept_current(self) -> None:
        s = self._suggestion(self._current_key)
        if s is None:
            return
        text = self.suggestion_edit.toPlainText().strip()
        if text != s.text:
            self._service.edit(self.character_id, s.key, text)
        self._service.accept(self.character_id, {s.image_id: text})

    def skip_current(self) -> None:
        s = self._suggestion(self._current_key)
        if s is not None:
            self._service.skip(self.character_id, [s.image_id])

    def accept_all(self) -> None:
        accepted, kept = self._service.accept_all(
            self.character_id, self.options(), replace_own=self.replace_own_box.isChecked())
        self.status.setText(
            f"{accepted} caption{'s' if accepted != 1 else ''} written"
            + (f"; {kept} photo{'s' if kept != 1 else ''} kept the caption you wrote (tick "
               f"“Also replace my own captions” to replace them)" if kept else "") + ".")

    def _on_thumbnail(self, sha256: str, image: QImage) -> None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == sha256:
                item.setIcon(QIcon(QPixmap.fromImage(image)))
