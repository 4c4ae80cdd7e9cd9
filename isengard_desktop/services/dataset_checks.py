"""The dataset checks service: looks for photos that hurt training, off the UI thread.

One run at a time on the service's own worker thread (:func:`~..core.dataset.checks.run_checks`:
low resolution, exact and near duplicates, blur, extreme aspect ratio, unreadable files).
It reports :class:`~..core.types.Progress` like an import does and can be cancelled; a
cancelled run still ends with the findings of the photos measured so far.

Signals:
    progressed(Progress): at most ~10 a second; the last one always.
    finished(ChecksOutcome): a run ended (completed or cancelled).
"""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING
from collections.abc import Sequence

from loguru import logger
from PySide6.QtCore import QObject, Signal

from ..core import logging as applog
from ..core.db.records import ImageRecord
from ..core.types import Progress
from .ops import run_in_executor
from .throttle import Throttler

if TYPE_CHECKING:  # measuring pulls in numpy, pillow-heif and ImageHash: loaded on first use
    from ..core.dataset.checks import Finding

__all__ = ["ChecksOutcome", "DatasetChecksService"]

@dataclass(frozen=True, kw_only=True)
class ChecksOutcome:
    """What one run found, ordered by photo (see ``run_checks``)."""

    findings: tuple[Finding, ...]
    checked: int          # how many photos were asked for
    cancelled: bool = False


class DatasetChecksService(QObject):
    """Runs dataset checks; see the module docstring for the signals."""

    progressed = Signal(object)
    finished = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="dataset-checks")
        self._cancel: threading.Event | None = None
        self._throttle: Throttler[tuple[threading.Event, Progress]] = Throttler(
            lambda item: self._progress(*item), parent=self)

    @property
    def is_running(self) -> bool:
        return self._cancel is not None

    def run(self, records: Sequence[ImageRecord]) -> None:
        """Check ``records`` off the UI thread (a running check is cancelled first); emits
        ``progressed`` while it runs and ``finished`` at the end (a run superseded by a newer
        one emits nothing more)."""
        from ..core.dataset.checks import CheckImage, run_checks

        self.cancel()
        cancel = self._cancel = threading.Event()
        items = [CheckImage(r.id, r.path, r.sha256, r.width, r.height) for r in records]

        def report(progress: Progress) -> None:       # on the worker thread
            self._throttle.submit_from_any_thread((cancel, progress))

        def work() -> ChecksOutcome:
            findings = run_checks(items, report=report, cancelled=cancel.is_set)
            return ChecksOutcome(findings=tuple(findings), checked=len(items),
                                 cancelled=cancel.is_set())

        def done(outcome: ChecksOutcome) -> None:
            if self._cancel is not cancel:     # superseded by a newer run: it reports
                return
            self._throttle.flush()     # the last progress before the end
            self._cancel = None
            logger.info("dataset checks: {} finding(s){}", len(outcome.findings),
                        " (cancelled)" if outcome.cancelled else "")
            self.finished.emit(outcome)

        def failed(exc: BaseException) -> None:
            if self._cancel is cancel:
                self._cancel = None
                self.finished.emit(ChecksOutcome(findings=(), checked=len(items),
                                                 cancelled=True))
            sys.excepthook(type(exc), exc, exc.__traceback__)

        with applog.correlation():
            logger.info("dataset checks on {} image(s)", len(items))
            run_in_executor(self._pool, work, done, failed)

    def _progress(self, cancel: threading.Event, progress: Progress) -> None:
        if self._cancel is cancel:     # a superseded run's late updates are dropped
            self.progressed.emit(progress)

    def cancel(self) -> None:
        """Stop the running check after the photo being measured (no-op when idle)."""
        if self._cancel is not None:
            self._cancel.set()

    def shutdown(self) -> None:
        self.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
