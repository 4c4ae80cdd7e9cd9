"""The wizard's "Base models" page: per-family download sets from the model catalogue (SD 1.5,
SDXL, Flux schnell, Flux dev, Chroma) with total size, VRAM and licence, pre-ticked for the
detected GPU (``core.model_sets.recommended_families``). Files the user already has in the
app's models folder or a linked folder (``find_present``: name + size) are shown as "already
have" and never queued. "Download" queues the missing files with the download service into
the app's models folder (ComfyUI's layout); nothing reaches for the network before that. The
catalogue is read and the folders searched off the UI thread (BackgroundOp).

Below the families, a "Video (optional)" group offers the Video tab's model sets (the
catalogue's ``[[video_sets]]``: Wan 2.1, LTX-Video) the same way, never pre-ticked; the Video
tab's "Get it" notice opens the page at ``base_models:<set id>``, which ticks that set."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from loguru import logger
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QHBoxLayout, QLabel, QPushButton, QScrollArea,
                               QVBoxLayout, QWidget)

from ...core.model_sets import (FamilySet, VideoSetFiles, family_sets, file_size,
                                missing_files, recommended_families, size_text, video_sets)
from ...core.models import model_search_folders
from ...core.models_catalogue import Catalogue, Present, find_present, load_catalogue
from ...core.paths import AppPaths
from ...core.settings import Settings
from ...services.background import BackgroundOp
from .common import WizardPage, heading, note

__all__ = ["BaseModelsPage", "search_folders"]

Scan = tuple[Catalogue, dict[str, Present]]


def search_folders(paths: AppPaths, settings: Settings) -> list[Path]:
    """Where files count as "already have": the folders scanned for base models
    (:func:`~...core.models.model_search_folders`)."""
    return [Path(f) for f in model_search_folders(paths.models, settings.model_folders,
                                                   settings.comfyui_models_folder)]


def _scan(paths: AppPaths, settings: Settings,
          catalogue: Callable[[], Catalogue]) -> Scan:
    cat = catalogue()
    folders = [f for f in search_folders(paths, settings) if f.is_dir()]
    return cat, find_present(cat.files.values(), folders)


class BaseModelsPage(WizardPage):
    """One tick box per family (``boxes``) and per video set (``video_boxes``);
    ``downloads`` is the DownloadService (or a stand-in with
    ``enqueue_catalogue_file(file, models_root)``); None disables Download."""

    key = "base_models"
    title = "Base models"
    has_goal = True

    def __init__(self, paths: AppPaths, settings: Callable[[], Settings], downloads: Any = None,
                 catalogue: Callable[[], Catalogue] = load_catalogue,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._paths = paths
        self._settings = settings
        self._downloads = downloads
        self._catalogue = catalogue
        self.vram_gb: float | None = None
        self.machine_known = False
        self.catalogue: Catalogue | None = None
        self.present: dict[str, Present] = {}
        self.sets: list[FamilySet] = []
        self.boxes: dict[str, QCheckBox] = {}
        self.details: dict[str, QLabel] = {}
        self.video: list[VideoSetFiles] = []
        self.video_boxes: dict[str, QCheckBox] = {}
        self.video_details: dict[str, QLabel] = {}
        self.queued: list[str] = []
        self._touched = False
        self._wanted: set[str] = set()
        self.layout_.addWidget(heading("Base models"))
        self.layout_.addWidget(note(
            "Training and generating need a base model. Tick the families to download; files "
            f"go to {paths.models} in ComfyUI's layout (checkpoints, vae, …), where the "
            "trainers and every ComfyUI the app starts find them. Nothing is downloaded until "
            "you press Download.", subtle=True))
        self.status = note("Looking for models you already have…")
        self.status.setObjectName("base_models_status")
        self.layout_.addWidget(self.status)
        self.rows = QWidget()
        self.rows_layout = QVBoxLayout(self.rows)
        self.rows_layout.setContentsMargins(0, 0, 0, 0)
        self.rows_layout.setSpacing(2)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(self.rows)
        self.layout_.addWidget(scroll, 1)
        row = QHBoxLayout()
        self.total = QLabel("")
        self.total.setObjectName("base_models_total")
        self.download_button = QPushButton("Download")
        self.download_button.setObjectName("base_models_download")
        self.download_button.setProperty("primary", True)
        self.download_button.setToolTip(
            "Queue the ticked families' missing files. The Downloads button in the status bar "
            "shows their progress; downloads resume after a restart.")
        self.download_button.clicked.connect(self.download)
        row.addWidget(self.total, 1)
        row.addWidget(self.download_button)
        self.layout_.addLayout(row)
        self.message = note("", subtle=True)
        self.message.setObjectName("base_models_message")
        self.layout_.addWidget(self.message)
        self._update_total()

    # -- state --------------------------------------------------------------------------------
    @property
    def complete(self) -> bool:
        return bool(self.queued) or any(s.files and not s.missing(self.present)
                                        for s in self.sets)

    def entered(self) -> None:
        self.refresh()

    def set_vram(self, vram_gb: float | None) -> None:
        """The detected GPU's memory (None: no usable GPU); re-ticks unless the user has
        changed the ticks."""
        self.vram_gb = vram_gb
        self.machine_known = True
        if self.catalogue is not None:
            self._build()

    def want_family(self, family: str) -> None:
        """Tick ``family`` or the video set of that id (a tab's "Get …" button asked for
        it); remembered until the rows are built when the catalogue is still being read."""
        self._wanted.add(family)
        box = self.boxes.get(family) or self.video_boxes.get(family)
        if box is not None and box.isEnabled():
            box.setChecked(True)

    def refresh(self) -> None:
        """Read the catalogue and look for the files again (off the UI thread)."""
        paths, settings, catalogue = self._paths, self._settings(), self._catalogue
        BackgroundOp(parent=self, op=lambda: _scan(paths, settings, catalogue)) \
            .success(self._on_scanned).failure(self._on_failed).supersede("base-models").run()

    def _on_failed(self, exc: BaseException) -> None:
        logger.warning("base models page: {!r}", exc)
        self.status.setText(f"The model list could not be read: {exc}")

    def _on_scanned(self, scan: Scan) -> None:
        self.catalogue, self.present = scan
        self._build()

    # -- the rows -----------------------------------------------------------------------------
    def _build(self) -> None:
        assert self.catalogue is not None
        ticked = {k for boxes in (self.boxes, self.video_boxes)
                  for k, b in boxes.items() if b.isChecked()}
        while self.rows_layout.count():
            item = self.rows_layout.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        self.boxes.clear()
        self.details.clear()
        self.video_boxes.clear()
        self.video_details.clear()
        self.sets = family_sets(self.catalogue, self.vram_gb)
        pre = recommended_families(self.vram_gb) if self.machine_known else set()
        for s in self.sets:
            fid = s.family.id
            missing = s.missing(self.present)
            box = QCheckBox(f"{s.family.label} — {size_text(s.total)}")
            box.setObjectName(f"base_models_{fid}")
            detail = QLabel(self._detail(s, missing))
            detail.setObjectName(f"base_models_{fid}_detail")
            detail.setWordWrap(True)
            detail.setProperty("subtle", True)
            detail.setContentsMargins(24, 0, 0, 6)
            detail.setTextFormat(Qt.TextFormat.RichText)
            box.setToolTip("Files: " + ", ".join(f"{f.name} ({f.folder})" for f in s.files))
            if not missing:
                box.setEnabled(False)
                box.setChecked(False)
            else:
                box.setChecked((fid in ticked if self._touched else fid in pre)
                               or fid in self._wanted)
            box.toggled.connect(self._on_toggled)
            self.boxes[fid] = box
            self.details[fid] = detail
            self.rows_layout.addWidget(box)
            self.rows_layout.addWidget(detail)
        self._build_video(ticked)
        self.rows_layout.addStretch(1)
        where = "this card" if self.vram_gb else "this computer (no GPU: CPU only)"
        gpu = f"{self.vram_gb:.0f} GB of VRAM" if self.vram_gb else ""
        self.status.setText(
            (f"Ticked for {gpu}." if gpu else f"Ticked for {where}.") if self.machine_known
            else "Tick what to download (the GPU is still being read).")
        self._update_total()
        self.completeness_changed.emit()

    def _build_video(self, ticked: set[str]) -> None:
        """The "Video (optional)" group: one row per video set, ticked only by the user (or a
        Video tab notice), never for the card."""
        assert self.catalogue is not None
        self.video = video_sets(self.catalogue)
        if not self.video:
            return
        title = QLabel("Video (optional)")
        title.setObjectName("base_models_video_title")
        title.setStyleSheet("font-weight: 600;")
        title.setContentsMargins(0, 10, 0, 0)
        self.rows_layout.addWidget(title)
        intro = QLabel("Models for the Video tab (a picture becomes a short clip through "
                       "ComfyUI). Large; only needed if you make clips.")
        intro.setWordWrap(True)
        intro.setProperty("subtle", True)
        self.rows_layout.addWidget(intro)
        for v in self.video:
            vid = v.video.id
            missing = v.missing(self.present)
            box = QCheckBox(f"{v.video.label} — {size_text(v.total)}")
            box.setObjectName(f"base_models_video_{vid}")
            box.setToolTip("For the Video tab's workflows " + ", ".join(v.video.workflows)
                           + ". Files: " + ", ".join(f"{f.name} ({f.folder})" for f in v.files))
            vram = f"needs {v.video.min_vram_gb:g} GB VRAM"
            if self.vram_gb and self.vram_gb < v.video.min_vram_gb - 0.5:
                vram += (f" <b style='color:#f0b45a'>(more than this card's "
                         f"{self.vram_gb:.0f} GB)</b>")
            text = " · ".join([vram, "licence: " + ", ".join(v.licences)])
            text += self._have_text(v, missing)
            detail = QLabel(text)
            detail.setObjectName(f"base_models_video_{vid}_detail")
            detail.setWordWrap(True)
            detail.setProperty("subtle", True)
            detail.setContentsMargins(24, 0, 0, 6)
            detail.setTextFormat(Qt.TextFormat.RichText)
            if not missing:
                box.setEnabled(False)
                box.setChecked(False)
            else:
                box.setChecked((vid in ticked and self._touched) or vid in self._wanted)
            box.toggled.connect(self._on_toggled)
            self.video_boxes[vid] = box
            self.video_details[vid] = detail
            self.rows_layout.addWidget(box)
            self.rows_layout.addWidget(detail)

    @staticmethod
    def _have_text(group: FamilySet | VideoSetFiles, missing: tuple[Any, ...]) -> str:
        have = len(group.files) - len(missing)
        if not missing:
            return " · <b style='color:#8fd19e'>already have all files</b>"
        if have:
            return (f" · already have {have} of {len(group.files)} files; "
                    f"{size_text(sum(file_size(f) for f in missing))} to download")
        return ""

    def _detail(self, s: FamilySet, missing: tuple[Any, ...]) -> str:
        fam = s.family
        parts = [f"needs {fam.min_vram_train_gb:g} GB VRAM to train, "
                 f"{fam.min_vram_generate_gb:g} GB to generate"]
        if s.low_vram:
            parts.append("fp8 T5 for generating on this card")
        parts.append("licence: " + ", ".join(s.licences))
        text = " · ".join(parts)
        if s.non_commercial:
            text += (" · <b style='color:#f0b45a'>non-commercial licence: images may not be "
                     "used commercially</b>")
        if s.gated:
            text += " · needs a Hugging Face token (Settings) after accepting the licence"
        return text + self._have_text(s, missing)

    def _on_toggled(self, _checked: bool) -> None:
        self._touched = True
        self._update_total()

    def ticked(self) -> list[FamilySet]:
        return [s for s in self.sets if self.boxes.get(s.family.id) is not None
                and self.boxes[s.family.id].isChecked()]

    def ticked_video(self) -> list[VideoSetFiles]:
        return [v for v in self.video if self.video_boxes.get(v.video.id) is not None
                and self.video_boxes[v.video.id].isChecked()]

    def to_download(self) -> list[Any]:
        """The missing files of the ticked families and video sets not queued yet, each once."""
        groups: list[FamilySet | VideoSetFiles] = [*self.ticked(), *self.ticked_video()]
        return [f for f in missing_files(groups, self.present) if f.id not in self.queued]

    def _update_total(self) -> None:
        files = self.to_download() if self.sets else []
        total = sum(file_size(f) for f in files)
        self.total.setText(f"To download: {len(files)} file(s), {size_text(total)}"
                           if files else "Nothing ticked to download.")
        self.download_button.setEnabled(bool(files) and self._downloads is not None)
        if self._downloads is None:
            self.download_button.setToolTip("Downloads are not available here (open the "
                                             "assistant from the app).")

    def download(self) -> None:
        """Queue the missing files of the ticked families."""
        files = self.to_download()
        if not files or self._downloads is None:
            return
        for f in files:
            self._downloads.enqueue_catalogue_file(f, self._paths.models)
            self.queued.append(f.id)
        total = size_text(sum(file_size(f) for f in files))
        self.message.setText(f"Queued {len(files)} file(s), {total}, into {self._paths.models}."
                             " The Downloads button in the status bar shows their progress.")
        for s in self.ticked():
            self.boxes[s.family.id].setChecked(False)
        for v in self.ticked_video():
            self.video_boxes[v.video.id].setChecked(False)
        self._update_total()
        self.completeness_changed.emit()
