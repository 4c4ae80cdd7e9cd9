"""The face analysis service: runs the analysis child (``python -m
isengard_desktop.analysis_runtime faces`` in the trainer runtime's Python, never in the GUI
process) and turns its events into results, dataset findings and identity scores.

One checks run at a time (a new one cancels the running one); identity-score requests
(:meth:`FaceAnalysisService.score_identity`, for other features) run their own child beside
it. The child answers from the content-hash cache first, so only new photos are analysed.
Cancel ends the child's process tree; what it finished is in the cache for the next run.
The findings are computed on the service's worker thread (pure maths, but the identity
centre is quadratic in the number of photos).

Each checks run is also a :class:`FaceChecksTask` (``run_started``) that the status bar's
progress panel shows like an import, with Cancel. A photo's stored crop (``run(...,
crops=...)``) is what the trainer sees, so the face's size and cut edges are judged in it.

The cache keeps a record per photo content; :meth:`FaceAnalysisService.prune_cache` (once per
app start, after the library is ready) removes those of photos no longer in the library, on
the worker thread, never while an analysis child runs (one that starts meanwhile stops it;
it goes on when the children have ended).

Signals:
    progressed(Progress): at most ~10 a second; the last one always.
    finished(FaceChecksOutcome): a checks run ended (completed, cancelled or failed).
    run_started(FaceChecksTask): a checks run began; connect it to a progress display.
    cache_pruned(PruneResult): a cache prune ended (also when stopped by a new run).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger
from PySide6.QtCore import QObject, Signal

from ..core import logging as applog
from ..core.db.records import ImageRecord
from ..core.faces.records import PhotoFaces, RecordError
from ..core.paths import AppPaths
from ..core.types import Progress
from .runtime_child import RuntimeChildRun
from .ops import run_in_executor
from .throttle import Throttler

if TYPE_CHECKING:  # the judging pulls in numpy and the dataset checks: loaded on first use
    from ..core.dataset.crops import CropRect, FaceBox
    from ..core.faces.cache import PruneResult
    from ..core.faces.checks import FaceReport
    from ..core.identity import IdentityScore

__all__ = ["AnalysisResult", "FaceAnalysisService", "FaceChecksOutcome",
           "FaceChecksTask", "FaceRun"]

PROGRESS_LABEL = "Analysing faces"
KILL_GRACE_S = 3.0


@dataclass(frozen=True)
class AnalysisResult:
    """What one analysis child brought back.

    Attributes:
        results: faces by sha256 (cached and newly analysed).
        errors: why a photo could not be analysed, by sha256 (the message names the file).
        analysed / cached: how many photos were analysed now / answered from the cache.
        cancelled: it was stopped before the end.
        problem: "" when it ran; else one sentence (no runtime, models missing, a crash).
    """

    results: dict[str, PhotoFaces] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    analysed: int = 0
    cached: int = 0
    cancelled: bool = False
    problem: str = ""


@dataclass(frozen=True)
class FaceChecksOutcome:
    """A checks run: the child's ``analysis`` and the ``report`` built from it."""

    analysis: AnalysisResult
    report: FaceReport
    checked: int

    def summary(self) -> str:
        """One line for the status bar (the progress panel asks for it)."""
        analysis = self.analysis
        if analysis.problem:
            return analysis.problem
        if analysis.cancelled and not self.checked:
            return "Face checks restarted: the newer run replaces this one."
        found = len(self.report.findings)
        return (("Face checks cancelled: " if analysis.cancelled else "Face checks done: ")
                + f"{found} finding{'s' if found != 1 else ''} on {self.checked} photo"
                f"{'s' if self.checked != 1 else ''} ({analysis.analysed} analysed, "
                f"{analysis.cached} from the cache); see Dataset → Checks.")


class FaceChecksTask(QObject):
    """One checks run as a progress display sees it (``ProgressPanelWidget.track``).

    Signals:
        progressed(Progress): the service's (throttled to ~10 a second, the last one always).
        finished(FaceChecksOutcome): emitted once (a run superseded by a newer one ends as
            cancelled with no findings).
    """

    progressed = Signal(object)
    finished = Signal(object)
    label = PROGRESS_LABEL

    def __init__(self, cancel: Callable[[], None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._cancel = cancel
        self.ended = False

    def cancel(self) -> None:
        """Stop this run's child (what it finished is kept in the cache)."""
        if not self.ended:
            self._cancel()

    def end(self, outcome: FaceChecksOutcome) -> None:
        if not self.ended:
            self.ended = True
            self.finished.emit(outcome)


class FaceRun(RuntimeChildRun):
    """One analysis child over a list of photos (path, sha256).

    Signals:
        progressed(Progress): after each photo (not throttled).
        finished(AnalysisResult): emitted once, also when it could not start.
    """

    progressed = Signal(object)

    def __init__(self, paths: AppPaths, photos: Sequence[tuple[Path, str]],
                 parent: QObject | None = None) -> None:
        unique: dict[str, Path] = {}
        for path, sha in photos:          # the same content twice is analysed once
            unique.setdefault(sha, path)
        self._photos = [(p, s) for s, p in unique.items()]
        self._results: dict[str, PhotoFaces] = {}
        self._errors: dict[str, str] = {}
        self._counts = {"analysed": 0, "cached": 0}
        super().__init__(paths, ["faces", "--cache", str(paths.cache)], name="face analysis",
                         missing_text="Face analysis runs in the trainer runtime.",
                         failed_text="Face analysis", kill_grace_s=KILL_GRACE_S, parent=parent)
        self.proc.started.connect(self._send_list)

    def _send_list(self, _pid: int) -> None:
        data = "".join(json.dumps({"path": str(p), "sha256": s}) + "\n" for p, s in self._photos)
        self.proc.write(data.encode("utf-8"))
        self.proc.proc.closeWriteChannel()

    def on_event(self, event: dict[str, Any], line: str) -> None:
        try:
            kind = event.get("event")
            if kind == "photo":
                result = PhotoFaces.from_json(event["result"])
                self._results[result.sha256] = result
                self._counts["cached" if event.get("cached") else "analysed"] += 1
                self._progress(event, Path(str(event.get("path", ""))).name)
            elif kind == "photo_error":
                self._errors[str(event["sha256"])] = str(event["message"])
                self._progress(event, Path(str(event.get("path", ""))).name)
            elif kind == "error":
                self._problem = f"Face analysis failed: {event.get('message', '')}"
        except (ValueError, KeyError, TypeError, AttributeError, RecordError) as exc:
            logger.warning("face analysis: unreadable event line ({}): {:.200}", exc, line)

    def _progress(self, event: dict, detail: str) -> None:
        self.progressed.emit(Progress(PROGRESS_LABEL, int(event.get("done", 0)),
                                      int(event.get("total", 0)), detail=detail))

    def result(self) -> AnalysisResult:
        return AnalysisResult(results=self._results, errors=self._errors,
                              analysed=self._counts["analysed"], cached=self._counts["cached"],
                              cancelled=self._cancelled, problem=self._problem)


class FaceAnalysisService(QObject):
    """Face checks and identity scores; see the module docstring for the signals."""

    progressed = Signal(object)
    finished = Signal(object)
    run_started = Signal(object)
    cache_pruned = Signal(object)

    def __init__(self, paths: AppPaths, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._paths = paths
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="face-checks")
        self._run: FaceRun | None = None
        self._task: FaceChecksTask | None = None
        self._others: list[FaceRun] = []
        # the cache prune's gate: children that may write records (changed under the lock)
        self._cache_lock = threading.Lock()
        self._live: set[FaceRun] = set()
        self._closing = False
        self._prune_keep: Callable[[], Iterable[str]] | None = None   # a prune is due
        self._pruning = False
        self._pruned = False
        self._throttle: Throttler[tuple[FaceRun, Progress]] = Throttler(
            lambda item: self._on_progress(*item), parent=self)

    @property
    def is_running(self) -> bool:
        return self._run is not None

    def run(self, records: Sequence[ImageRecord], resolution: int,
            crops: Mapping[int, CropRect] | None = None) -> FaceChecksTask:
        """Analyse ``records`` (cache first) and judge their faces for training at
        ``resolution``, each in its crop where ``crops`` (by image id) has one; emits
        ``run_started``, ``progressed`` and then ``finished`` (a run superseded by a newer
        one emits nothing more; its task ends as cancelled)."""
        from ..core.faces.checks import FaceCheckImage, FaceReport, face_findings

        self.cancel()
        if self._task is not None:          # superseded: its progress display lets go
            self._task.end(FaceChecksOutcome(AnalysisResult(cancelled=True), FaceReport(()),
                                             0))     # checked 0: "restarted"
            self._task.deleteLater()
        crops = crops or {}
        images = [FaceCheckImage(r.id, r.filename, r.character_id, r.sha256, crops.get(r.id))
                  for r in records]
        run = self._run = FaceRun(self._paths, [(r.path, r.sha256) for r in records], self)
        task = self._task = FaceChecksTask(run.cancel, self)

        def end(outcome: FaceChecksOutcome) -> None:
            self._run = None
            self._task = None
            self.finished.emit(outcome)
            task.end(outcome)
            task.deleteLater()

        def judged(outcome: FaceChecksOutcome) -> None:
            if self._run is run:
                logger.info("face checks: {} finding(s), {} analysed, {} cached{}",
                            len(outcome.report.findings), outcome.analysis.analysed,
                            outcome.analysis.cached,
                            " (cancelled)" if outcome.analysis.cancelled else "")
                end(outcome)

        def failed(exc: BaseException) -> None:
            if self._run is run:
                end(FaceChecksOutcome(
                    AnalysisResult(cancelled=True, problem=f"Face checks failed: {exc}"),
                    FaceReport(()), len(images)))
            sys.excepthook(type(exc), exc, exc.__traceback__)

        def analysed(result: AnalysisResult) -> None:
            run.deleteLater()
            if self._run is not run:
                return
            self._throttle.flush()

            def work() -> FaceChecksOutcome:
                report = face_findings(images, result.results, result.errors, resolution)
                return FaceChecksOutcome(result, report, len(images))

            run_in_executor(self._pool, work, judged, failed)

        run.progressed.connect(lambda p: self._throttle.submit((run, p)))
        run.finished.connect(analysed)
        self.run_started.emit(task)
        with applog.correlation():
            logger.info("face checks on {} photo(s) at {} px{}", len(images), resolution,
                        f", {sum(i.crop is not None for i in images)} cropped"
                        if crops else "")
            self._launch(run)
        return task

    def score_identity(self, dataset: Sequence[ImageRecord],
                       candidates: Sequence[tuple[Path, str]],
                       done: Callable[[list[IdentityScore], AnalysisResult], None]) -> FaceRun:
        """The identity score API for other features: how alike each candidate image
        (path, sha256) is to the character whose dataset photos are ``dataset``. ``done``
        gets one :class:`IdentityScore` per candidate, in order (NaN where a candidate has
        no face or the dataset none), and the analysis (errors, problem) on the main thread.
        Returns the run (``cancel()`` it to stop)."""
        from ..core.identity import identity_scores

        photos = [(r.path, r.sha256) for r in dataset]
        seen = {s for _, s in photos}
        photos += [(p, s) for p, s in candidates if s not in seen]
        run = FaceRun(self._paths, photos, self)
        self._others.append(run)

        def finished(result: AnalysisResult) -> None:
            if run in self._others:
                self._others.remove(run)
            run.deleteLater()
            ds = [result.results[r.sha256] for r in dataset if r.sha256 in result.results]
            cands = [result.results.get(s, PhotoFaces(s, 0, 0)) for _, s in candidates]
            done(identity_scores(ds, cands), result)

        run.finished.connect(finished)
        self._launch(run)
        return run

    def similarity_scorer(self, dataset: Sequence[ImageRecord]
                          ) -> Callable[[list[Path], Callable[[dict[Path, float | None]],
                                                               None]], None]:
        """A scorer for pictures that are not photos of the library (the checkpoint
        comparison's samples): ``scorer(paths, on_scores)`` hashes them off the UI thread,
        runs :meth:`score_identity` against ``dataset`` and calls ``on_scores({path:
        similarity or None})`` on the main thread (None: no face in that picture)."""
        from ..core.comfy.metadata import sha256_file

        def scorer(images: list[Path],
                   on_scores: Callable[[dict[Path, float | None]], None]) -> None:
            def hashes() -> list[tuple[Path, str]]:
                return [(Path(p), sha256_file(p)) for p in images]

            def hashed(candidates: list[tuple[Path, str]]) -> None:
                def scored(scores: list[IdentityScore], _result: AnalysisResult) -> None:
                    on_scores({path: (None if score.face_index is None else score.similarity)
                               for (path, _sha), score in zip(candidates, scores, strict=True)})

                self.score_identity(dataset, candidates, scored)

            run_in_executor(self._pool, hashes, hashed,
                            lambda exc: logger.warning("identity scores: {}", exc))

        return scorer

    def face_box_source(self, image_of: Callable[[int], ImageRecord | None]
                        ) -> Callable[[int], FaceBox | None]:
        """A face source for the crop proposals (``CropService.set_face_source``): the
        photo's main face from the analysis cache (the CNN detector's result when there is
        one, else HOG's), the largest confident face; None when the photo was not analysed
        yet or has no face. Reads only the cache files: safe on a worker thread."""
        from ..core.dataset.crops import FaceBox
        from ..core.faces.cache import FaceCache
        from ..core.faces.checks import confident_faces

        caches = [FaceCache(self._paths.cache, "cnn"), FaceCache(self._paths.cache, "hog")]

        def source(image_id: int) -> FaceBox | None:
            record = image_of(image_id)
            if record is None:
                return None
            photo = next((p for c in caches if (p := c.get(record.sha256)) is not None), None)
            faces = confident_faces(photo).faces if photo is not None else ()
            if not faces:
                return None
            face = max(faces, key=lambda f: f.short_side)
            left, top, right, bottom = face.box
            left, top = max(0.0, left), max(0.0, top)
            right = min(float(photo.width), right) if photo and photo.width else right
            bottom = min(float(photo.height), bottom) if photo and photo.height else bottom
            marks = tuple((float(x), float(y)) for x, y in face.landmarks)
            return FaceBox(left, top, max(1.0, right - left), max(1.0, bottom - top),
                           marks if len(marks) == 5 else ())

        return source

    def _on_progress(self, run: FaceRun, progress: Progress) -> None:
        if self._run is run:
            self.progressed.emit(progress)
            if self._task is not None:
                self._task.progressed.emit(progress)

    # -- the analysis children and the cache prune ----------------------------------------
    def _launch(self, run: FaceRun) -> None:
        """Start ``run``'s child, closing the prune's gate first (a prune going on stops
        before its next removal) and opening it when the child has ended."""
        with self._cache_lock:
            self._live.add(run)

        def ended(_result: AnalysisResult) -> None:
            with self._cache_lock:
                self._live.discard(run)
            self._maybe_prune()

        run.finished.connect(ended)
        run.start()

    def prune_cache(self, keep: Callable[[], Iterable[str]]) -> None:
        """Remove the cached records of photos no longer in the library, once per app start:
        ``keep`` (called on the main thread when the prune begins) gives the sha256 of every
        photo the library has. Waits while an analysis child runs; emits ``cache_pruned``."""
        if self._pruned or self._prune_keep is not None:
            return
        self._prune_keep = keep
        self._maybe_prune()

    def _maybe_prune(self) -> None:
        keep_of = self._prune_keep
        if keep_of is None or self._pruning or self._closing:
            return
        with self._cache_lock:
            if self._live:
                return                      # again when the last child ends
        from ..core.faces.cache import prune_cache

        keep = frozenset(keep_of())
        self._pruning = True

        def allowed() -> bool:              # asked under the lock
            return not self._live and not self._closing

        def work() -> PruneResult:
            return prune_cache(self._paths.cache, keep, self._cache_lock, allowed)

        def done(result: PruneResult) -> None:
            self._pruning = False
            if self._closing:            # shut down meanwhile: nothing is emitted after
                return
            if not result.stopped:
                self._prune_keep = None
                self._pruned = True
            logger.info("face cache pruned: {} record(s) of photos no longer in the library "
                        "removed, {} bytes freed, {} kept{}", result.removed,
                        result.freed_bytes, result.kept,
                        " (stopped: an analysis started; it goes on after)"
                        if result.stopped else "")
            self.cache_pruned.emit(result)
            if result.stopped:
                self._maybe_prune()

        def failed(exc: BaseException) -> None:
            self._pruning = False
            self._prune_keep = None
            logger.warning("face cache prune failed: {!r}", exc)

        run_in_executor(self._pool, work, done, failed)

    def cancel(self) -> None:
        """Stop the running checks run (no-op when idle); it ends with what it has."""
        if self._run is not None:
            self._run.cancel()

    def shutdown(self) -> None:
        """App quit: stop every analysis child (blocking briefly); nothing is emitted after."""
        with self._cache_lock:
            self._closing = True             # a prune going on stops at its next file
        runs = [*([self._run] if self._run else []), *self._others]
        self._run = None                 # their ends are superseded: no findings, no signals
        self._others.clear()
        for run in runs:
            run.finished.disconnect()
            run.stop_and_wait()
        self._pool.shutdown(wait=True, cancel_futures=True)
