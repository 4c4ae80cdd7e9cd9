"""The Dataset tab: every image of every character, search, filter, bulk operations, checks,
and face-centred crops (shown on the tiles; proposed, adjusted in :mod:`.crop_editor`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import shiboken6
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QGroupBox, QHBoxLayout, QInputDialog,
                               QLabel, QLineEdit, QMessageBox, QProgressBar, QPushButton,
                               QSplitter, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget)

from ...core.dataset.crops import CropRect
from ...core.db.records import ImageRecord
from ...core.faces.rules import MIN_FACE_FRACTION
from ...core.training.presets import LARGE_MODEL_SHORT_SIDE, MIN_SHORT_SIDE, NATIVE_SHORT_SIDE
from ...core.types import Progress
from ...services.crops import CropProposalOutcome, CropService
from ...services.database import ChangeSet
from ...services.captioning import CaptionService
from ...services.dataset_checks import ChecksOutcome, DatasetChecksService
from ...services.downloads import DownloadService
from ...services.face_analysis import FaceAnalysisService, FaceChecksOutcome
from ...services.library import LibraryService
from ...services.thumbnails import ThumbnailService
from ..dialogs.confirm import confirm_trash_photos
from ..widgets.caption_editor import CaptionEditorWidget
from ..widgets.dataset_score import DatasetScoreWidget
from .caption_review import CaptionReviewDialog
from ..widgets.image_grid import ImageGridWidget
from .crop_editor import CropEditorDialog
from .crop_panel import CropPanelWidget

if TYPE_CHECKING:
    from ...core.dataset.checks import Finding

ALL = -1
CHECK_TITLES = {
    "low_resolution": f"Low resolution (short side under {MIN_SHORT_SIDE} px)",
    "exact_duplicate": "Exact duplicates",
    "near_duplicate": "Near duplicates",
    "blurry": "Very blurry",
    "extreme_aspect": "Extreme aspect ratio",
    "unreadable": "Cannot be read",
    "face_analysis_failed": "Face analysis failed",
    "no_face": "No face found",
    "several_faces": "Several faces",
    "identity_outlier": "May be a different person",
    "face_too_small": "Face too small for the training resolution",
    "face_cut": "Face cut by the frame or crop",
}
# (label, training short side) for the face-size rule
FACE_FAMILIES = (("SDXL / Flux / Chroma (1024 px)", LARGE_MODEL_SHORT_SIDE),
                 ("SD 1.5 (512 px)", NATIVE_SHORT_SIDE["sd15"]))


def matches(record: ImageRecord, character_name: str, needle: str) -> bool:
    """Case-insensitive search over file name, character name and caption."""
    if not needle:
        return True
    needle = needle.casefold()
    return (needle in record.filename.casefold() or needle in character_name.casefold()
            or needle in record.caption.casefold() or needle in record.source.casefold())


class DatasetTab(QWidget):
    """Signals:
        message_posted(str): a short result to show in the status bar.
    """

    message_posted = Signal(str)

    def __init__(self, library: LibraryService, thumbnails: ThumbnailService,
                 checks: DatasetChecksService, crops: CropService | None = None,
                 parent: QWidget | None = None,
                 faces: FaceAnalysisService | None = None, *,
                 captioning: CaptionService | None = None,
                 models_root: Path | None = None) -> None:
        super().__init__(parent)
        self._library = library
        self._crops = crops
        self._thumbnails = thumbnails
        self._captioning = captioning
        self._models_root = models_root
        self.caption_dialog: CaptionReviewDialog | None = None
        self._downloads: DownloadService | None = None
        self._checks = checks
        self._faces = faces
        self._findings: list[Finding] = []
        self._checks_cancelled = False
        self._pending: set[str] = set()        # "basic" / "faces" while a run is going
        self._run_findings: dict[str, list[Finding]] = {}
        self._face_note = ""
        self._run_cancelled = False

        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("Search file name, character or caption")
        self.search_edit.setClearButtonEnabled(True)
        self.character_filter = QComboBox()
        self.character_filter.setToolTip("Show one character's photos, or all of them.")
        self.character_filter.setMinimumWidth(180)
        self.count_label = QLabel("")
        self.count_label.setProperty("subtle", True)
        self.select_all_button = QPushButton("Select all")
        self.select_none_button = QPushButton("Select none")
        top = QHBoxLayout()
        top.addWidget(self.search_edit, 2)
        top.addWidget(self.character_filter, 1)
        top.addWidget(self.select_all_button)
        top.addWidget(self.select_none_button)
        top.addWidget(self.count_label)

        self.prepend_button = QPushButton("Prepend trigger word")
        self.prepend_button.setToolTip(
            "Put each selected photo's character trigger word at the start of its caption "
            "(skipped where it is already there).")
        self.find_edit = QLineEdit()
        self.find_edit.setPlaceholderText("Find")
        self.find_edit.setToolTip("Plain text to find in the selected captions (not a pattern).")
        self.replace_edit = QLineEdit()
        self.replace_edit.setPlaceholderText("Replace with")
        self.case_box = QCheckBox("Match case")
        self.replace_button = QPushButton("Replace in selected")
        self.delete_button = QPushButton("Delete selected…")
        self.delete_button.setProperty("danger", True)
        bulk = QHBoxLayout()
        bulk.addWidget(self.prepend_button)
        bulk.addSpacing(12)
        bulk.addWidget(self.find_edit, 1)
        bulk.addWidget(self.replace_edit, 1)
        bulk.addWidget(self.case_box)
        bulk.addWidget(self.replace_button)
        bulk.addStretch(0)
        bulk.addWidget(self.delete_button)
        self.bulk_box = QGroupBox("Selected photos")
        self.bulk_box.setLayout(bulk)

        self.grid = ImageGridWidget(thumbnails, label_for=self._character_label,
                                    crop_for=self._crop_of)
        self.grid.setToolTip("Drop photos or folders here to import them into the character "
                             "chosen in the filter.")
        self.grid.empty_text = ("No photos match. Create a character on the Characters tab, or "
                                "drop photos and folders here.")
        self.caption_editor = CaptionEditorWidget()

        self.checks_button = QPushButton("Run checks")
        self.checks_button.setToolTip(
            "Look for photos that hurt training: short side under 512 px, exact and near "
            "duplicates, very blurry shots, extreme aspect ratios.")
        self.caption_button = QPushButton("Auto-caption…")
        self.caption_button.setToolTip(
            "Suggest captions for the chosen character's photos with a captioning model "
            "(offline), then review them: nothing is written until you accept.")
        self.caption_button.setVisible(captioning is not None)
        self.checks_progress = QProgressBar()
        self.checks_progress.setVisible(False)
        self.checks_cancel_button = QPushButton("Cancel")
        self.checks_cancel_button.setToolTip("Stop the checks; the photos checked so far are "
                                             "listed.")
        self.checks_cancel_button.setVisible(False)
        self.faces_box = QCheckBox("Check faces")
        self.faces_box.setToolTip(
            "Also analyse the faces (in the trainer runtime, cached per photo): no face, "
            "several faces, a face too small for the training resolution or cut by the frame, "
            "and photos that may show a different person. A photo with a face crop is judged "
            "in its crop: that is the picture the trainer sees.")
        self.faces_box.setChecked(faces is not None)
        self.faces_box.setEnabled(faces is not None)
        self.face_family = QComboBox()
        for label, side in FACE_FAMILIES:
            self.face_family.addItem(label, side)
        self.face_family.setToolTip(
            "The model family's training resolution, for the face-size rule: a face box "
            f"shorter than 1/{round(1 / MIN_FACE_FRACTION)} of it (64 px at 512, 128 px at "
            "1024) once the photo (or its face crop) is scaled to it is too small to teach the "
            "face.")
        faces_row = QHBoxLayout()
        faces_row.addWidget(self.faces_box)
        faces_row.addWidget(self.face_family, 1)
        self.faces_progress = QProgressBar()
        self.faces_progress.setVisible(False)
        self.score_box = DatasetScoreWidget()
        self.checks_summary = QLabel("Checks have not run yet.")
        self.checks_summary.setProperty("subtle", True)
        self.checks_summary.setWordWrap(True)
        self.checks_tree = QTreeWidget()
        self.checks_tree.setObjectName("ChecksTree")
        self.checks_tree.setHeaderHidden(True)
        self.checks_tree.setToolTip("Click a problem to select that photo.")
        checks_panel = QWidget()
        cp = QVBoxLayout(checks_panel)
        cp.setContentsMargins(8, 0, 0, 0)
        cp.addWidget(self.checks_button)
        cp.addLayout(faces_row)
        cp.addWidget(self.caption_button)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.checks_progress, 1)
        progress_row.addWidget(self.checks_cancel_button)
        cp.addLayout(progress_row)
        cp.addWidget(self.faces_progress)
        cp.addWidget(self.checks_summary)
        cp.addWidget(self.score_box)
        cp.addWidget(self.checks_tree, 2)
        self.crop_panel = CropPanelWidget()
        self.crop_panel.setVisible(crops is not None)
        self.crop_dialog: CropEditorDialog | None = None
        cp.addWidget(self.crop_panel)
        cp.addWidget(self.caption_editor, 1)

        split = QSplitter()
        split.addWidget(self.grid)
        split.addWidget(checks_panel)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        split.setSizes([900, 340])

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.bulk_box)
        layout.addWidget(split, 1)

        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(150)
        self._search_timer.timeout.connect(self.apply_filter)
        self.search_edit.textChanged.connect(lambda _: self._search_timer.start())
        self.character_filter.currentIndexChanged.connect(lambda _: self.apply_filter())
        self.select_all_button.clicked.connect(self.grid.selectAll)
        self.select_none_button.clicked.connect(self.grid.clearSelection)
        self.grid.selection_changed.connect(self._on_selection)
        self.grid.files_dropped.connect(self._on_files_dropped)
        self.prepend_button.clicked.connect(self._prepend)
        self.replace_button.clicked.connect(self._replace)
        self.delete_button.clicked.connect(self._delete)
        self.caption_editor.caption_saved.connect(self._library.set_caption)
        self.checks_button.clicked.connect(self._run_checks)
        self.caption_button.clicked.connect(self.open_captioning)
        self.checks_tree.itemClicked.connect(self._on_finding_clicked)
        self.checks_cancel_button.clicked.connect(self._cancel_checks)
        checks.progressed.connect(self._on_checks_progress)
        checks.finished.connect(self._on_checks_finished)
        self.crop_panel.propose_requested.connect(self._propose_crops)
        self.crop_panel.adjust_requested.connect(self._adjust_selected_crop)
        self.crop_panel.reset_requested.connect(self._reset_crops)
        self.crop_panel.photo_clicked.connect(lambda image_id: self.grid.select_ids([image_id]))
        self.grid.doubleClicked.connect(
            lambda index: self.open_crop_editor(self.grid.grid_model.record(index.row()).id))
        if crops is not None:
            crops.proposals_finished.connect(self._on_crops_proposed)
            crops.failed.connect(self._on_crops_failed)
        if faces is not None:
            faces.progressed.connect(self._on_faces_progress)
            faces.finished.connect(self._on_faces_finished)
        self._on_selection([])

    # -- data --------------------------------------------------------------------------------
    def _character_label(self, record: ImageRecord) -> str:
        ch = self._library.character(record.character_id)
        return f"Character: {ch.name}" if ch else ""

    def on_data_changed(self, change: ChangeSet) -> None:
        if change.characters or change.everything:
            self._refill_filter()
        self.apply_filter()
        self._drop_findings_of_deleted_photos()

    def _drop_findings_of_deleted_photos(self) -> None:
        kept = [f for f in self._findings if self._library.image(f.image_id) is not None]
        if len(kept) != len(self._findings):
            self._show_findings(kept, cancelled=self._checks_cancelled)

    def _refill_filter(self) -> None:
        current = self.character_filter.currentData()
        self.character_filter.blockSignals(True)
        self.character_filter.clear()
        self.character_filter.addItem("All characters", ALL)
        for ch in self._library.characters():
            self.character_filter.addItem(ch.name, ch.id)
        idx = self.character_filter.findData(current if current is not None else ALL)
        self.character_filter.setCurrentIndex(max(idx, 0))
        self.character_filter.blockSignals(False)

    def selected_character_id(self) -> int | None:
        data = self.character_filter.currentData()
        return None if data in (None, ALL) else int(data)

    def apply_filter(self) -> None:
        cid = self.selected_character_id()
        needle = self.search_edit.text().strip()
        names = {c.id: c.name for c in self._library.characters()}
        records = [r for r in self._library.images(cid)
                   if matches(r, names.get(r.character_id, ""), needle)]
        self.grid.set_records(records)
        self._update_count()

    def _update_count(self) -> None:
        shown = self.grid.grid_model.rowCount()
        total = len(self._library.images())
        selected = len(self.grid.selected_ids())
        self.count_label.setText(f"{shown} of {total} photos · {selected} selected")

    def _on_selection(self, ids: list[int]) -> None:
        has = bool(ids)
        for w in (self.prepend_button, self.replace_button, self.delete_button):
            w.setEnabled(has)
        self.bulk_box.setTitle(f"Selected photos ({len(ids)})" if has else
                               "Selected photos — tick photos in the grid to act on them")
        self.delete_button.setText(f"Delete {len(ids)} selected…" if has else "Delete selected…")
        self.crop_panel.set_selection(len(ids))
        self.caption_editor.set_image(self._library.image(ids[0]) if len(ids) == 1 else None)
        self._update_count()

    # -- bulk operations -----------------------------------------------------------------------
    def _prepend(self) -> None:
        self._library.prepend_trigger(self.grid.selected_ids())

    def _replace(self) -> None:
        find = self.find_edit.text()
        if not find:
            self.find_edit.setFocus()
            return
        changed = self._library.find_replace(self.grid.selected_ids(), find,
                                             self.replace_edit.text(),
                                             case_sensitive=self.case_box.isChecked())
        self.message_posted.emit(
            f"“{find}” replaced in {changed} caption{'s' if changed != 1 else ''}")

    def _delete(self) -> None:
        ids = self.grid.selected_ids()
        if not ids:
            return
        permanent = self._library.trash_is_permanent
        if confirm_trash_photos(self, len(ids), permanent):
            self._library.delete_images(ids, allow_permanent=permanent)

    def _on_files_dropped(self, paths: list[Path]) -> None:
        cid = self.selected_character_id()
        characters = self._library.characters()
        if cid is None:
            if not characters:
                QMessageBox.information(self, "Import photos",
                                        "Create a character first (Characters tab), then drop "
                                        "its photos here.")
                return
            if len(characters) == 1:
                cid = characters[0].id
            else:
                names = [c.name for c in characters]
                name, ok = QInputDialog.getItem(self, "Import photos",
                                                "Which character are these photos of?",
                                                names, 0, False)
                if not ok:
                    return
                cid = characters[names.index(name)].id
        self._library.import_photos(cid, paths)

    # -- crops -------------------------------------------------------------------------------
    def _crop_of(self, record: ImageRecord) -> CropRect | None:
        return self._crops.rect(record.id) if self._crops is not None else None

    def _propose_crops(self, family: str) -> None:
        if self._crops is None:
            return
        ids = [r.id for r in self.grid.grid_model.records()]
        if self._crops.propose(ids, family):
            self.crop_panel.set_busy(len(ids))
        else:
            self.crop_panel.summary.setText("The crops are still loading, or a proposal is "
                                            "running: try again in a moment.")

    def _on_crops_proposed(self, outcome: CropProposalOutcome) -> None:
        def name_of(image_id: int) -> str:
            image = self._library.image(image_id)
            return image.filename if image else f"image {image_id}"

        self.crop_panel.show_outcome(outcome, name_of)
        self.message_posted.emit(self.crop_panel.summary.text())

    def _on_crops_failed(self, message: str) -> None:
        if self._crops is not None and not self._crops.is_proposing:
            self.crop_panel.propose_button.setEnabled(True)

    def _adjust_selected_crop(self) -> None:
        ids = self.grid.selected_ids()
        if len(ids) == 1:
            self.open_crop_editor(ids[0])

    def open_crop_editor(self, image_id: int) -> None:
        """Open the crop editor for a photo (double-click, or "Adjust crop…"); Save stores
        the frame as the photo's crop, Reset removes it."""
        record = self._library.image(image_id)
        if self._crops is None or record is None:
            return
        if self.crop_dialog is not None and shiboken6.isValid(self.crop_dialog):
            self.crop_dialog.close()
        dialog = CropEditorDialog(record, self._crops.crop(image_id), self.crop_panel.buckets(),
                                  self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        crops = self._crops
        dialog.accepted.connect(lambda: crops.set_crop(image_id, dialog.result_crop()))
        self.crop_dialog = dialog
        dialog.open()

    def _reset_crops(self) -> None:
        if self._crops is not None:
            self._crops.clear_crops(self.grid.selected_ids())
    # -- auto-captioning ----------------------------------------------------------------------
    def set_downloads(self, downloads: DownloadService) -> None:
        """The download service the auto-caption dialog gets missing models with."""
        self._downloads = downloads

    def open_captioning(self) -> CaptionReviewDialog | None:
        """Open the auto-caption dialog for the character chosen in the filter (the only
        one when there is one)."""
        if self._captioning is None:
            return None
        cid = self.selected_character_id()
        characters = self._library.characters()
        if cid is None and len(characters) == 1:
            cid = characters[0].id
        if cid is None:
            QMessageBox.information(self, "Auto-caption",
                                    "Choose a character in the filter first: captions are "
                                    "suggested one character at a time.")
            return None
        if self.caption_dialog is not None:
            self.caption_dialog.close()
        from ...core.paths import resolve_paths

        dialog = CaptionReviewDialog(self._captioning, self._library, self._thumbnails, cid,
                                     self._models_root or resolve_paths().models, self,
                                     downloads=self._downloads)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.destroyed.connect(self._on_caption_dialog_gone)
        self.caption_dialog = dialog
        dialog.show()
        return dialog

    def _on_caption_dialog_gone(self) -> None:
        self.caption_dialog = None

    # -- checks ------------------------------------------------------------------------------
    def _run_checks(self) -> None:
        records = [r for r in (self._library.image(r.id)
                               for r in self.grid.grid_model.records()) if r is not None]
        self.checks_button.setEnabled(False)
        self.checks_progress.setVisible(True)
        self.checks_progress.setRange(0, 0)
        self.checks_cancel_button.setVisible(True)
        self.checks_summary.setText(f"Checking {len(records)} photos…")
        self._pending = {"basic"}
        self._run_cancelled = False
        self._run_findings = {}
        self._face_note = ""
        if self._faces is not None and self.faces_box.isChecked():
            self._pending.add("faces")
            self.faces_progress.setVisible(True)
            self.faces_progress.setRange(0, 0)
            self.faces_progress.setFormat("Analysing faces…")
            crops = self._crops     # a stored crop is what the trainer sees: judged in it
            rects = {r.id: rect for r in records
                     if crops is not None and (rect := crops.rect(r.id)) is not None}
            self._faces.run(records, int(self.face_family.currentData()), rects)
        self._checks.run(records)

    def _cancel_checks(self) -> None:
        self._checks.cancel()
        if self._faces is not None:
            self._faces.cancel()

    def _on_faces_progress(self, progress: Progress) -> None:
        if progress.total:
            self.faces_progress.setRange(0, progress.total)
            self.faces_progress.setValue(progress.done)
            self.faces_progress.setFormat(f"Faces %v / %m  {progress.detail}".rstrip())

    def _on_faces_finished(self, outcome: FaceChecksOutcome) -> None:
        if "faces" not in self._pending:
            return
        self.faces_progress.setVisible(False)
        analysis = outcome.analysis
        self._face_note = analysis.problem or (
            f"Faces: {analysis.analysed} analysed, {analysis.cached} from the cache.")
        self._show_scores(outcome)
        self._part_done("faces", list(outcome.report.findings), analysis.cancelled)

    def _show_scores(self, outcome: FaceChecksOutcome) -> None:
        items = []
        for cid, ds in outcome.report.datasets.items():
            ch = self._library.character(cid)
            items.append((ch.name if ch else f"character {cid}", ds))
        self.score_box.show_scores(items)

    def _on_checks_progress(self, progress: Progress) -> None:
        if progress.total:
            self.checks_progress.setRange(0, progress.total)
            self.checks_progress.setValue(progress.done)
            self.checks_progress.setFormat(f"%v / %m  {progress.detail}".rstrip())

    def _on_checks_finished(self, outcome: ChecksOutcome) -> None:
        self.checks_progress.setVisible(False)
        self._part_done("basic", list(outcome.findings), outcome.cancelled)

    def _part_done(self, part: str, findings: list[Finding], cancelled: bool) -> None:
        """One of the run's parts ended: the panel shows the findings so far (the faces
        take longer; the basic ones are listed while they run)."""
        if part not in self._pending:
            return
        self._pending.discard(part)
        self._run_findings[part] = findings
        cancelled = cancelled or self._run_cancelled
        self._run_cancelled = cancelled
        if not self._pending:
            self.checks_button.setEnabled(True)
            self.checks_cancel_button.setVisible(False)
        basic = self._run_findings.get("basic", [])
        unreadable = {f.image_id for f in basic if f.kind == "unreadable"}
        # a photo that cannot be opened is listed once ("Cannot be read"), not twice
        faces = [f for f in self._run_findings.get("faces", [])
                 if not (f.kind == "face_analysis_failed" and f.image_id in unreadable)]
        self._show_findings(basic + faces, cancelled=cancelled)

    def _show_findings(self, findings: list[Finding], *, cancelled: bool) -> None:
        self._findings = findings
        self._checks_cancelled = cancelled
        self.checks_tree.clear()
        by_kind: dict[str, list[Finding]] = {}
        for f in findings:
            by_kind.setdefault(f.kind, []).append(f)
        for kind, items in by_kind.items():
            group = QTreeWidgetItem([f"{CHECK_TITLES.get(kind, kind)} ({len(items)})"])
            group.setData(0, Qt.ItemDataRole.UserRole, None)
            for f in items:
                image = self._library.image(f.image_id)
                name = image.filename if image else f"image {f.image_id}"
                child = QTreeWidgetItem([f"{name} — {f.message}"])
                child.setToolTip(0, f"{name}\n{f.message}")
                child.setData(0, Qt.ItemDataRole.UserRole, f.image_id)
                group.addChild(child)
            self.checks_tree.addTopLevelItem(group)
            group.setExpanded(True)
        problem_images = len({f.image_id for f in findings})
        self.checks_summary.setText(
            ("Checks cancelled. " if cancelled else "")
            + ("No problems found." if not findings else
               f"{problem_images} photo{'s' if problem_images != 1 else ''} with "
               f"{len(findings)} problem{'s' if len(findings) != 1 else ''}. "
               "Click one to select it.")
            + (" Analysing faces…" if "faces" in self._pending else
               f" {self._face_note}" if self._face_note else ""))

    def findings(self) -> list[Finding]:
        return list(self._findings)

    def _on_finding_clicked(self, item: QTreeWidgetItem) -> None:
        image_id = item.data(0, Qt.ItemDataRole.UserRole)
        if image_id is not None:
            self.grid.select_ids([image_id])
