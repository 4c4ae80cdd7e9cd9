"""One running import (:class:`ImportTask`) and what it did (:class:`ImportOutcome`).

The library starts them (:meth:`~.library.LibraryService.import_photos`); a progress display
shows the task, and Cancel stops it (inside a large file too: the importer asks every
few MiB read or decoded).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from ..core.db.records import ImageRecord
from ..core.types import Progress
from .throttle import Throttler

if TYPE_CHECKING:  # the importer pulls in pillow and pillow-heif: loaded on first use
    from ..core.dataset.importer import ImportReport

__all__ = ["ImportOutcome", "ImportTask"]


@dataclass(frozen=True, kw_only=True)
class ImportOutcome:
    """What one import did: the importer's report and the rows recorded."""

    character_id: int
    report: ImportReport
    added: tuple[ImageRecord, ...] = ()

    @property
    def added_by_source(self) -> dict[str, ImageRecord]:
        """Each recorded image, keyed by the path it was imported from."""
        by_path = {r.path: r for r in self.added}
        return {i.source: by_path[i.stored_path] for i in self.report.imported
                if i.stored_path in by_path}

    @property
    def skipped_by_source(self) -> dict[str, str]:
        """Files already in the dataset (duplicates): the reason, keyed by source path."""
        return {s.source: s.reason for s in self.report.skipped}

    @property
    def rejected_by_source(self) -> dict[str, str]:
        """Files that could not be added: the reason, keyed by source path."""
        return {r.source: r.reason for r in self.report.rejected}


class ImportTask(QObject):
    """One running import. Cancel stops it soon, inside a large file too; finished files are kept.

    Signals:
        progressed(Progress): throttled to ~10 Hz.
        finished(ImportOutcome): the import ended (completed, cancelled or failed).
    """

    progressed = Signal(object)
    finished = Signal(object)

    def __init__(self, character_id: int, label: str) -> None:
        super().__init__()
        self.character_id = character_id
        self.label = label
        self._cancel = threading.Event()
        self._throttle: Throttler[Progress] = Throttler(self.progressed.emit, parent=self)
        self.outcome: ImportOutcome | None = None

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    def _report(self, progress: Progress) -> None:
        """Called on the worker thread; forwards at most ~10 updates a second."""
        self._throttle.submit_from_any_thread(progress)

    def _finish(self, outcome: ImportOutcome) -> None:
        self.outcome = outcome
        self._throttle.flush()        # the last progress reaches the UI before the end
        self.finished.emit(outcome)
