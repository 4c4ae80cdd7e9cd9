"""The "Download (≈ size)" row of the auto-caption dialog: gets a captioning model that is
not on disk from Hugging Face through the download service, shows its progress, and says
when the folder is ready.

The service lists the repo on its loop and queues the files (they also show in the
Downloads panel, where they can be paused and resumed); this widget only follows the items
whose destination it was told about and re-checks the folder off the UI thread at the end.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from ...core.captioning.models import CaptionModel, model_ready
from ...core.downloads.fetch import format_bytes
from ...services.background import BackgroundOp
from ...services.downloads import DownloadService, DownloadView, RepoQueued

__all__ = ["ModelDownloadWidget"]


@dataclass
class _Job:
    """One folder being filled: ``dests`` is empty while the repo is being listed."""

    model: CaptionModel
    dests: frozenset[str] = frozenset()
    total: int = 0
    listing: str = ""
    done: bool = False
    failed: list[str] = field(default_factory=list)
    paused: int = 0          # files paused in the Downloads panel


class ModelDownloadWidget(QWidget):
    """Download button, progress bar and a line of text for one captioning model.

    Signals:
        folder_ready(str): every file of a download is there and the folder loads
            (config.json + .safetensors); the folder's path.
    """

    folder_ready = Signal(str)

    def __init__(self, downloads: DownloadService | None, parent: QWidget | None = None,
                 ready_check: Callable[[Path], bool] = model_ready) -> None:
        super().__init__(parent)
        self._downloads = downloads
        self._ready_check = ready_check
        self._jobs: dict[str, _Job] = {}
        self._model: CaptionModel | None = None
        self._folder = ""
        self.button = QPushButton("Download")
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.label = QLabel("")
        self.label.setWordWrap(True)
        self.label.setProperty("subtle", True)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.button)
        row.addWidget(self.progress, 1)
        row.addWidget(self.label, 2)
        self.button.clicked.connect(self.start)
        if downloads is not None:
            downloads.repo_queued.connect(self._on_queued)
            downloads.repo_failed.connect(self._on_failed)
            downloads.items_changed.connect(self._on_items)
        self.setVisible(False)

    # -- what is shown ----------------------------------------------------------------------
    def show_model(self, model: CaptionModel | None, folder: Path, ready: bool) -> None:
        """Offer ``model`` (to go into ``folder``) unless it is ready or unknown."""
        self._model, self._folder = model, str(folder)
        if model is not None and self._folder not in self._jobs:
            self._adopt(model)
        job = self._jobs.get(self._folder)
        visible = (model is not None and self._downloads is not None
                   and (not ready or (job is not None and not job.done)))
        self.setVisible(visible)
        if not visible or model is None:
            return
        self.button.setToolTip(
            f"Download {model.repo} (revision {model.revision}) from Hugging Face into "
            f"{folder}: its config, tokenizer and processor files and .safetensors weights, "
            "each checked against the size the Hub lists (and its SHA-256 for weights). "
            f"Licence: {model.licence}. Pause or resume it in the Downloads panel.")
        self._render()

    def _adopt(self, model: CaptionModel) -> None:
        """Follow a download into this folder that is still going (a dialog opened again)."""
        if self._downloads is None:
            return
        inside = self._folder.rstrip("/\\") + os.sep
        going = [v for v in self._downloads.views()
                 if v.dest.startswith(inside) and v.state in ("queued", "running", "paused")]
        if going:
            self._jobs[self._folder] = _Job(
                model, frozenset(v.dest for v in going),
                sum(v.progress.total for v in going), f"{len(going)} files of {model.repo}")
            self._on_items(self._downloads.views())

    def _render(self) -> None:
        job = self._jobs.get(self._folder)
        busy = job is not None and not job.done and not job.failed
        self.button.setEnabled(not busy)
        if job is not None and job.failed:
            self.button.setText("Try again")
        elif self._model is not None:
            self.button.setText(f"Download (≈ {self._model.approx_size})")
        self.progress.setVisible(job is not None and bool(job.dests))
        if job is None:
            self.label.setText("Not downloaded yet.")
        elif job.failed:
            self.label.setText(" ".join(job.failed))
        elif not job.dests:
            self.label.setText(f"Listing the files of {job.model.repo}…")
        elif not job.done and job.paused:
            self.label.setText(f"Paused: {job.paused} file{'s' if job.paused > 1 else ''} of "
                               f"{job.listing} (resume them in the Downloads panel).")
        elif not job.done:
            self.label.setText(f"Downloading {job.listing}…")

    def status_text(self) -> str:
        return self.label.text()

    # -- actions ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._downloads is None or self._model is None:
            return
        self._jobs[self._folder] = _Job(self._model)
        self._downloads.enqueue_hub_repo(self._model.repo, self._model.revision,
                                         Path(self._folder))
        self._render()

    def _on_queued(self, queued: RepoQueued) -> None:
        job = self._jobs.get(queued.folder)
        if job is None and queued.folder == self._folder and self._model is not None:
            # a dialog opened again while the first one's Download was still listing the repo
            job = self._jobs[queued.folder] = _Job(self._model)
        if job is None:
            return
        job.dests, job.total = frozenset(queued.dests), queued.total_size
        job.listing = queued.listing.describe()
        if queued.folder == self._folder:
            self.progress.setRange(0, 1000)
            self.progress.setValue(0)
            self._render()
        if self._downloads is not None:
            self._on_items(self._downloads.views())

    def _on_failed(self, folder: str, message: str) -> None:
        job = self._jobs.get(folder)
        if job is None:
            return
        job.failed = [message]
        if folder == self._folder:
            self._render()

    def _on_items(self, views: tuple[DownloadView, ...]) -> None:
        for folder, job in self._jobs.items():
            if not job.dests or job.done:
                continue
            latest: dict[str, DownloadView] = {}
            for v in views:                     # a retried file: its newest row counts
                if v.dest in job.dests and (v.dest not in latest or v.id > latest[v.dest].id):
                    latest[v.dest] = v
            done = sum(v.progress.done if v.state != "done" else v.progress.total
                       for v in latest.values())
            failed = [v.error or f"{v.name} was cancelled." for v in latest.values()
                      if v.state in ("failed", "cancelled")]
            job.paused = sum(v.state == "paused" for v in latest.values())
            job.failed = failed[:1]                 # the first says why; the rest are counted
            if len(failed) > 1:
                job.failed.append(f"({len(failed) - 1} more file"
                                  f"{'s' if len(failed) > 2 else ''} failed too.)")
            if failed:
                job.failed.append("Press “Try again” (files already here are kept) or "
                                  "Retry in the Downloads panel.")
            finished = (len(latest) == len(job.dests)
                        and all(v.state == "done" for v in latest.values()))
            if folder == self._folder:
                self.progress.setValue(int(1000 * done / job.total) if job.total else 0)
                self.progress.setFormat(f"{format_bytes(done)} of {format_bytes(job.total)}")
                self._render()
            if finished:
                job.done = True
                self._check_ready(folder)

    def _check_ready(self, folder: str) -> None:
        def checked(ready: bool) -> None:
            job = self._jobs[folder]
            if ready:
                job.done = True
                if folder == self._folder:
                    self.label.setText(f"{job.model.label} is ready ({job.listing}).")
                    self.progress.setValue(1000)
                self.folder_ready.emit(folder)
            else:
                job.failed = [f"The files of {job.model.repo} are in {folder}, but it still "
                              "lacks config.json or a .safetensors file; choose another "
                              "folder with “Model folder…”."]
            if folder == self._folder:
                self._render()
        BackgroundOp(parent=self, op=lambda: self._ready_check(Path(folder))) \
            .success(checked).run()
